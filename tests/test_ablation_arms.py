"""bench/ablation.py's arm registry: every arm is wired through the one runner (no training).

Training and the FMP search are replaced by stand-ins (no steps; a search that returns the
L1-norm slice at the uniform widths), so what is checked is the plumbing: each arm builds a
model, the runner fine-tunes it for the rest of T, scores it on the data set's valid split and
the bundled photos, and writes both exports; sources run before the arms that need them.
"""

import importlib.util
import json
import sys
import types

import numpy as np
import pytest
from PIL import Image

import fmp_jax


@pytest.fixture(scope="module")
def ablation(repo_root):
  spec = importlib.util.spec_from_file_location("bench_ablation",
                                                repo_root / "bench" / "ablation.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module   # dataclasses look their module up while it executes
  spec.loader.exec_module(module)
  return module


def _args(ablation, *argv):
  return ablation.parse_args(["--arch", "esrb-1-8", "--esa-channels", "4", "--steps", "10",
                              "--search-steps", "4", "--seeds", "1", *argv])


def _div2k_folder(root):
  """A tiny DIV2K-style set: 3 train and 2 valid images of smooth random colour."""
  rng = np.random.default_rng(0)
  for split, names in (("train", ("0001", "0002", "0003")), ("valid", ("0801", "0802"))):
    folder = root / f"DIV2K_{split}_HR"
    folder.mkdir(parents=True)
    for name in names:
      small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
      Image.fromarray(small).resize((96, 80), Image.Resampling.BICUBIC).save(folder / f"{name}.png")
  (root / "manifest.json").write_text(json.dumps({"images": []}))
  return root


def test_quick_and_every_metric_plan_their_arms_without_a_latency_table(ablation):
  settings, specs = ablation.make_specs(ablation.parse_args(["--quick"]))
  arms = [s["arm"] for s in specs]
  # The latency-only arm stays out of a FLOPs ablation (it asked for a table --quick never builds).
  assert "fmp_flops" not in arms and set(arms) == set(ablation.default_arms("flops"))
  assert arms.index("fmp_scratch") > arms.index("fmp_total")        # its source runs first
  scratch = specs[arms.index("fmp_scratch")]
  assert scratch["structure_from"] == ablation.run_key(specs[arms.index("fmp_total")])
  # Baselines keep only the fields they use, so their runs are shared across search settings.
  assert set(specs[arms.index("uniform")]["recipe"]["search"]) == set(ablation.BASELINE_FIELDS)
  assert "latent_lr" in specs[arms.index("fmp_total")]["recipe"]["search"]
  with pytest.raises(SystemExit, match="fmp_flops takes --metric latency"):
    ablation.make_specs(_args(ablation, "--arms", "fmp_flops"))
  with pytest.raises(SystemExit, match="fmp_scratch needs fmp_total"):
    ablation.make_specs(_args(ablation, "--arms", "fmp_scratch"))
  with pytest.raises(SystemExit, match="unknown arm 'fmp_totl'"):
    ablation.make_specs(_args(ablation, "--arms", "fmp_totl"))


def test_every_arm_runs_through_the_one_runner(ablation, tmp_path, monkeypatch):
  calls = []

  def no_training(params, arch, masks, sampler, steps, lr, halve_every=None):
    lr_batch, hr_batch = sampler.batch(0)          # the sampler is real and yields patches
    assert hr_batch.shape[1] == 2 * lr_batch.shape[1]
    calls.append(steps)
    return params

  def sliced(params, budget, arch, data=None, steps=None, seed=0, config=None):
    """A stand-in search: L1-norm channels at the uniform widths of `budget`."""
    from fmp_jax.pruning import baselines, surgery
    cmasks = baselines.magnitude_channel_masks(params, arch,
                                               baselines.uniform_widths(arch, budget))
    p, small, masks = surgery.slice_model(arch, params, cmasks)
    return types.SimpleNamespace(params=p, arch=small, masks=masks, history=[],
                                 report={"steps": 3, "budget": {"keep": budget.keep}})

  def family(params, keeps, arch, budget, **kw):
    return [sliced(params, fmp_jax.Budget(k, metric=budget.metric), arch) for k in keeps]

  monkeypatch.setattr(ablation, "_train", no_training)
  monkeypatch.setattr(fmp_jax, "prune", sliced)
  monkeypatch.setattr(fmp_jax, "prune_family", family)
  monkeypatch.setattr(ablation, "_flops_keep_at_latency", lambda run: 0.4)

  data_dir = _div2k_folder(tmp_path / "set")
  listed = [a for a in ablation.ARMS if a not in ("fmp_flops", "fmp_family")]
  settings, specs = ablation.make_specs(_args(ablation, "--keep", "0.5", "--arms",
                                              ",".join(listed), "--data_dir", str(data_dir)))
  base = {k: v for k, v in specs[0].items() if k not in ("arm", "recipe")}
  specs += [dict(base, arm="fmp_flops", recipe=specs[0]["recipe"]),
            dict(base, arm="fmp_family", recipe=specs[0]["recipe"], family=[0.7, 0.5],
                 finetune_steps=6)]
  assert {s["arm"] for s in specs} == set(ablation.ARMS)
  assert settings["data"]["manifest"] == ablation.manifest_sha256(str(data_dir))
  cache = tmp_path / "cache"
  cache.mkdir()
  rows = {}
  for spec in specs:
    row = ablation.run_one(spec, str(cache))
    rows[spec["arm"]] = row
    for r in row.get("members", [row]):
      # Equal steps for all: phase 1 (planned, or the search's own count) plus fine-tuning.
      assert r["search_steps"] + r["finetune_steps"] == (10 if "members" not in row else 9)
      assert set(r["scores"]) == {"valid", "bundled"} and r["scores"]["valid"]["images"] == 2
      assert r["psnr"] == r["scores"]["valid"]["psnr"] and np.isfinite(r["psnr"])
      tuned = fmp_jax.load(str(cache / r["export"]))       # the scored model, re-loadable
      assert tuned.arch.widths == (r["widths"] if spec["arm"] != "dense" else None)
  assert rows["dense"]["flops_ratio"] == 1.0
  assert rows["uniform"]["widths"] == rows["l1norm"]["widths"] == rows["random"]["widths"]
  assert rows["fmp_scratch"]["widths"] == rows["fmp_total"]["widths"]
  assert rows["fmp_flops"]["flops_keep"] == 0.4 and rows["fmp_flops"]["flops_ratio"] <= 0.4
  assert [m["budget_keep"] for m in rows["fmp_family"]["members"]] == [0.7, 0.5]
  assert rows["l1mag_c0.75"]["weight_pruned_ratio"] > 0
  # Phase 1 of every non-searching arm trained for S = 4 steps (fmp_scratch, uniform, ...).
  assert calls.count(4) == sum(1 for a in listed if not ablation.ARMS[a].searches)
  summary = ablation.summarise([r for r in rows.values() if "members" not in r], listed)
  assert {s["arm"] for s in summary} == set(listed)
  table = ablation.format_table(summary, rows["uniform"]["bicubic_psnr"], scored_on="the set")
  assert "PSNR bundled" in table and table.count("\n| ") == len(listed)  # one line per arm

"""FMP against simpler ways of reaching the same budget: the ablation that decides method choices.

  python bench/ablation.py                                  # ESRB-3-32 x2, keep 0.3 FLOPs, 3 seeds
  python bench/ablation.py --keep 0.15 --json abl_015.json
  python bench/ablation.py --arms fmp_total,l1norm --set search.channel_l1=0.3
  python bench/ablation.py --quick                          # minutes-sized, for tests
  python bench/ablation.py --metric latency --keep 0.6      # at equal predicted latency

Every arm gets the same data (the bundled TRAIN photos, patches drawn from
`(seed, step)`), the same batch and patch, and the same total number of
gradient steps T. A run is two phases:

* phase 1 (S steps, the configured search length, Adam at ``search.lr``):
  FMP's search for the FMP arms (it stops when its budget criterion holds,
  after s <= S... steps), plain dense training for the baselines;
* phase 2 (T - s steps; s = S for every non-FMP arm): fine-tuning of the
  pruned (or small) model with the config's fine-tune recipe.

Arms:
  fmp_<criterion>   FMP search under criterion total, channel, weight or
                    total_fixed, then fine-tuning (fmp_total_m4/_m8: with
                    search.channel_multiple 4/8)
  fmp_scratch       the structure fmp_total found (widths and weight masks),
                    re-initialised and trained both phases (Liu et al., ICLR
                    2019, "Rethinking the value of network pruning")
  uniform           every group at the same width fraction, the widest that
                    fits the budget, trained both phases from scratch
  l1norm            dense phase 1, then each group's largest-L1-norm channels
                    at the uniform widths (Li et al., ICLR 2017), phase 2
  random            dense phase 1, then random channels at the uniform widths
  l1mag_c<X>        dense phase 1, l1norm channels at the uniform widths that
                    keep X of the metric, then each layer's smallest weights
                    (the same fraction everywhere) down to the budget
  dense             the unpruned model, both phases (not within the budget)
  fmp_flops         (--metric latency) FMP Total with a FLOPs budget, its FLOPs keep set
                    where a calibration search (same seed, FLOPs budget 0.1) first reached
                    the latency budget in the table's prediction: FMP-as-the-paper re-pruned
                    to the same latency

With --metric latency every budget is a fraction of the dense model's latency as the
table (--latency-table; built into the cache if missing) predicts it: FMP arms prune to
it, the baselines take the widest uniform width it allows. After the runs every model's
latency is measured (Upscaler, one whole image at the counted LR size, interleaved with
the dense model; --no-time skips it) and shown beside counted FLOPs and executed MACs;
the bench re-executes itself with glibc's huge pages on, as tools/profile_latency.py does.

Scores: PSNR/SSIM (Y, border = scale, 8-bit) on the held-out bundled EVAL
photos. Runs go to --cache (one JSON per arm and seed), so an interrupted
ablation resumes; independent runs go to --jobs worker processes, each pinned
to one CPU core (XLA's CPU convolutions gain little from a second core).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from fmp_jax.pruning import criteria  # noqa: E402

FMP_CRITERIA = tuple(criteria.CRITERIA)
ARMS = (tuple(f"fmp_{c}" for c in FMP_CRITERIA)
        + ("fmp_scratch", "uniform", "l1norm", "random", "dense", "fmp_flops"))
EXTRA_ARMS = ("fmp_total_m4", "fmp_total_m8", "l1mag_c0.5", "l1mag_c0.6", "l1mag_c0.75")
DEPENDS = {"fmp_scratch": "fmp_total"}
BASELINE_FIELDS = ("lr", "batch_size", "patch_size")


# --- the experiment's description ------------------------------------------------------

def parse_arch(text: str, scale: int) -> dict:
  model, blocks, channels = text.lower().split("-")
  return dict(model=model, blocks=int(blocks), channels=int(channels), scale=scale,
              esa_channels=16 if model == "esrb" else 16)


def load_recipe(path: str, overrides: list[str]) -> dict:
  """The search/fine-tune recipe of a config file (default configs/ablation.py), with overrides."""
  spec = importlib.util.spec_from_file_location("ablation_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cfg = module.get_config()
  for item in overrides:
    key, _, value = item.partition("=")
    section, _, field = key.partition(".")
    if section not in ("search", "finetune") or field not in cfg[section]:
      raise SystemExit(f"--set {item!r}: expected search.<field>=value or finetune.<field>=value "
                       f"with a field of {path}.")
    old = cfg[section][field]
    cfg[section][field] = type(old)(json.loads(value)) if not isinstance(old, str) else value
  # Logging and checkpoint intervals do not change results: left out of run keys.
  drop = ("log_every", "checkpoint_every")
  return {section: {k: v for k, v in cfg[section].to_dict().items() if k not in drop}
          for section in ("search", "finetune")}


def run_key(spec: dict) -> str:
  return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


# --- one run (in a worker process) -------------------------------------------------------

def _train(params, arch, masks, sampler, steps, lr, halve_every=None):
  from fmp_jax import finetuning
  if steps <= 0:
    return params
  return finetuning.finetune(params, arch, masks, sampler, steps, lr=lr, halve_every=halve_every)


def run_one(spec: dict, cache: str) -> dict:
  """Trains and scores one (arm, seed); returns the row as a dict."""

  import fmp_jax
  from fmp_jax import data, evaluation
  from fmp_jax.pruning import baselines, surgery

  t0 = time.time()
  arm, seed = spec["arm"], spec["seed"]
  arch = fmp_jax.Arch(**spec["arch"])
  budget = fmp_jax.Budget(**spec["budget"])
  search_cfg, tune_cfg = dict(spec["recipe"]["search"]), spec["recipe"]["finetune"]
  total, planned = spec["steps"], spec["search_steps"]
  batch, patch = search_cfg["batch_size"], search_cfg["patch_size"]
  phase1 = data.bundled_patches(arch.scale, patch, batch, seed=seed)
  phase2 = data.bundled_patches(arch.scale, tune_cfg["patch_size"], tune_cfg["batch_size"],
                                seed=seed + 1)
  params = fmp_jax.init_params(arch, seed=seed)
  masks, history, search_steps = {}, [], planned

  flops_keep = None
  if arm == "fmp_family":
    return _run_family(spec, cache, params, arch, budget, phase1, search_cfg, tune_cfg, t0)
  if arm == "fmp_flops":
    flops_keep = _flops_keep_at_latency(params, arch, budget, phase1, spec, search_cfg, seed)
    result = fmp_jax.prune(params, fmp_jax.Budget(flops_keep, metric="flops"), arch=arch,
                           data=data.bundled_patches(arch.scale, patch, batch, seed=seed),
                           steps=spec["max_search_steps"], seed=seed, config=search_cfg)
    search_steps = result.report["steps"]
    params, small, masks = result.params, result.arch, result.masks
  elif arm.startswith("fmp_") and arm != "fmp_scratch":
    criterion, _, multiple = arm[4:].partition("_m")
    if multiple:
      search_cfg["channel_multiple"] = int(multiple)
    b = dict(spec["budget"], criterion=criterion)
    b.update({f: spec[f] for f in criteria.CRITERIA[criterion].needs})
    result = fmp_jax.prune(params, fmp_jax.Budget(**b), arch=arch, data=phase1,
                           steps=spec["max_search_steps"], seed=seed, config=search_cfg)
    search_steps = result.report["steps"]
    history = [{k: h[k] for k in ("step", "remaining", "channels_kept", "target_now", "dual", "l1")
                if k in h}
               for h in result.history]
    params, small, masks = result.params, result.arch, result.masks
  elif arm == "fmp_scratch":
    found = fmp_jax.load(os.path.join(cache, spec["structure_from"] + ".msgpack"))
    small, masks = found.arch, found.masks
    params = fmp_jax.init_params(small, seed=seed)
    params = _train(params, small, masks, phase1, planned, search_cfg["lr"])
  elif arm in ("uniform", "dense"):
    small = arch if arm == "dense" else arch.with_widths(baselines.uniform_widths(arch, budget))
    params = fmp_jax.init_params(small, seed=seed)
    params = _train(params, small, None, phase1, planned, search_cfg["lr"])
  elif arm.startswith("l1mag_c"):
    params = _train(params, arch, None, phase1, planned, search_cfg["lr"])
    channel_budget = fmp_jax.Budget(float(arm[len("l1mag_c"):]), metric=budget.metric)
    cmasks = baselines.magnitude_channel_masks(
        params, arch, baselines.uniform_widths(arch, channel_budget))
    wmasks = _weights_to_budget(params, arch, budget, cmasks)
    params, small, masks = surgery.slice_model(arch, params, cmasks, wmasks)
  elif arm in ("l1norm", "random"):
    params = _train(params, arch, None, phase1, planned, search_cfg["lr"])
    widths = baselines.uniform_widths(arch, budget)
    if arm == "l1norm":
      cmasks = baselines.magnitude_channel_masks(params, arch, widths)
    else:
      cmasks = baselines.random_channel_masks(arch, widths, seed=seed)
    params, small, masks = surgery.slice_model(arch, params, cmasks)
  else:
    raise ValueError(f"unknown arm {arm!r}; known: {ARMS + EXTRA_ARMS}")

  fmp_jax.save_export(os.path.join(cache, run_key(spec) + ".msgpack"), params, small, masks)
  row = _finetune_and_score(spec, params, small, masks, phase2, budget, tune_cfg,
                            spec.get("finetune_steps", total - search_steps))
  return dict(row, **{"arm": arm, "seed": seed, "flops_keep": flops_keep,
                      "search_steps": search_steps, "seconds": time.time() - t0,
                      "history": history, "max_step_drop": _max_step_drop(history)})


def _finetune_and_score(spec, params, small, masks, phase2, budget, tune_cfg, steps) -> dict:
  """Fine-tunes a pruned (or small) model for `steps` and scores it: the row's numbers."""
  import fmp_jax
  from fmp_jax import data, evaluation
  tuned = _train(params, small, masks or None, phase2, steps, tune_cfg["lr"],
                 tune_cfg["lr_halve_every"])
  report = fmp_jax.sparsity_report(tuned, small, masks, metric=budget.metric,
                                   latency_table=budget.latency_table)
  scores = evaluation.evaluate_model(tuned, small, data.eval_pairs(None, "bundled", small.scale),
                                     masks=masks or None)["summary"]
  return {"psnr": scores["psnr"], "ssim": scores["ssim"],
          "bicubic_psnr": scores["bicubic_psnr"], "params": report["params"],
          "flops": report["flops"], "params_ratio": report["params_ratio"],
          "flops_ratio": report["flops_ratio"],
          "executed_macs_ratio": report["executed_macs_ratio"],
          "latency_predicted_ratio": report.get("latency_ratio"),
          "channel_pruned_ratio": report["channel_pruned_ratio"],
          "weight_pruned_ratio": report["weight_pruned_ratio"],
          "widths": report["widths"] if small.widths is None else dict(small.widths),
          "finetune_steps": steps, "budget_keep": budget.keep}


def _run_family(spec, cache, params, arch, budget, phase1, search_cfg, tune_cfg, t0) -> dict:
  """fmp_family: one search to the deepest keep, a model at every keep of spec["family"],
  each fine-tuned for spec["finetune_steps"]; the row holds one entry per member."""
  import fmp_jax
  from fmp_jax import data
  seed = spec["seed"]
  results = fmp_jax.prune_family(params, spec["family"], arch=arch, budget=budget, data=phase1,
                                 steps=spec["max_search_steps"], seed=seed, config=search_cfg)
  members = []
  for r in results:
    member_budget = fmp_jax.Budget(**dict(spec["budget"], keep=r.report["budget"]["keep"]))
    fmp_jax.save_export(os.path.join(cache, f"{run_key(spec)}_{member_budget.keep:g}.msgpack"),
                        r.params, r.arch, r.masks)
    phase2 = data.bundled_patches(arch.scale, tune_cfg["patch_size"], tune_cfg["batch_size"],
                                  seed=seed + 1)
    row = _finetune_and_score(spec, r.params, r.arch, r.masks, phase2, member_budget, tune_cfg,
                              spec["finetune_steps"])
    members.append(dict(row, arm="fmp_family", seed=seed, search_steps=r.report["steps"]))
  return {"arm": "fmp_family", "seed": seed, "members": members,
          "search_steps": results[-1].report["steps"], "seconds": time.time() - t0}


def _flops_keep_at_latency(params, arch, budget, data_, spec, search_cfg, seed) -> float:
  """The FLOPs remaining where a FLOPs-budget FMP search first fits the latency budget."""
  import jax
  import numpy as np
  import fmp_jax
  from fmp_jax.pruning.latency import LatencyTable
  table = LatencyTable.load(budget.latency_table, allow_other_device=True)
  from fmp_jax.pruning import search, settings as settings_lib, state as state_lib
  settings = settings_lib.SearchSettings.from_config(search_cfg)
  state = state_lib.init_state(arch, params, settings, seed=seed)
  low = fmp_jax.Budget(0.1, metric="flops")

  class Found(Exception):
    pass

  last = {}

  def watch(step, metrics, st):
    z = jax.device_get(st.latents["channels"])
    widths = {g: int(np.count_nonzero(v)) * settings.channel_multiple for g, v in z.items()}
    last.update(widths=widths, latency=table.predict(widths) / table.dense(),
                flops=metrics["flops_ratio"], step=step)
    if last["latency"] <= budget.keep:
      raise Found(metrics["flops_ratio"])

  try:
    search.run_search(arch, state, low, settings, iter(data_), spec["max_search_steps"],
                      on_step=watch, raise_if_not_reached=False)
  except Found as hit:
    return round(float(hit.args[0]), 4)
  raise RuntimeError(
      f"fmp_flops: the FLOPs-budget search never fits {100 * budget.keep:.1f} % of the latency: "
      f"it stopped at step {last.get('step')} with {100 * last.get('flops', 1):.1f} % of the "
      f"FLOPs (the calibration's floor is {100 * low.keep:.0f} %), widths {last.get('widths')}, "
      f"predicted latency {100 * last.get('latency', 1):.1f} %.")


def time_models(rows: list[dict], arch_spec: dict, repeats: int = 5,
                table_path: str | None = None) -> dict:
  """Measured latency ratio (vs the dense model) of every distinct width set in `rows`; with
  a latency table, each runs at the table's plan for its widths (as exports of a latency
  search do), else at Upscaler's default padding."""
  import jax
  import fmp_jax
  from fmp_jax import profiling
  from fmp_jax.pruning import complexity
  from fmp_jax.pruning.latency import LatencyTable
  table = LatencyTable.load(table_path, allow_other_device=True) if table_path else None
  arch = fmp_jax.Arch(**arch_spec)
  lr_hw = complexity.lr_size_for(arch.scale)
  keys = {json.dumps(r["widths"], sort_keys=True) for r in rows}
  calls = {}
  for key in sorted(keys) + ["dense"]:
    a = arch if key == "dense" else arch.with_widths(json.loads(key))
    plan = table.plan(a.widths) if table is not None and a.widths else None
    fn, x, _ = profiling.upscaler_call(fmp_jax.init_params(a, seed=1), a, lr_hw, run_widths=plan)
    jax.block_until_ready(fn(x))
    calls[key] = (fn, x)
  times = {k: [] for k in calls}
  for _ in range(repeats):
    for k, (fn, x) in calls.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(x))
      times[k].append(time.perf_counter() - t0)
  med = {k: statistics.median(v) for k, v in times.items()}
  return {k: med[k] / med["dense"] for k in keys} | {"dense_seconds": med["dense"]}


def _weights_to_budget(params, arch, budget, cmasks):
  """Per-layer magnitude weight masks with the largest common kept fraction within budget."""
  from fmp_jax.pruning import baselines, cost
  counter = cost.for_budget(arch, budget)
  limit = budget.keep * counter.dense()
  lo, hi = 0.0, 1.0
  for _ in range(30):
    mid = 0.5 * (lo + hi)
    w = baselines.magnitude_weight_masks(params, arch, mid, cmasks)
    if counter.exact(cmasks, w) <= limit:
      lo = mid
    else:
      hi = mid
  return baselines.magnitude_weight_masks(params, arch, lo, cmasks)


def _latency_table(cache: str, arch_spec: dict) -> str:
  """The cache's latency table of this model on this device, built (minutes) if missing."""
  import fmp_jax
  from fmp_jax import profiling
  from fmp_jax.pruning.latency import LatencyTable, LatencyTableError
  a = fmp_jax.Arch(**arch_spec)
  path = os.path.join(cache, f"latency_{a.model}{a.blocks}x{a.channels}_x{a.scale}.json")
  try:
    LatencyTable.load(path)
    return path
  except LatencyTableError:
    pass
  os.makedirs(cache, exist_ok=True)
  print(f"building the latency table {path} (tools/profile_latency.py) ...", flush=True)
  table = profiling.build_table(a)
  if table.meta["warnings"]:
    # A table timed on a busy machine misplaces every budget of the runs that follow.
    raise SystemExit("the latency table looks spoiled by load on the machine; nothing was "
                     "saved or run:\n  " + "\n  ".join(table.meta["warnings"]))
  table.save(path)
  return path


def _max_step_drop(history: list) -> float | None:
  """Largest number of channels one search step removed (None without a search)."""
  import numpy as np
  kept = [h["channels_kept"] for h in history if "channels_kept" in h]
  return float(np.max(-np.diff(kept), initial=0)) if len(kept) > 1 else None


def _worker_main(spec_path: str, out_path: str) -> None:
  with open(spec_path) as f:
    spec = json.load(f)
  row = run_one(spec, os.path.dirname(out_path))
  tmp = out_path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(row, f)
  os.replace(tmp, out_path)


# --- scheduling ------------------------------------------------------------------------

def _launch(spec: dict, cache: str, core) -> dict:
  key = run_key(spec)
  out = os.path.join(cache, key + ".json")
  if os.path.exists(out):
    with open(out) as f:
      return json.load(f)
  spec_path = os.path.join(cache, key + ".spec.json")
  with open(spec_path, "w") as f:
    json.dump(spec, f, indent=1)
  log_path = os.path.join(cache, key + ".log")

  def pin():
    if core is not None and hasattr(os, "sched_setaffinity"):
      os.sched_setaffinity(0, {core})

  with open(log_path, "w") as log:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", spec_path, out],
                          stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)
  if proc.returncode != 0:
    with open(log_path) as f:
      tail = f.read()[-3000:]
    raise RuntimeError(f"{spec['arm']} seed {spec['seed']} failed (log {log_path}):\n{tail}")
  with open(out) as f:
    return json.load(f)


def run_all(specs: list[dict], cache: str, jobs: int, on_row=None) -> list[dict]:
  """Runs the specs (a run's source first), `jobs` at a time; returns rows in spec order."""
  os.makedirs(cache, exist_ok=True)
  cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
  free = list(cores[:jobs]) if len(cores) >= jobs > 1 else [None] * jobs
  keys = [run_key(s) for s in specs]
  rows: dict[int, dict] = {}
  pending = list(range(len(specs)))
  running: dict = {}  # future -> (index, core)
  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    while pending or running:
      for i in list(pending):
        dep = specs[i].get("structure_from")
        if dep is not None and not any(keys[j] == dep and j in rows for j in range(len(specs))):
          continue  # its source has not finished yet
        if not free:
          break
        pending.remove(i)
        core = free.pop(0)
        running[pool.submit(_launch, specs[i], cache, core)] = (i, core)
      if not running:
        raise RuntimeError("ablation: runs wait for a source run that is not scheduled.")
      done, _ = concurrent.futures.wait(list(running), return_when="FIRST_COMPLETED")
      for fut in done:
        i, core = running.pop(fut)
        free.append(core)
        rows[i] = fut.result()
        if on_row is not None:
          on_row(rows[i])
  return [rows[i] for i in range(len(specs))]


# --- the table ---------------------------------------------------------------------------

def summarise(rows: list[dict], arms: list[str], reference: str = "l1norm") -> list[dict]:
  """Mean ± std per arm, and the paired PSNR difference to `reference` (same seeds)."""
  out = []
  ref = {r["seed"]: r["psnr"] for r in rows if r["arm"] == reference}
  sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
  for arm in arms:
    mine = [r for r in rows if r["arm"] == arm]
    if not mine:
      continue
    psnr = [r["psnr"] for r in mine]
    ssim = [r["ssim"] for r in mine]
    paired = [r["psnr"] - ref[r["seed"]] for r in mine if r["seed"] in ref]
    out.append({"arm": arm, "seeds": len(mine), "params": statistics.mean(r["params"] for r in mine),
                "flops_ratio": statistics.mean(r["flops_ratio"] for r in mine),
                "executed_macs_ratio": statistics.mean(r.get("executed_macs_ratio", float("nan"))
                                                       for r in mine),
                "latency_ratio": _mean_or_none(r.get("latency_measured_ratio") for r in mine),
                "latency_predicted_ratio": _mean_or_none(r.get("latency_predicted_ratio")
                                                         for r in mine),
                "weight_pruned_ratio": statistics.mean(r["weight_pruned_ratio"] for r in mine),
                "search_steps": statistics.mean(r["search_steps"] for r in mine),
                "psnr": statistics.mean(psnr), "psnr_std": sd(psnr), "psnr_seeds": psnr,
                "ssim": statistics.mean(ssim), "ssim_std": sd(ssim),
                "vs_reference": statistics.mean(paired) if paired else None,
                "vs_reference_std": sd(paired) if paired else None,
                "minutes": statistics.mean(r["seconds"] for r in mine) / 60})
  return out


def _mean_or_none(values):
  values = [v for v in values if v is not None]
  return statistics.mean(values) if values else None


def format_table(summary: list[dict], bicubic: float, metric: str = "flops",
                 reference: str = "l1norm") -> str:
  """A markdown table (the README quotes it as printed)."""
  pct = lambda v: "–" if v is None else f"{100 * v:.1f} %"
  lines = [f"| arm | params | FLOPs | exec. MACs | latency (measured) | latency (table) | "
           f"by weights | s | PSNR (dB) | SSIM | PSNR − {reference} (paired) | PSNR per seed | "
           f"min/run |", "|---" * 13 + "|"]
  for s in summary:
    seeds = " / ".join(f"{p:.3f}" for p in s["psnr_seeds"])
    delta = ("–" if s["vs_reference"] is None or s["arm"] == reference else
             f"{s['vs_reference']:+.3f} ± {s['vs_reference_std']:.3f}")
    lines.append(f"| {s['arm']} | {s['params'] / 1e3:.1f}K | {100 * s['flops_ratio']:.1f} % | "
                 f"{pct(s['executed_macs_ratio'])} | {pct(s['latency_ratio'])} | "
                 f"{pct(s['latency_predicted_ratio'])} | "
                 f"{100 * s['weight_pruned_ratio']:.1f} % | {s['search_steps']:.0f} | "
                 f"{s['psnr']:.3f} ± {s['psnr_std']:.3f} | {s['ssim']:.4f} ± {s['ssim_std']:.4f} | "
                 f"{delta} | {seeds} | {s['minutes']:.1f} |")
  lines.append(f"\nbicubic: {bicubic:.3f} dB; s = phase-1 steps (FMP: until its criterion "
               f"held); \"by weights\": share of the dense {metric} removed by weight masks; "
               f"exec. MACs: every weight of the kept widths; latency: of the dense model, "
               f"one 1280x720-output image (Upscaler)")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--arch", default="esrb-3-32", help="model-blocks-channels, e.g. esrb-6-64")
  parser.add_argument("--scale", type=int, default=2)
  parser.add_argument("--keep", type=float, default=0.3, help="fraction of the metric that remains")
  parser.add_argument("--metric", default="flops", choices=("flops", "params", "latency"))
  parser.add_argument("--latency-table", default=None,
                      help="--metric latency: the table (default: built into --cache)")
  parser.add_argument("--no-time", action="store_true",
                      help="do not measure every model's latency after the runs")
  parser.add_argument("--time-repeats", type=int, default=5)
  parser.add_argument("--channel-keep", type=float, default=None,
                      help="total_fixed's channel part (default: channels remove 80%% of what goes)")
  parser.add_argument("--steps", type=int, default=3390, help="total gradient steps T per arm")
  parser.add_argument("--search-steps", type=int, default=None,
                      help="phase-1 length S (default: the recipe's search.pace_steps)")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--arms", default=",".join(ARMS),
                      help=f"comma list of {', '.join(ARMS + EXTRA_ARMS)}")
  parser.add_argument("--config", default=os.path.join(REPO, "configs", "ablation.py"),
                      help="config whose search/finetune recipe every arm uses")
  parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                      help="override a recipe field, e.g. search.channel_l1=0.3 (repeatable)")
  parser.add_argument("--jobs", type=int, default=None, help="parallel runs (default: CPU cores)")
  parser.add_argument("--cache", default=os.path.join(REPO, "workdir_bench", "ablation"))
  parser.add_argument("--json", default=None, help="write the table and every run here")
  parser.add_argument("--quick", action="store_true",
                      help="ESRB-2-16, keep 0.5, 1 seed, 3000 steps (~2.5 min): every arm runs and learns")
  parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    _worker_main(*args.worker)
    return None
  if argv is None and (args.metric == "latency" or not args.no_time):
    # Build tables and time models under the allocator settings tools/profile_latency.py
    # and bench/latency_model.py use, so their tables and these timings agree.
    from fmp_jax.profiling import reexec_with_hugepages
    reexec_with_hugepages()

  overrides = list(args.set)
  if args.quick:
    args.arch, args.seeds, args.steps, args.keep = "esrb-2-16", 1, 3000, 0.5
    overrides = ["search.batch_size=4", "search.patch_size=24", "finetune.batch_size=4",
                 "finetune.patch_size=24", "search.pace_steps=40", "search.latent_lr=0.05",
                 "finetune.lr_halve_every=1000"] + overrides
  recipe = load_recipe(args.config, overrides)
  arch = parse_arch(args.arch, args.scale)
  if args.quick:
    arch["esa_channels"] = 8
  budget = {"keep": args.keep, "metric": args.metric}
  if args.metric == "latency":
    budget["latency_table"] = os.path.abspath(
        args.latency_table or _latency_table(args.cache, arch))
    # Runs are pinned to one core each (--jobs), so a worker sees "1 core" where the table
    # (built here on every core, as the final timing runs) says more: the same machine.
    budget["latency_any_device"] = True
  planned = args.search_steps or int(recipe["search"].get("pace_steps") or 0)
  if planned <= 0 or planned >= args.steps:
    raise SystemExit(f"phase-1 length S={planned} must be in (0, T={args.steps}); pass "
                     f"--search-steps.")
  channel_keep = args.channel_keep or 1 - 0.8 * (1 - args.keep)
  arms = [a.strip() for a in args.arms.split(",") if a.strip()]
  for a in arms:
    if a not in ARMS + EXTRA_ARMS:
      raise SystemExit(f"--arms: unknown arm {a!r}; known: {', '.join(ARMS + EXTRA_ARMS)}")
  base = dict(arch=arch, budget=budget, steps=args.steps, search_steps=planned,
              max_search_steps=max(planned, args.steps // 2) if not args.quick else 60,
              recipe=recipe, channel_keep=channel_keep)
  specs = []
  order = sorted(arms, key=lambda a: a == "fmp_scratch")  # sources first
  for seed in range(args.seeds):
    for arm in order:
      spec = dict(base, arm=arm, seed=seed)
      if not arm.startswith("fmp_") or arm == "fmp_scratch":
        # Baselines use only these search fields: their runs (and cache
        # entries) are shared by ablations that vary the FMP search.
        spec["recipe"] = dict(recipe, search={k: recipe["search"][k] for k in BASELINE_FIELDS})
        spec.pop("channel_keep")
        spec.pop("max_search_steps")
      if arm in DEPENDS:
        spec["structure_from"] = run_key(dict(base, arm=DEPENDS[arm], seed=seed))
        spec["search_recipe"] = recipe["search"]  # the source's search shapes this arm
        if DEPENDS[arm] not in arms:
          raise SystemExit(f"--arms: {arm} needs {DEPENDS[arm]} in the same ablation.")
      specs.append(spec)
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
  jobs = args.jobs or max(1, cores)
  print(f"ablation: {args.arch.upper()} x{args.scale}, keep {args.keep} of {args.metric}, "
        f"T={args.steps} steps (phase 1: S={planned}), {args.seeds} seed(s), arms {arms}, "
        f"{jobs} job(s); recipe {os.path.relpath(args.config, REPO)} {' '.join(overrides)}",
        flush=True)

  def show(row):
    print(f"  {row['arm']:<16} seed {row['seed']}: {row['psnr']:.3f} dB, "
          f"{100 * row['flops_ratio']:.1f}% FLOPs, s={row['search_steps']}, "
          f"{row['seconds'] / 60:.1f} min", flush=True)

  t0 = time.time()
  rows = run_all(specs, args.cache, jobs, on_row=show)
  if not args.no_time:
    print(f"timing {len({json.dumps(r['widths'], sort_keys=True) for r in rows})} models "
          f"against the dense one ({args.time_repeats} interleaved rounds)...", flush=True)
    measured = time_models(rows, arch, args.time_repeats, budget.get("latency_table"))
    for r in rows:
      r["latency_measured_ratio"] = measured[json.dumps(r["widths"], sort_keys=True)]
  if args.metric == "latency":
    # Predictions from the table as it is read now (a cached run may predate a change of
    # how the table is read), with the widths each model runs at.
    from fmp_jax.pruning.latency import LatencyTable
    table = LatencyTable.load(budget["latency_table"], allow_other_device=True)
    for r in rows:
      r["latency_predicted_ratio"] = table.predict(r["widths"]) / table.dense()
      r["run_widths"] = table.plan(r["widths"])
  summary = summarise(rows, arms)
  bicubic = rows[0]["bicubic_psnr"]
  print()
  print(format_table(summary, bicubic, args.metric))
  print(f"wall time {(time.time() - t0) / 60:.1f} min")
  if args.json:
    with open(args.json, "w") as f:
      settings = dict(base, seeds=args.seeds, arms=arms, overrides=overrides)
      if settings["budget"].get("latency_table"):
        # Written relative to the repository: the JSON is shared, the checkout's place is not.
        settings["budget"] = dict(settings["budget"], latency_table=os.path.relpath(
            settings["budget"]["latency_table"], REPO))
      json.dump({"settings": settings,
                 "summary": summary, "runs": rows}, f, indent=1)
  return summary


if __name__ == "__main__":
  main()

"""FMP against simpler ways of reaching the same budget: the ablation that decides method choices.

  python bench/ablation.py                                  # ESRB-3-32 x2, keep 0.3 FLOPs, 3 seeds
  python bench/ablation.py --keep 0.15 --json abl_015.json
  python bench/ablation.py --arms fmp_total,l1norm --set search.channel_l1=0.3
  python bench/ablation.py --quick                          # minutes-sized, for tests
  python bench/ablation.py --metric latency --keep 0.6      # at equal predicted latency
  python bench/ablation.py --config configs/paper_proxy.py --arch esrb-6-64 --esa-channels 4 \
      --metric params --keep 0.085 --steps 5000 --data_dir DIR   # the paper regime

Every arm gets the same data (the bundled TRAIN photos or --data_dir's train split, patches
drawn from `(seed, step)`), the same batch and patch, and the same total number of
gradient steps T. A run is two phases:

* phase 1 (S steps, the configured search length, Adam at ``search.lr``):
  FMP's search for the FMP arms (it stops when its budget criterion holds,
  after s <= S... steps), plain dense training for the baselines;
* phase 2 (T - s steps; s = S for every non-FMP arm): fine-tuning of the
  pruned (or small) model with the config's fine-tune recipe.

Arms are named objects in a registry (`ARMS`; `--arms list` prints them with their docs):
one `Arm` per way of reaching the budget, whose `build` trains phase 1; one runner
(`run_one`) fine-tunes, scores and exports whatever it builds. A new arm is a function and a
`@register(...)` line. The listed ones:

  fmp_<criterion>   FMP search under criterion total, channel, weight or total_fixed
  fmp_scratch       fmp_total's structure re-initialised, trained both phases (Liu et al. 2019)
  uniform           the widest uniform width within the budget, from scratch
  l1norm / random   dense phase 1, then L1-norm (Li et al. 2017) / random channels at the
                    uniform widths
  dense             the unpruned model (the ceiling; not within the budget)
  fmp_flops         (--metric latency) FMP-as-the-paper with a FLOPs budget re-pruned to the
                    same predicted latency
and, by name only: fmp_total_m4/_m8, l1mag_c0.5/0.6/0.75, fmp_family (bench/family.py).

With --metric latency every budget is a fraction of the dense model's latency as the
table (--latency-table; built into the cache if missing) predicts it: FMP arms prune to
it, the baselines take the widest uniform width it allows. After the runs every model's
latency is measured (Upscaler, one whole image at the counted LR size, interleaved with
the dense model; --no-time skips it) and shown beside counted FLOPs and executed MACs;
the bench re-executes itself with glibc's huge pages on, as tools/profile_latency.py does.

Data: the bundled TRAIN photos, or with --data_dir DIR the DIV2K train split of DIR (e.g.
bench/photo_set.py's wallpapers; its manifest's sha256 is part of every run's key). Scores:
PSNR/SSIM (Y, border = scale, 8-bit) on whole images: DIR's valid split (the table's PSNR)
and the held-out bundled EVAL photos (always; "PSNR bundled"). Runs go to --cache: per arm and
seed a JSON row, the phase-1 model (<key>.msgpack) and the fine-tuned one it scores
(<key>.tuned.msgpack, the driver's export format), so any model of a table can be re-scored
(tools/evaluate.py) or timed (tools/count.py --measure) later, and an interrupted ablation
resumes; independent runs go to --jobs worker processes, each pinned
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
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

from fmp_jax.pruning import criteria  # noqa: E402
from photo_set import manifest_sha256  # noqa: E402

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
  # Logging and checkpoint intervals do not change results, and what fine-tuning starts from
  # is each arm's own choice (fmp_total hands on, fmp_scratch starts anew): left out of keys.
  drop = ("log_every", "checkpoint_every", "checkpoint_every_minutes", "init")
  # Options added after runs were cached, at the value that is the code before them: left
  # out of keys, so those runs are still found.
  neutral = {"fill_budget": False}
  return {section: {k: v for k, v in cfg[section].to_dict().items()
                    if k not in drop and not (k in neutral and v == neutral[k])}
          for section in ("search", "finetune")}


def run_key(spec: dict) -> str:
  return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


# --- the arms: a registry of named objects, one runner ---------------------------------

@dataclasses.dataclass
class Built:
  """What an arm's phase 1 hands to fine-tuning: the (small or masked) model and its search."""
  params: dict
  arch: object
  masks: dict
  search_steps: int
  history: list = dataclasses.field(default_factory=list)
  flops_keep: float | None = None
  budget: object = None        # the member's own budget (fmp_family), else the run's


@dataclasses.dataclass(frozen=True)
class Arm:
  """One way of reaching the budget.

  build(run) trains phase 1 and returns a `Built` (fmp_family: one per member); the runner
  exports it, fine-tunes it for the rest of T, scores it and exports the fine-tuned model.
  searches: the run key holds the FMP search recipe (else only BASELINE_FIELDS, so baseline
  runs are shared by ablations that vary the search); source: an arm whose phase-1 export
  this one starts from (same seed); metrics: the budget metrics it takes; listed: part of
  the default --arms.
  """
  name: str
  build: Callable[["Run"], "Built | list[Built]"]
  doc: str
  searches: bool = False
  source: str | None = None
  metrics: tuple = ("flops", "params", "latency")
  listed: bool = True


ARMS: dict[str, Arm] = {}


def register(name, doc, **kwargs):
  def wrap(build):
    ARMS[name] = Arm(name, build, doc, **kwargs)
    return build
  return wrap


@dataclasses.dataclass
class Run:
  """One (arm, seed): the spec read into objects, and its data."""
  spec: dict
  cache: str

  def __post_init__(self):
    import fmp_jax
    self.arm, self.seed = self.spec["arm"], self.spec["seed"]
    self.arch = fmp_jax.Arch(**self.spec["arch"])
    self.budget = fmp_jax.Budget(**self.spec["budget"])
    self.search_cfg = dict(self.spec["recipe"]["search"])
    self.tune_cfg = self.spec["recipe"]["finetune"]
    self.planned = self.spec["search_steps"]

  def patches(self, phase: int):
    """Phase 1's (search/dense) or phase 2's (fine-tune) patch sampler: the bundled TRAIN
    photos, or the DIV2K train split of spec["data"]["dir"]; seeds seed and seed + 1."""
    cfg = self.search_cfg if phase == 1 else self.tune_cfg
    seed = self.seed if phase == 1 else self.seed + 1
    return _patches(self.spec.get("data"), self.arch.scale, cfg["patch_size"],
                    cfg["batch_size"], seed, self.cache)

  def init(self, arch=None):
    import fmp_jax
    return fmp_jax.init_params(arch or self.arch, seed=self.seed)

  def dense_phase1(self, arch=None, masks=None):
    """S steps of plain training from scratch (of `arch`, default the dense backbone)."""
    arch = arch or self.arch
    return _train(self.init(arch), arch, masks, self.patches(1), self.planned,
                  self.search_cfg["lr"])

  def search(self, budget, config=None):
    import fmp_jax
    return fmp_jax.prune(self.init(), budget, arch=self.arch, data=self.patches(1),
                         steps=self.spec["max_search_steps"], seed=self.seed,
                         config=config or self.search_cfg)


def _patches(data_spec, scale, patch, batch, seed, cache):
  from fmp_jax import data
  if not data_spec:
    return data.bundled_patches(scale, patch, batch, seed=seed)
  hr, lr, names = _train_images(data_spec["dir"], scale, cache)
  return data.PatchSampler(hr, scale, patch, batch, seed=seed, lr_images=lr, names=names)


_IMAGES: dict = {}


def _train_images(data_dir, scale, cache):
  """The DIV2K train split of data_dir (decoded copies kept under the cache), once per process."""
  from fmp_jax import data
  if (data_dir, scale) not in _IMAGES:
    pairs = data.div2k_pairs(data_dir, scale, "train",
                             cache_dir=os.path.join(cache, "decoded"))
    _IMAGES[data_dir, scale] = ([p.hr for p in pairs], [p.lr for p in pairs],
                                [p.name for p in pairs])
  return _IMAGES[data_dir, scale]


def _train(params, arch, masks, sampler, steps, lr, halve_every=None):
  from fmp_jax import finetuning
  if steps <= 0:
    return params
  return finetuning.finetune(params, arch, masks, sampler, steps, lr=lr, halve_every=halve_every)


def _searched(run: Run, result) -> Built:
  history = [{k: h[k] for k in ("step", "remaining", "channels_kept", "target_now", "dual", "l1")
              if k in h} for h in result.history]
  return Built(result.params, result.arch, result.masks, result.report["steps"], history)


def _fmp_arm(criterion: str, multiple: int = 0):
  def build(run: Run) -> Built:
    import fmp_jax
    config = dict(run.search_cfg, channel_multiple=multiple) if multiple else run.search_cfg
    b = dict(run.spec["budget"], criterion=criterion)
    b.update({f: run.spec[f] for f in criteria.CRITERIA[criterion].needs})
    return _searched(run, run.search(fmp_jax.Budget(**b), config))
  return build


for _c in criteria.CRITERIA:
  register(f"fmp_{_c}", f"FMP search under criterion {_c}, then fine-tuning",
           searches=True)(_fmp_arm(_c))
for _m in (4, 8):
  register(f"fmp_total_m{_m}", f"fmp_total with search.channel_multiple {_m}", searches=True,
           listed=False)(_fmp_arm("total", _m))


@register("fmp_scratch", "the structure fmp_total found (widths and weight masks), "
          "re-initialised and trained both phases (Liu et al., ICLR 2019)", source="fmp_total")
def _fmp_scratch(run: Run) -> Built:
  import fmp_jax
  found = fmp_jax.load(os.path.join(run.cache, run.spec["structure_from"] + ".msgpack"))
  return Built(run.dense_phase1(found.arch, found.masks), found.arch, found.masks, run.planned)


def _uniform(run: Run):
  from fmp_jax.pruning import baselines
  return run.arch.with_widths(baselines.uniform_widths(run.arch, run.budget))


@register("uniform", "every group at the same width fraction, the widest within the budget, "
          "trained both phases from scratch")
def _uniform_arm(run: Run) -> Built:
  small = _uniform(run)
  return Built(run.dense_phase1(small), small, {}, run.planned)


@register("dense", "the unpruned model, both phases (not within the budget)")
def _dense_arm(run: Run) -> Built:
  return Built(run.dense_phase1(), run.arch, {}, run.planned)


def _channel_arm(kind: str):
  def build(run: Run) -> Built:
    from fmp_jax.pruning import baselines, surgery
    params = run.dense_phase1()
    widths = baselines.uniform_widths(run.arch, run.budget)
    if kind == "l1norm":
      cmasks = baselines.magnitude_channel_masks(params, run.arch, widths)
    else:
      cmasks = baselines.random_channel_masks(run.arch, widths, seed=run.seed)
    params, small, masks = surgery.slice_model(run.arch, params, cmasks)
    return Built(params, small, masks, run.planned)
  return build


register("l1norm", "dense phase 1, then each group's largest-L1-norm channels at the uniform "
         "widths (Li et al., ICLR 2017)")(_channel_arm("l1norm"))
register("random", "dense phase 1, then random channels at the uniform "
         "widths")(_channel_arm("random"))


def _l1mag_arm(channel_keep: float):
  def build(run: Run) -> Built:
    import fmp_jax
    from fmp_jax.pruning import baselines, surgery
    params = run.dense_phase1()
    channel_budget = fmp_jax.Budget(channel_keep, metric=run.budget.metric)
    cmasks = baselines.magnitude_channel_masks(
        params, run.arch, baselines.uniform_widths(run.arch, channel_budget))
    wmasks = _weights_to_budget(params, run.arch, run.budget, cmasks)
    params, small, masks = surgery.slice_model(run.arch, params, cmasks, wmasks)
    return Built(params, small, masks, run.planned)
  return build


for _x in (0.5, 0.6, 0.75):
  register(f"l1mag_c{_x}", f"dense phase 1, l1norm channels at the uniform widths that keep "
           f"{_x} of the metric, then each layer's smallest weights down to the budget",
           listed=False)(_l1mag_arm(_x))


@register("fmp_flops", "FMP Total with a FLOPs budget, its keep set where a calibration search "
          "(same seed, FLOPs budget 0.1) first reached the latency budget in the table's "
          "prediction: FMP-as-the-paper re-pruned to the same latency", searches=True,
          metrics=("latency",))
def _fmp_flops(run: Run) -> Built:
  import fmp_jax
  flops_keep = _flops_keep_at_latency(run)
  built = _searched(run, run.search(fmp_jax.Budget(flops_keep, metric="flops")))
  built.history, built.flops_keep = [], flops_keep
  return built


@register("fmp_family", "one FMP search to the deepest keep of spec['family'], a model at "
          "every keep on its way down (bench/family.py)", searches=True, listed=False)
def _fmp_family(run: Run) -> list[Built]:
  import fmp_jax
  results = fmp_jax.prune_family(run.init(), run.spec["family"], arch=run.arch,
                                 budget=run.budget, data=run.patches(1),
                                 steps=run.spec["max_search_steps"], seed=run.seed,
                                 config=run.search_cfg)
  return [Built(r.params, r.arch, r.masks, r.report["steps"],
                budget=fmp_jax.Budget(**dict(run.spec["budget"],
                                             keep=r.report["budget"]["keep"])))
          for r in results]


def run_one(spec: dict, cache: str) -> dict:
  """Trains, scores and exports one (arm, seed); returns the row as a dict.

  Each model is written twice beside the row: <key>.msgpack after phase 1 (what fmp_scratch
  starts from) and <key>.tuned.msgpack after fine-tuning (what the row scores), both in the
  driver's export format (fmp_jax.load / tools/evaluate.py / tools/upscale.py read them).
  """
  import fmp_jax
  t0 = time.time()
  run = Run(spec, cache)
  built = ARMS[run.arm].build(run)
  key = run_key(spec)
  if isinstance(built, list):   # a family: one fine-tuned, scored model per member
    members = []
    for b in built:
      tag = f"{key}_{b.budget.keep:g}"
      fmp_jax.save_export(os.path.join(cache, tag + ".msgpack"), b.params, b.arch, b.masks)
      row = _finetune_and_score(run, b, b.budget, spec["finetune_steps"], tag)
      members.append(dict(row, arm=run.arm, seed=run.seed, search_steps=b.search_steps))
    return {"arm": run.arm, "seed": run.seed, "members": members,
            "search_steps": built[-1].search_steps, "seconds": time.time() - t0}
  fmp_jax.save_export(os.path.join(cache, key + ".msgpack"), built.params, built.arch,
                      built.masks)
  row = _finetune_and_score(run, built, run.budget,
                            spec.get("finetune_steps", spec["steps"] - built.search_steps), key)
  return dict(row, **{"arm": run.arm, "seed": run.seed, "flops_keep": built.flops_keep,
                      "search_steps": built.search_steps, "seconds": time.time() - t0,
                      "history": built.history, "max_step_drop": _max_step_drop(built.history)})


def _finetune_and_score(run: Run, built: Built, budget, steps: int, tag: str) -> dict:
  """Fine-tunes a pruned (or small) model for `steps`, exports it as <tag>.tuned.msgpack and
  scores it: the row's numbers.

  Scores: Y-PSNR/SSIM (border = scale, 8-bit) on whole images: the valid split of the run's
  data set when it has one (the row's psnr/ssim), and the held-out bundled photos always.
  """
  import fmp_jax
  from fmp_jax import evaluation
  small, masks = built.arch, built.masks
  tuned = _train(built.params, small, masks or None, run.patches(2), steps, run.tune_cfg["lr"],
                 run.tune_cfg["lr_halve_every"])
  export = tag + ".tuned.msgpack"
  fmp_jax.save_export(os.path.join(run.cache, export), tuned, small, masks)
  report = fmp_jax.sparsity_report(tuned, small, masks, metric=budget.metric,
                                   latency_table=budget.latency_table)
  scores = {name: evaluation.evaluate_model(tuned, small, pairs, masks=masks or None)["summary"]
            for name, pairs in _eval_sets(run.spec.get("data"), small.scale).items()}
  main = scores["valid" if "valid" in scores else "bundled"]
  return {"psnr": main["psnr"], "ssim": main["ssim"], "bicubic_psnr": main["bicubic_psnr"],
          "scores": {name: {k: v[k] for k in ("psnr", "ssim", "bicubic_psnr", "images")}
                     for name, v in scores.items()},
          "params": report["params"],
          "flops": report["flops"], "params_ratio": report["params_ratio"],
          "flops_ratio": report["flops_ratio"],
          "executed_macs_ratio": report["executed_macs_ratio"],
          "latency_predicted_ratio": report.get("latency_ratio"),
          "channel_pruned_ratio": report["channel_pruned_ratio"],
          "weight_pruned_ratio": report["weight_pruned_ratio"],
          "widths": report["widths"] if small.widths is None else dict(small.widths),
          "finetune_steps": steps, "budget_keep": budget.keep, "export": export}


def _eval_sets(data_spec, scale) -> dict:
  """{"valid": the data set's DIV2K valid split (if any), "bundled": the held-out photos}."""
  from fmp_jax import data
  sets = {}
  if data_spec:
    sets["valid"] = data.div2k_pairs(data_spec["dir"], scale, "valid")
  sets["bundled"] = data.eval_pairs(None, "bundled", scale)
  return sets


def _flops_keep_at_latency(run: Run) -> float:
  """The FLOPs remaining where a FLOPs-budget FMP search first fits the latency budget."""
  import jax
  import numpy as np
  import fmp_jax
  from fmp_jax.pruning.latency import LatencyTable
  from fmp_jax.pruning import search, settings as settings_lib, state as state_lib
  budget, arch = run.budget, run.arch
  table = LatencyTable.load(budget.latency_table, allow_other_device=True)
  settings = settings_lib.SearchSettings.from_config(run.search_cfg)
  state = state_lib.init_state(arch, run.init(), settings, seed=run.seed)
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
    search.run_search(arch, state, low, settings, iter(run.patches(1)),
                      run.spec["max_search_steps"], on_step=watch, raise_if_not_reached=False)
  except Found as hit:
    return round(float(hit.args[0]), 4)
  raise RuntimeError(
      f"fmp_flops: the FLOPs-budget search never fits {100 * budget.keep:.1f} % of the latency: "
      f"it stopped at step {last.get('step')} with {100 * last.get('flops', 1):.1f} % of the "
      f"FLOPs (the calibration's floor is {100 * low.keep:.0f} %), widths {last.get('widths')}, "
      f"predicted latency {100 * last.get('latency', 1):.1f} %.")


def time_models(rows: list[dict], arch_spec: dict, repeats: int = 5,
                table_path: str | None = None) -> dict:
  """Measured latency ratio (vs the dense model, the median of interleaved rounds'
  ratios) of every distinct width set in `rows`, and the keys whose rounds disagree
  ("unreliable"); with a latency table, each runs at the table's plan for its widths (as
  exports of a latency search do), else at Upscaler's default padding."""
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
    calls[key] = (fn, (x,))
  timing = profiling.time_interleaved(calls, rounds=repeats)
  busy = [k for k in keys if timing.unreliable(k, "dense")]
  if busy:
    print(f"warning: {len(busy)} of {len(keys)} timings are unreliable (rounds differ by more "
          f"than {100 * profiling.UNRELIABLE_SPREAD:.0f} %: machine busy)", flush=True)
  return ({k: timing.ratio(k, "dense") for k in keys}
          | {"dense_seconds": timing.seconds("dense"), "unreliable": busy})


def _weights_to_budget(params, arch, budget, cmasks):
  """Per-layer magnitude weight masks with the largest common kept fraction within budget."""
  from fmp_jax.pruning import baselines
  counter = budget.cost_model(arch)
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


# --- the table (bench/family.py prints the same) -----------------------------------------

def summarise(rows: list[dict], arms: list[str], reference: str = "l1norm") -> list[dict]:
  """Mean ± std per (budget, arm), and the paired PSNR difference to `reference` at the same
  budget (same seeds). Rows of several budgets (bench/family.py) give a row per budget."""
  out = []
  sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
  keeps = sorted({r["budget_keep"] for r in rows}, reverse=True)
  for keep in keeps:
    at_keep = [r for r in rows if abs(r["budget_keep"] - keep) < 1e-9]
    ref = {r["seed"]: r["psnr"] for r in at_keep if r["arm"] == reference}
    for arm in arms:
      mine = [r for r in at_keep if r["arm"] == arm]
      if not mine:
        continue
      psnr = [r["psnr"] for r in mine]
      ssim = [r["ssim"] for r in mine]
      paired = [r["psnr"] - ref[r["seed"]] for r in mine if r["seed"] in ref]
      bundled = [r["scores"]["bundled"]["psnr"] for r in mine if "valid" in r.get("scores", {})]
      out.append({"arm": arm, "keep": keep, "seeds": len(mine),
                  "params": statistics.mean(r["params"] for r in mine),
                  "flops_ratio": statistics.mean(r["flops_ratio"] for r in mine),
                  "executed_macs_ratio": statistics.mean(r.get("executed_macs_ratio",
                                                               float("nan")) for r in mine),
                  "latency_ratio": _mean_or_none(r.get("latency_measured_ratio") for r in mine),
                  "latency_predicted_ratio": _mean_or_none(r.get("latency_predicted_ratio")
                                                           for r in mine),
                  "weight_pruned_ratio": statistics.mean(r["weight_pruned_ratio"] for r in mine),
                  "search_steps": statistics.mean(r["search_steps"] for r in mine),
                  "psnr": statistics.mean(psnr), "psnr_std": sd(psnr), "psnr_seeds": psnr,
                  "ssim": statistics.mean(ssim), "ssim_std": sd(ssim),
                  "bundled_psnr": statistics.mean(bundled) if bundled else None,
                  "vs_reference": statistics.mean(paired) if paired else None,
                  "vs_reference_std": sd(paired) if paired else None,
                  "minutes": statistics.mean(r.get("seconds", 0.0) for r in mine) / 60})
  return out


def _mean_or_none(values):
  values = [v for v in values if v is not None]
  return statistics.mean(values) if values else None


def format_table(summary: list[dict], bicubic: float, metric: str = "flops",
                 reference: str = "l1norm", scored_on: str = "the held-out bundled photos") -> str:
  """A markdown table (the README and bench/RESULTS.md quote it as printed)."""
  pct = lambda v: "–" if v is None else f"{100 * v:.1f} %"
  keeps = len({s["keep"] for s in summary}) > 1
  bundled = any(s["bundled_psnr"] is not None for s in summary)
  head = (["keep"] if keeps else []) + [
      "arm", "params", "FLOPs", "exec. MACs", "latency (measured)", "latency (table)",
      "by weights", "s", "PSNR (dB)", "SSIM", f"PSNR − {reference} (paired)", "PSNR per seed"]
  head += (["PSNR bundled"] if bundled else []) + ["min/run"]
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  for s in summary:
    seeds = " / ".join(f"{p:.3f}" for p in s["psnr_seeds"])
    delta = ("–" if s["vs_reference"] is None or s["arm"] == reference else
             f"{s['vs_reference']:+.3f} ± {s['vs_reference_std']:.3f}")
    cells = ([f"{s['keep']:g}"] if keeps else []) + [
        s["arm"], f"{s['params'] / 1e3:.1f}K", f"{100 * s['flops_ratio']:.1f} %",
        pct(s["executed_macs_ratio"]), pct(s["latency_ratio"]), pct(s["latency_predicted_ratio"]),
        f"{100 * s['weight_pruned_ratio']:.1f} %", f"{s['search_steps']:.0f}",
        f"{s['psnr']:.3f} ± {s['psnr_std']:.3f}", f"{s['ssim']:.4f} ± {s['ssim_std']:.4f}",
        delta, seeds]
    cells += ([f"{s['bundled_psnr']:.3f}"] if bundled else []) + [f"{s['minutes']:.1f}"]
    lines.append("| " + " | ".join(cells) + " |")
  lines.append(f"\nscored on {scored_on}; bicubic: {bicubic:.3f} dB; s = phase-1 steps (FMP: "
               f"until its criterion held); \"by weights\": share of the dense {metric} removed "
               f"by weight masks; exec. MACs: every weight of the kept widths; latency: of the "
               f"dense model, one 1280x720-output image (Upscaler)")
  return "\n".join(lines)


# --- the command ---------------------------------------------------------------------------

def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--arch", default="esrb-3-32",
                      help="model-blocks-channels, e.g. esrb-6-64 (default: the config's)")
  parser.add_argument("--esa-channels", type=int, default=None,
                      help="ESA width (default: the config's model.esa_channels)")
  parser.add_argument("--scale", type=int, default=2)
  parser.add_argument("--keep", type=float, default=0.3, help="fraction of the metric that remains")
  parser.add_argument("--metric", default="flops", choices=("flops", "params", "latency"))
  parser.add_argument("--data_dir", "--data-dir", default=None,
                      help="train on DIR's DIV2K train split and score on its valid split "
                           "(e.g. bench/photo_set.py's); default: the bundled photos")
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
  parser.add_argument("--arms", default=None,
                      help="comma list of arms (default: the listed arms that take --metric); "
                           "`--arms list` prints every arm")
  parser.add_argument("--config", default=os.path.join(REPO, "configs", "ablation.py"),
                      help="config whose search/finetune recipe every arm uses")
  parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                      help="override a recipe field, e.g. search.channel_l1=0.3 (repeatable)")
  parser.add_argument("--jobs", type=int, default=None, help="parallel runs (default: CPU cores)")
  parser.add_argument("--cache", default=os.path.join(REPO, "workdir_bench", "ablation"))
  parser.add_argument("--json", default=None, help="write the table and every run here")
  parser.add_argument("--cached-only", action="store_true",
                      help="train nothing: the table of the runs already in --cache (a long "
                           "ablation's progress; the JSON says which runs are missing)")
  parser.add_argument("--quick", action="store_true",
                      help="ESRB-2-16, keep 0.5, 1 seed, 3000 steps (~2.5 min): every arm runs and learns")
  parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def default_arms(metric: str) -> list[str]:
  return [a.name for a in ARMS.values() if a.listed and metric in a.metrics]


def make_specs(args) -> tuple[dict, list[dict]]:
  """(settings, one spec per (arm, seed)) of the parsed command line; sources first.

  A spec is everything a run's result depends on; its hash is the run's cache key.
  """
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
  if args.esa_channels:
    arch["esa_channels"] = args.esa_channels
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
  arms = ([a.strip() for a in args.arms.split(",") if a.strip()] if args.arms
          else default_arms(args.metric))
  for a in arms:
    if a not in ARMS:
      raise SystemExit(f"--arms: unknown arm {a!r}; known: {', '.join(ARMS)}")
    if args.metric not in ARMS[a].metrics:
      raise SystemExit(f"--arms: {a} takes --metric {' or '.join(ARMS[a].metrics)}, "
                       f"not {args.metric}.")
  base = dict(arch=arch, budget=budget, steps=args.steps, search_steps=planned,
              max_search_steps=max(planned, args.steps // 2) if not args.quick else 60,
              recipe=recipe, channel_keep=channel_keep)
  data_dir = getattr(args, "data_dir", None)
  if data_dir:
    # The manifest's checksum (bench/photo_set.py) names the data; any change re-runs.
    from fmp_jax import data as data_lib
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
    data_lib.resolve_layout(data_dir, args.scale, "valid")  # a wrong path fails here
    base["data"] = {"dir": data_dir, "manifest": manifest_sha256(data_dir)}
  specs = []
  order = sorted(arms, key=lambda a: ARMS[a].source is not None)  # sources first
  for seed in range(args.seeds):
    for arm in order:
      spec = dict(base, arm=arm, seed=seed)
      if not ARMS[arm].searches:
        # Baselines use only these search fields: their runs (and cache
        # entries) are shared by ablations that vary the FMP search.
        spec["recipe"] = dict(recipe, search={k: recipe["search"][k] for k in BASELINE_FIELDS})
        spec.pop("channel_keep")
        spec.pop("max_search_steps")
      source = ARMS[arm].source
      if source is not None:
        if source not in arms:
          raise SystemExit(f"--arms: {arm} needs {source} in the same ablation.")
        spec["structure_from"] = run_key(dict(base, arm=source, seed=seed))
        spec["search_recipe"] = recipe["search"]  # the source's search shapes this arm
      specs.append(spec)
  settings = dict(base, seeds=args.seeds, arms=arms, overrides=overrides)
  return settings, specs


def main(argv=None):
  args = parse_args(argv)
  if args.worker:
    _worker_main(*args.worker)
    return None
  if args.arms == "list":
    for arm in ARMS.values():
      print(f"{arm.name:<14} {'' if arm.listed else '(not in the default) '}{arm.doc}"
            + (f" [--metric {'/'.join(arm.metrics)}]" if len(arm.metrics) < 3 else ""))
    return None
  if argv is None and (args.metric == "latency" or not args.no_time):
    # Build tables and time models under the allocator settings tools/profile_latency.py
    # and bench/latency_model.py use, so their tables and these timings agree.
    from fmp_jax.profiling import reexec_with_hugepages
    reexec_with_hugepages()

  settings, specs = make_specs(args)
  arms, budget = settings["arms"], settings["budget"]
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
  jobs = args.jobs or max(1, cores)
  data = settings.get("data")
  print(f"ablation: {args.arch.upper()} x{args.scale}, keep {args.keep} of {args.metric}, "
        f"T={args.steps} steps (phase 1: S={settings['search_steps']}), {args.seeds} seed(s), "
        f"arms {arms}, {jobs} job(s); recipe {os.path.relpath(args.config, REPO)} "
        f"{' '.join(settings['overrides'])}; data "
        + (f"{data['dir']} (manifest {str(data['manifest'])[:12]})" if data else "bundled"),
        flush=True)

  def show(row):
    print(f"  {row['arm']:<16} seed {row['seed']}: {row['psnr']:.3f} dB, "
          f"{100 * row['flops_ratio']:.1f}% FLOPs, s={row['search_steps']}, "
          f"{row['seconds'] / 60:.1f} min", flush=True)

  t0 = time.time()
  missing = []
  if args.cached_only:
    done = [s for s in specs if os.path.exists(os.path.join(args.cache, run_key(s) + ".json"))]
    missing = [f"{s['arm']} seed {s['seed']}" for s in specs if s not in done]
    print(f"--cached-only: {len(done)} of {len(specs)} runs are in the cache"
          + (f"; missing: {', '.join(missing)}" if missing else ""), flush=True)
    specs = done
    if not specs:
      raise SystemExit("--cached-only: no run of this ablation is in the cache yet.")
  rows = run_all(specs, args.cache, jobs, on_row=show)
  if not args.no_time:
    print(f"timing {len({json.dumps(r['widths'], sort_keys=True) for r in rows})} models "
          f"against the dense one ({args.time_repeats} interleaved rounds)...", flush=True)
    measured = time_models(rows, settings["arch"], args.time_repeats,
                           budget.get("latency_table"))
    for r in rows:
      key = json.dumps(r["widths"], sort_keys=True)
      r["latency_measured_ratio"] = measured[key]
      r["latency_unreliable"] = key in measured["unreliable"]
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
  print(format_table(summary, bicubic, args.metric,
                     scored_on=f"{data['dir']}'s valid split" if data else
                     "the held-out bundled photos"))
  print(f"wall time {(time.time() - t0) / 60:.1f} min")
  if args.json:
    with open(args.json, "w") as f:
      if settings["budget"].get("latency_table"):
        # Written relative to the repository: the JSON is shared, the checkout's place is not.
        settings["budget"] = dict(settings["budget"], latency_table=os.path.relpath(
            settings["budget"]["latency_table"], REPO))
      json.dump({"settings": settings, "summary": summary, "runs": rows,
                 **({"missing_runs": missing} if missing else {})}, f, indent=1)
  return summary


if __name__ == "__main__":
  main()

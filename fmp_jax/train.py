"""The training driver: search -> finalise -> finetune -> evaluate -> export.

`train_and_evaluate(config, workdir)` runs every stage that is not yet done in
`workdir` and can be called from a notebook as well as from `fmp_jax.main`.
Restarting with the same workdir resumes: the search and the fine-tuning
continue from their latest Orbax checkpoint (batches are a pure function of
(seed, step), so the data position is the step), finished stages are skipped.

Workdir layout::

    config.json             the config of the run (fmp_jax.workdir: a rerun must agree
                            with it in every field that changes the result)
    stages.json             stages completed so far
    checkpoints/{search,finetune}/<step>/   Orbax checkpoints (+ .manifest/ checksums;
                            damaged steps are moved to checkpoints/unreadable/)
    pruned/model.msgpack    the sliced model right after the search
    finetuned/model.msgpack the fine-tuned model
    metrics.jsonl           scalars of every logged step (tensorboard/ too with TensorFlow)
    plots/{loss,remaining}.png
    report.json, report.txt the final report (report.json also has each stage's seconds)
    export/model.msgpack    the deliverable: fmp_jax.load() + fmp_jax.apply()
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from typing import Optional

import jax
from absl import logging

from fmp_jax import export, finetuning, loop, sharding
from fmp_jax import workdir as workdir_lib
from fmp_jax.arch import Arch
from fmp_jax.checkpoint import StageCheckpoints, abstract_like
from fmp_jax.config_base import base_config
from fmp_jax.metric_logging import MetricWriter, Progress
from fmp_jax.models import bake_masks, init_params, precision_dtype
from fmp_jax.plots import plot_family, plot_run
from fmp_jax.pruning import api, complexity, cost as cost_lib, search
from fmp_jax.pruning.latency import device_info
from fmp_jax.pruning.budget import Budget
from fmp_jax.pruning.settings import SearchSettings
from fmp_jax.pruning.state import init_state

STAGES = ("search", "finetune", "evaluate", "export")


# --- small helpers -------------------------------------------------------------------

def _is_main() -> bool:
  return jax.process_index() == 0


def _say(msg: str) -> None:
  if _is_main():
    print(msg, flush=True)
  logging.info(msg)


class _StageBook:
  """stages.json: which stages are done (written atomically by process 0)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "stages.json")
    self.done: dict = {}
    if os.path.exists(self.path):
      with open(self.path) as f:
        self.done = json.load(f)

  def forget(self, *stages: str) -> None:
    for stage in stages:
      self.done.pop(stage, None)

  def mark(self, stage: str, **info) -> None:
    self.done[stage] = dict(info, finished=time.time())
    if _is_main():
      tmp = self.path + ".tmp"
      with open(tmp, "w") as f:
        json.dump(self.done, f, indent=1)
      os.replace(tmp, self.path)


@dataclasses.dataclass(frozen=True)
class Member:
  """One model of the run: the budget's own (the paths as without a family), or a member of
  ``search.family`` (under ``<kind>/keep_0.30/``; the deepest also at export/model.msgpack)."""
  index: int
  budget: Budget
  name: str            # "" without a family
  finetune_steps: int

  def dir(self, kind: str) -> str:
    return os.path.join(kind, self.name) if self.name else kind

  def path(self, kind: str, file: str = "model.msgpack") -> str:
    return os.path.join(self.dir(kind), file)

  def stage(self, stage: str) -> str:
    return f"{stage}/{self.name}" if self.name else stage

  @property
  def label(self) -> str:
    return f" {self.name}" if self.name else ""


def member_name(keep: float) -> str:
  return f"keep_{keep:.2f}" if round(keep, 2) == keep else f"keep_{keep:g}"


def members_of(config, budget: Budget) -> list[Member]:
  """The run's models: search.family's members (each with its fine-tune steps), or the budget."""
  family = tuple(config.search.family)
  budgets = search.family_budgets(budget, family)
  steps = tuple(config.finetune.member_steps)
  if steps and len(steps) != len(budgets):
    raise ValueError(f"finetune.member_steps={steps} needs one entry per member of "
                     f"search.family={family}.")
  return [Member(i, b, member_name(b.keep) if family else "",
                 int(steps[i]) if steps else int(config.finetune.steps))
          for i, b in enumerate(budgets)]


# --- input ---------------------------------------------------------------------------

def make_sampler(config, arch: Arch, images, batch_size: int, patch_size: int, seed: int):
  """Training patches for this host: a PatchSampler over `images` = (hr, lr or None, names)."""
  from fmp_jax import data as data_lib
  hr, lr, names = images
  return data_lib.PatchSampler(
      hr, arch.scale, patch_size, batch_size, seed=seed, lr_images=lr,
      rgb_range=arch.rgb_range, process_index=jax.process_index(), names=names,
      process_count=jax.process_count(), skip_small=bool(config.data.skip_small))


def _batches(sampler, mesh, start_step: int):
  """Global batches for steps start_step+1, start_step+2, ... (batch k feeds step k+1)."""
  for k in itertools.count(start_step):
    yield sharding.global_batch(mesh, *sampler.batch(k))


# --- stage: search -----------------------------------------------------------------

def run_search_stage(config, workdir: str, arch: Arch, budget: Budget, mesh, writer,
                     images, members: list, book) -> dict:
  settings = SearchSettings.from_config(config.search)
  rep = sharding.replicated(mesh)
  sampler = make_sampler(config, arch, images, config.search.batch_size,
                         config.search.patch_size, seed=config.seed)

  # Host-side init (numpy RNG: identical on every host), then placed replicated.
  params = init_params(arch, seed=config.seed)
  state = sharding.put_replicated(init_state(arch, params, settings, seed=config.seed), mesh)
  ckpts = StageCheckpoints(os.path.join(workdir, "checkpoints", "search"), warn=_say)
  restored = ckpts.restore_latest(abstract_like(state, rep))
  converged = False
  at = 0
  if restored is not None:
    at, state, record = restored
    converged = bool(record.get("converged"))
    _say(f"[search] resuming from checkpoint at step {at}" + (" (converged)" if converged else ""))
  # Family members taken at or before the restored step are done; later ones (and their
  # holds) are taken again, as the uninterrupted search did.
  first = 0
  while (first < len(members) - 1 and members[first].stage("search") in book.done
         and book.done[members[first].stage("search")]["steps"] <= at):
    first += 1

  cost = cost_lib.for_budget(arch, budget)
  step_fn = jax.jit(search.make_step(arch, budget, settings, mesh, str(config.precision), cost),
                    in_shardings=(rep, rep, sharding.batch_sharded(mesh),
                                  sharding.batch_sharded(mesh)),
                    out_shardings=(rep, rep), donate_argnums=0)
  max_steps = int(config.search.max_steps)
  start = int(jax.device_get(state.step))
  # The pace's schedule reaches the budget at pace_steps: progress is toward that.
  pace_steps = int(config.search.pace_steps)
  progress = (Progress("search", pace_steps, start, expected=True) if 0 < pace_steps < max_steps
              else Progress("search", max_steps, start))
  target = budget.targets()

  def on_step(step, metrics, new_state):
    if step % config.search.log_every == 0 or step == start + 1:
      writer.write("search", step, metrics)
      now = {"total": metrics["remaining"], "channel": metrics["channel_remaining"],
             "weight": metrics["weight_remaining"]}
      detail = " ".join(f"{n} {100 * now[n]:.1f}% (budget {100 * t:.1f}%)" for n, t in target.items())
      if "target_now" in metrics:
        detail += f", scheduled now {100 * metrics['target_now']:.1f}%"
      _say(progress.line(step, {"loss": metrics["l1"]},
                         f" | params {100 * metrics['params_ratio']:.1f}% flops "
                         f"{100 * metrics['flops_ratio']:.1f}% | {budget.metric} {detail}"))
    if step % config.search.checkpoint_every == 0:
      ckpts.save(step, new_state, {"converged": False})

  def on_member(k, member_budget, step, new_state):
    m = members[k]
    if not m.name or m.index == len(members) - 1:
      return                    # the budget's own model is finalised below, as always
    result = api.finalize(arch, search.SearchOutcome(jax.device_get(new_state), step, True, []),
                          member_budget, settings, seed=config.seed)
    _say(f"[search] member {m.name} at step {step}: {100 * result.report['flops_ratio']:.2f} % "
         f"FLOPs, {100 * result.report['params_ratio']:.2f} % params remain")
    write_pruned(workdir, m, result, step)
    book.mark(m.stage("search"), steps=step, report=result.report)

  if not converged:
    try:
      outcome = search.run_search(arch, state, budget, settings, _batches(sampler, mesh, start),
                                  max_steps, step_fn=step_fn, on_step=on_step, cost=cost,
                                  members=[m.budget for m in members], first_member=first,
                                  on_member=on_member)
    except FloatingPointError as e:
      last = ckpts.steps()
      kept = f"the last good checkpoint (step {last[-1]})" if last else "no checkpoint yet"
      raise FloatingPointError(
          f"{e} Stopped; {kept} is kept in {ckpts.directory}. A changed search setting starts "
          "a new run: rerun with it and --restart (moves this run aside), or use another "
          "--workdir.") from e
    writer.write("search", outcome.steps, outcome.history[-1] if outcome.history else {})
    ckpts.save(outcome.steps, outcome.state, {"converged": True})
    state = outcome.state
  ckpts.close()
  steps = int(jax.device_get(state.step))
  outcome = search.SearchOutcome(state=jax.device_get(state), steps=steps, converged=True,
                                 history=[])
  result = api.finalize(arch, outcome, budget, settings, seed=config.seed)
  _say(f"[search] converged at step {steps}: {100 * result.report['params_ratio']:.2f} % params, "
       f"{100 * result.report['flops_ratio']:.2f} % FLOPs remain; widths {dict(result.arch.widths)}")
  write_pruned(workdir, members[-1], result, steps)
  return {"steps": steps, "report": result.report}


def _run_plan(report: dict) -> dict:
  """{"run_widths": ...} where a latency table chose the widths the model runs at, else {}:
  `inference.from_export` runs an export at its own plan."""
  return {"run_widths": report["run_widths"]} if report.get("run_widths") else {}


def write_pruned(workdir: str, member: Member, result, steps: int) -> None:
  """The sliced model of `member` right after the search (every process reads it next)."""
  if _is_main():
    export.save(os.path.join(workdir, member.path("pruned")), result.params, result.arch,
                result.masks, meta={"stage": "search", "search_steps": steps,
                                    "report": result.report, **_run_plan(result.report)})
  sharding.sync_processes(f"pruned_export_written{member.label}")


# --- stage: finetune ----------------------------------------------------------------

def run_finetune_stage(config, workdir: str, mesh, writer, images, member: Member) -> dict:
  pruned = export.load(os.path.join(workdir, member.path("pruned")))
  arch = pruned.arch
  cfg = config.finetune
  rep = sharding.replicated(mesh)
  sampler = make_sampler(config, arch, images, cfg.batch_size, cfg.patch_size,
                         seed=config.seed + 1)
  tx = finetuning.make_optimizer(cfg.lr, cfg.lr_halve_every)
  params = sharding.put_replicated(pruned.params, mesh)
  masks = sharding.put_replicated(pruned.masks, mesh)
  # Optimiser state created directly replicated, from the abstract shapes.
  init = jax.jit(lambda p: finetuning.init_state(p, tx), out_shardings=rep)
  state = init(params)
  ckpts = StageCheckpoints(os.path.join(workdir, member.dir(os.path.join("checkpoints", "finetune"))),
                           warn=_say)
  restored = ckpts.restore_latest(abstract_like(state, rep))
  if restored is not None:
    step, state, _ = restored
    _say(f"[finetune{member.label}] resuming from checkpoint at step {step}")
  step_fn = jax.jit(finetuning.make_step(arch, tx, int(cfg.reduction_shards), mesh,
                                        str(config.precision)),
                    in_shardings=(rep, rep, sharding.batch_sharded(mesh),
                                  sharding.batch_sharded(mesh)),
                    out_shardings=(rep, rep), donate_argnums=0)
  start = int(jax.device_get(state.step))
  total = member.finetune_steps
  progress = Progress(f"finetune{member.label}", total, start)

  def on_step(step, metrics, new_state):
    if step % cfg.log_every == 0 or step == total:
      writer.write(member.stage("finetune"), step, metrics)
      _say(progress.line(step, metrics))
    if step % cfg.checkpoint_every == 0 or step == total:
      ckpts.save(step, new_state)

  try:
    state, _, _ = loop.run_steps(step_fn, state, _batches(sampler, mesh, start), start + 1, total,
                                 args=(masks,), what="finetune", hint="lower finetune.lr.",
                                 on_step=on_step)
  except FloatingPointError as e:
    raise FloatingPointError(
        f"{e} Stopped; the last good checkpoint is kept in {ckpts.directory}. A lower "
        "finetune.lr starts a new run: rerun with it and --restart (moves this run aside), or "
        "use another --workdir.") from e
  ckpts.close()
  params = bake_masks(jax.device_get(state.params), jax.device_get(masks))
  if _is_main():
    export.save(os.path.join(workdir, member.path("finetuned")), params, arch, pruned.masks,
                meta=dict(pruned.meta, stage="finetune", finetune_steps=total))
  sharding.sync_processes(f"finetuned_export_written{member.label}")
  return {"steps": total}


# --- stage: evaluate ----------------------------------------------------------------

def eval_settings(config) -> dict:
  """What decides the evaluate stage's numbers besides the model (a change re-scores)."""
  return {"eval_sets": list(config.data.eval_sets),
          "eval_max_images": int(config.data.eval_max_images),
          "data_dir": str(config.data.data_dir)}


def run_evaluate_stage(config, workdir: str, member: Member) -> dict:
  from fmp_jax import data as data_lib
  from fmp_jax import evaluation
  model = export.load(os.path.join(workdir, member.path("finetuned")))
  results = {}
  for name in config.data.eval_sets:
    pairs = data_lib.eval_pairs(config.data, name, model.arch.scale)
    if config.data.eval_max_images:
      pairs = pairs[:int(config.data.eval_max_images)]
    results[name] = evaluation.evaluate_model(model.params, model.arch, pairs, masks=model.masks)
    s = results[name]["summary"]
    _say(f"[evaluate{member.label}] {name}: {s['psnr']:.2f} dB / {s['ssim']:.4f} "
         f"(bicubic {s['bicubic_psnr']:.2f} dB / {s['bicubic_ssim']:.4f}), {s['images']} images")
  if _is_main():
    os.makedirs(os.path.join(workdir, member.dir("eval")), exist_ok=True)
    with open(os.path.join(workdir, member.path("eval", "results.json")), "w") as f:
      json.dump(results, f, indent=1)
  return results


# --- report --------------------------------------------------------------------------

def build_report(arch: Arch, budget: Budget, search_info: dict, finetune_steps: int,
                 eval_results: dict) -> dict:
  """The run's outcome; everything in it is deterministic (timings are kept apart)."""
  r = search_info["report"]
  return {
      "model": f"{arch.model.upper()}-{arch.blocks}-{arch.channels} x{arch.scale}",
      "budget": dataclasses.asdict(budget),
      "dense": {"params": r["dense_params"], "flops": r["dense_flops"]},
      "pruned": {"params": r["params"], "flops": r["flops"], "widths": r["widths"],
                 **({"run_widths": r["run_widths"]} if "run_widths" in r else {})},
      "params_ratio": r["params_ratio"], "flops_ratio": r["flops_ratio"],
      "split": {m: {"channel_pruned_ratio": r[f"{m}_channel_pruned_ratio"],
                    "weight_pruned_ratio": r[f"{m}_weight_pruned_ratio"]}
                for m in ("params", "flops")},
      "executed_macs": r["executed_macs"], "executed_macs_ratio": r["executed_macs_ratio"],
      **({"latency_predicted": {"ratio": r["latency_ratio"], "seconds": r["latency_seconds"],
                                "dense_seconds": r["dense_latency_seconds"],
                                "lr_hw": r["latency_lr_hw"]}} if "latency_ratio" in r else {}),
      "search_steps": search_info["steps"], "finetune_steps": int(finetune_steps),
      "eval": {name: res["summary"] for name, res in eval_results.items()},
  }


def measure_latency(config, workdir: str, member: Member) -> dict:
  """Seconds of one forward pass of the fine-tuned model and of its dense backbone, as
  `Upscaler` runs them here (a timing: kept out of the export, recorded once per run)."""
  from fmp_jax import profiling
  model = export.load(os.path.join(workdir, member.path("finetuned")))
  lr_hw = complexity.lr_size_for(model.arch.scale)
  repeats = int(config.report.latency_repeats)
  pruned = profiling.measure_model(bake_masks(model.params, model.masks), model.arch, lr_hw,
                                   repeats, run_widths=model.meta.get("run_widths"))
  dense_arch = model.arch.dense()
  dense = profiling.measure_model(init_params(dense_arch), dense_arch, lr_hw, repeats)
  return {"seconds": pruned, "dense_seconds": dense, "ratio": pruned / dense,
          "lr_hw": list(lr_hw), "repeats": repeats,
          "device": device_info()["kind"]}


def format_family(rows: list[dict]) -> list[str]:
  """One line per family member: its size, cost and scores."""
  sets = list(rows[0]["eval"])
  lat = lambda r: (r.get("latency_measured") or r.get("latency_predicted") or {}).get("ratio")
  head = (f"{'member':<12}{'params':>9}{'FLOPs':>8}{'exec.':>8}{'latency':>9}{'by ch.':>8}"
          f"{'by wt.':>8}{'steps':>7}" + "".join(f"{s[:10]:>12}" for s in sets)
          + f"{'bicubic':>9}")
  lines = ["family (one search; % of the dense model, PSNR in dB):", head]
  for r in rows:
    split = r["split"]["flops"]
    la = lat(r)
    lines.append(f"{r.get('member', ''):<12}{100 * r['params_ratio']:>8.1f}%"
                 f"{100 * r['flops_ratio']:>7.1f}%{100 * r['executed_macs_ratio']:>7.1f}%"
                 f"{('-' if la is None else f'{100 * la:.1f}%'):>9}"
                 f"{100 * split['channel_pruned_ratio']:>7.1f}%"
                 f"{100 * split['weight_pruned_ratio']:>7.1f}%{r['search_steps']:>7}"
                 + "".join(f"{r['eval'][s]['psnr']:>12.2f}" for s in sets)
                 + f"{r['eval'][sets[0]]['bicubic_psnr']:>9.2f}")
  return lines


def format_report(report: dict) -> str:
  d, p = report["dense"], report["pruned"]
  lines = [f"FMP result: {report['model']}, budget keep {100 * report['budget']['keep']:.2f} % of "
           f"{report['budget']['metric']} (criterion {report['budget']['criterion']})", "",
           f"{'':<10}{'dense':>16}{'pruned':>16}{'remaining':>11}",
           f"{'params':<10}{d['params']:>16,}{p['params']:>16,}{100 * report['params_ratio']:>10.2f}%",
           f"{'FLOPs':<10}{d['flops'] / 1e9:>15.3f}G{p['flops'] / 1e9:>15.3f}G"
           f"{100 * report['flops_ratio']:>10.2f}%",
           f"{'exec. MACs':<10}{d['flops'] / 1e9:>15.3f}G{report['executed_macs'] / 1e9:>15.3f}G"
           f"{100 * report['executed_macs_ratio']:>10.2f}%"]
  for key, label in (("latency_predicted", "latency (table)"), ("latency_measured", "latency")):
    t = report.get(key)
    if t:
      lines.append(f"{label:<10}{1e3 * t['dense_seconds']:>14.1f}ms{1e3 * t['seconds']:>14.1f}ms"
                   f"{100 * t['ratio']:>10.2f}%   at LR {t['lr_hw'][0]}x{t['lr_hw'][1]}")
  lines += ["FLOPs count unmasked weights; executed MACs are every weight of the kept widths "
            "(weight zeros save no time).", "",
           f"{'removed by':<12}{'channels':>10}{'weights':>10}"]
  for m in ("params", "flops"):
    s = report["split"][m]
    lines.append(f"{m:<12}{100 * s['channel_pruned_ratio']:>9.2f}%{100 * s['weight_pruned_ratio']:>9.2f}%")
  lines += ["", f"search steps {report['search_steps']}, finetune steps {report['finetune_steps']}",
            "", f"{'eval set':<12}{'images':>7}{'PSNR (dB)':>11}{'SSIM':>8}"
            f"{'bicubic PSNR':>14}{'SSIM':>8}"]
  for name, s in report["eval"].items():
    lines.append(f"{name:<12}{s['images']:>7}{s['psnr']:>11.2f}{s['ssim']:>8.4f}"
                 f"{s['bicubic_psnr']:>14.2f}{s['bicubic_ssim']:>8.4f}")
  if report.get("family"):
    lines += [""] + format_family(report["family"])
  return "\n".join(lines)


# --- the driver ----------------------------------------------------------------------

def prepare_workdir(config, workdir: str, restart: bool = False):
  """Checks everything that can be checked before training, then makes `workdir` ready.

  Nothing is written until every check has passed: a refused run leaves an
  existing workdir untouched and creates none. Returns (arch, budget, mesh,
  book, images); images is None when no training stage is left.
  """
  workdir_lib.check_usable(workdir)
  arch = Arch.from_config(config.model)
  budget = Budget.from_config(config.budget)
  search.check_budget_needs_pruning(arch, budget)
  # A latency table is read (device and model checked) and the budget's floor judged now.
  search.check_budget_reachable(arch, budget, SearchSettings.from_config(config.search),
                                cost_lib.for_budget(arch, budget))
  precision_dtype(config.precision)
  from fmp_jax import data as data_lib
  data_lib.check_sources(config.data, arch.scale)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.search.batch_size, mesh, "search.batch_size")
  sharding.check_batch_size(config.finetune.batch_size, mesh, "finetune.batch_size")
  for stage in ("search", "finetune"):
    sharding.check_reduction_shards(config[stage].reduction_shards, config[stage].batch_size,
                                    mesh, stage)
  neutral = [] if restart else workdir_lib.check_config(workdir, config,
                                                          workdir_lib.config_dict(base_config()))
  book = _StageBook(workdir) if not restart else None
  images = None
  if book is None or not {"search", "finetune"} <= set(book.done):
    images = data_lib.training_images(config.data, arch.scale)   # fails here, not mid-run
  if restart and _is_main():
    moved = workdir_lib.move_aside(workdir)
    if moved:
      _say(f"--restart: moved the previous run to {moved}")
  sharding.sync_processes("workdir_moved")
  if _is_main():
    os.makedirs(workdir, exist_ok=True)
    if neutral:
      _say("note: continuing this workdir with changes that do not alter the result: "
           + workdir_lib.describe(neutral))
    workdir_lib.write_record(workdir, config)
  sharding.sync_processes("workdir_ready")
  if book is None:
    book = _StageBook(workdir)
  return arch, budget, mesh, book, images


def run_member(config, workdir: str, arch: Arch, m: Member, members: list, book, mesh, writer,
               images) -> dict:
  """Fine-tunes, scores, times and exports one model of the run; returns its report row."""
  search_info = book.done[m.stage("search")] if m.name and m.index < len(members) - 1 \
      else book.done["search"]
  if m.stage("finetune") not in book.done:
    t0 = time.time()
    info = run_finetune_stage(config, workdir, mesh, writer, images, m)
    book.mark(m.stage("finetune"), steps=info["steps"], seconds=time.time() - t0)
  finetune_steps = book.done[m.stage("finetune")].get("steps", m.finetune_steps)

  recorded = book.done.get(m.stage("evaluate"), {}).get("settings")
  if m.stage("evaluate") in book.done and recorded is not None and recorded != eval_settings(config):
    _say(f"[evaluate{m.label}] the eval settings changed; scoring again.")
    book.forget(m.stage("evaluate"), m.stage("export"))
  if m.stage("evaluate") not in book.done:
    t0 = time.time()
    results = run_evaluate_stage(config, workdir, m)
    book.mark(m.stage("evaluate"), results={k: v["summary"] for k, v in results.items()},
              settings=eval_settings(config), seconds=time.time() - t0)
  eval_results = {k: {"summary": v} for k, v in book.done[m.stage("evaluate")]["results"].items()}

  if config.report.measure_latency and m.stage("latency") not in book.done:
    measured = measure_latency(config, workdir, m) if _is_main() else {}
    book.mark(m.stage("latency"), measured=measured)
    if measured:
      _say(f"[latency{m.label}] {1e3 * measured['seconds']:.1f} ms vs dense "
           f"{1e3 * measured['dense_seconds']:.1f} ms ({100 * measured['ratio']:.1f} %) per "
           f"{measured['lr_hw'][0]}x{measured['lr_hw'][1]} LR image")

  row = build_report(arch, m.budget, search_info, finetune_steps, eval_results)
  if _is_main():
    tuned = export.load(os.path.join(workdir, m.path("finetuned")))
    meta = {"report": row, "config": workdir_lib.config_dict(config),
            **_run_plan(row["pruned"])}
    paths = [m.path("export")] + ([os.path.join("export", "model.msgpack")]
                                  if m.name and m.index == len(members) - 1 else [])
    for path in paths:
      export.save(os.path.join(workdir, path), tuned.params, tuned.arch, tuned.masks, meta=meta)
  book.mark(m.stage("export"))
  measured = book.done.get(m.stage("latency"), {}).get("measured")
  return dict(row, **({"latency_measured": measured} if measured else {}),
              **({"member": m.name} if m.name else {}))


def train_and_evaluate(config, workdir: str, restart: bool = False,
                       distributed: Optional[dict] = None) -> dict:
  """Runs (or resumes) every stage in `workdir` and returns the final report dict.

  Raises WorkdirConflictError when `workdir` holds a run of a config that
  differs in a field that changes the result; `restart=True` moves that run
  to ``<workdir>.replaced-<time>`` and starts over. `distributed`: keyword
  arguments of `sharding.maybe_initialize_distributed` (coordinator address,
  process count and id, timeout); used when config.distributed is True or
  the environment names a coordinator.
  """
  workdir = os.path.abspath(workdir)
  sharding.maybe_initialize_distributed(bool(config.distributed), **(distributed or {}))
  arch, budget, mesh, book, images = prepare_workdir(config, workdir, restart)
  writer = MetricWriter(workdir)
  _say(f"fmp_jax: {arch.model.upper()}-{arch.blocks}-{arch.channels} x{arch.scale}, "
       f"{budget.describe()}; {jax.device_count()} {jax.default_backend()} device(s), "
       f"{jax.process_count()} host(s); workdir {workdir}")

  members = members_of(config, budget)

  # --- search + finalise (every family member on the way down)
  if "search" not in book.done:
    t0 = time.time()
    info = run_search_stage(config, workdir, arch, budget, mesh, writer, images, members, book)
    book.mark("search", steps=info["steps"], report=info["report"], seconds=time.time() - t0)

  # --- per model, in order (a user may stop after the members they need):
  # finetune, evaluate (again when the eval settings changed), latency, export
  rows = []
  for m in members:
    rows.append(run_member(config, workdir, arch, m, members, book, mesh, writer, images))
  report = dict(rows[-1], family=rows) if len(members) > 1 else rows[-1]

  if _is_main():
    seconds = {s: book.done[s].get("seconds") for s in book.done if "seconds" in book.done[s]}
    with open(os.path.join(workdir, "report.json"), "w") as f:
      json.dump(dict(report, stage_seconds=seconds), f, indent=1)
    text = format_report(report)
    with open(os.path.join(workdir, "report.txt"), "w") as f:
      f.write(text + "\n")
    writer.flush()
    plots = plot_run(workdir, budget.targets().get("total"), budget.metric)
    if len(members) > 1:
      plots += plot_family(workdir, rows, str(config.report.baselines))
    print("\n" + text + "\n", flush=True)
    print(f"export: {os.path.join(workdir, 'export', 'model.msgpack')}; plots: "
          f"{', '.join(plots)}", flush=True)
  return report

"""The training driver: search -> finalise -> finetune -> evaluate -> export.

`train_and_evaluate(config, workdir)` runs every stage that is not yet done in
`workdir` and can be called from a notebook as well as from `fmp_jax.main`.
Restarting with the same workdir resumes: the search and the fine-tuning
continue from their latest Orbax checkpoint (batches are a pure function of
(seed, step), so the data position is the step), finished stages are skipped.
SIGTERM or SIGINT ends a stage after its current step with a checkpoint
(`fmp_jax.preemption`); checkpoints are also written every
``checkpoint_every`` steps and every ``checkpoint_every_minutes``.

Workdir layout::

    config.json             the config of the run (fmp_jax.workdir: a rerun must agree
                            with it in every field that changes the result)
    stages.json             stages completed so far (fmp_jax.members.StageBook)
    checkpoints/{search,finetune}/<step>/   Orbax checkpoints (+ .manifest/ checksums;
                            damaged steps are moved to checkpoints/unreadable/)
    pruned/model.msgpack    the sliced model right after the search
    finetuned/model.msgpack the fine-tuned model
    metrics.jsonl           scalars of every logged step (tensorboard/ too with TensorFlow)
    plots/{loss,remaining}.png
    report.json, report.txt the final report (fmp_jax.report; report.json also has each
                            stage's seconds)
    export/model.msgpack    the deliverable: fmp_jax.load() + fmp_jax.apply()
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional

import jax
from absl import logging

from fmp_jax import export, finetuning, loop, report as report_lib, sharding
from fmp_jax import workdir as workdir_lib
from fmp_jax.arch import Arch
from fmp_jax.members import Member, StageBook, is_main, members_of
from fmp_jax.metric_logging import MetricWriter, Progress
from fmp_jax.models import bake_masks, init_params
from fmp_jax.preemption import Guard
from fmp_jax.preflight import prepare_workdir
from fmp_jax.pruning import api, search
from fmp_jax.pruning.budget import Budget
from fmp_jax.pruning.settings import SearchSettings
from fmp_jax.pruning.state import init_state
from fmp_jax.stage import StageLoop, batches, make_sampler


def _say(msg: str) -> None:
  if is_main():
    print(msg, flush=True)
  logging.info(msg)


class Run:
  """One run of the driver in its workdir: the checked config and its stages."""

  def __init__(self, config, workdir: str, arch: Arch, budget: Budget, mesh, book: StageBook,
               images, guard: Guard):
    self.config, self.workdir, self.arch, self.budget = config, workdir, arch, budget
    self.mesh, self.book, self.images, self.guard = mesh, book, images, guard
    self.writer = MetricWriter(workdir)
    self.members = members_of(config, budget)
    self.settings = SearchSettings.from_config(config.search)

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  def _jit(self, step):
    rep, batch = sharding.replicated(self.mesh), sharding.batch_sharded(self.mesh)
    return jax.jit(step, in_shardings=(rep, rep, batch, batch), out_shardings=(rep, rep),
                   donate_argnums=0)

  def _save_model(self, member: Member, kind: str, result, meta: dict) -> None:
    if is_main():
      export.save(self.path(member.path(kind)), result.params, result.arch, result.masks,
                  meta=meta)
    sharding.sync_processes(f"{kind}_export_written{member.label}")

  # --- stage: search + finalise (every family member on the way down) ---------------

  def search(self) -> dict:
    config, arch, budget, members = self.config, self.arch, self.budget, self.members
    sampler = make_sampler(config, arch, self.images, config.search.batch_size,
                           config.search.patch_size, seed=config.seed)
    # Host-side init (numpy RNG: identical on every host), then placed replicated.
    state = sharding.put_replicated(
        init_state(arch, init_params(arch, seed=config.seed), self.settings, seed=config.seed),
        self.mesh)
    stage = StageLoop("search", self.path("checkpoints", "search"), config.search, self.guard,
                      _say)
    state, at, record = stage.resume(state, self.mesh)
    # Members taken at or before the restored step are done; later ones are taken again.
    first = 0
    while (first < len(members) - 1 and members[first].stage("search") in self.book.done
           and self.book.done[members[first].stage("search")]["steps"] <= at):
      first += 1
    step_fn = self._jit(search.make_step(arch, budget, self.settings, self.mesh,
                                         str(config.precision)))
    start, max_steps = int(jax.device_get(state.step)), int(config.search.max_steps)
    pace_steps = int(config.search.pace_steps)  # the schedule reaches the budget there
    progress = (Progress("search", pace_steps, start, expected=True)
                if 0 < pace_steps < max_steps else Progress("search", max_steps, start))

    def on_step(step, metrics, new_state):
      if stage.log(step, start + 1):
        self.writer.write("search", step, metrics)
        _say(progress.line(step, metrics, report_lib.search_detail(metrics, budget)))
      return stage.after_step(step, new_state, record={"converged": False})

    def on_member(k, member_budget, step, new_state):
      m = members[k]
      if not m.name or m.index == len(members) - 1:
        return                    # the budget's own model is finalised below, as always
      result = api.finalize(arch, search.SearchOutcome(jax.device_get(new_state), step, True,
                                                       []), member_budget, self.settings,
                            seed=config.seed)
      _say(f"[search] member {m.name} at step {step}: {100 * result.report['flops_ratio']:.2f} "
           f"% FLOPs, {100 * result.report['params_ratio']:.2f} % params remain")
      self.write_pruned(m, result, step)
      self.book.mark(m.stage("search"), steps=step, report=result.report)

    if not record.get("converged"):
      try:
        outcome = search.run_search(
            arch, state, budget, self.settings, batches(sampler, self.mesh, start), max_steps,
            step_fn=step_fn, on_step=on_step, members=[m.budget for m in members],
            first_member=first, on_member=on_member, say=_say)
      except FloatingPointError as e:
        raise stage.failed(e, "A changed search setting") from e
      state = outcome.state
      if outcome.converged:
        self.writer.write("search", outcome.steps, outcome.history[-1] if outcome.history else {})
        stage.save(outcome.steps, state, {"converged": True})
    stage.finish()
    steps = int(jax.device_get(state.step))
    result = api.finalize(arch, search.SearchOutcome(jax.device_get(state), steps, True, []),
                          budget, self.settings, seed=config.seed)
    _say(f"[search] converged at step {steps}: {100 * result.report['params_ratio']:.2f} % "
         f"params, {100 * result.report['flops_ratio']:.2f} % FLOPs remain; widths "
         f"{dict(result.arch.widths)}")
    self.write_pruned(members[-1], result, steps)
    return {"steps": steps, "report": result.report}

  def write_pruned(self, member: Member, result, steps: int) -> None:
    """The sliced model of `member` right after the search (every process reads it next)."""
    self._save_model(member, "pruned", result, {
        "stage": "search", "search_steps": steps, "report": result.report,
        **report_lib.run_plan(result.report)})

  # --- stage: finetune --------------------------------------------------------------

  def finetune(self, member: Member) -> dict:
    config, cfg = self.config, self.config.finetune
    pruned = export.load(self.path(member.path("pruned")))
    rep = sharding.replicated(self.mesh)
    sampler = make_sampler(config, pruned.arch, self.images, cfg.batch_size, cfg.patch_size,
                           seed=config.seed + 1)
    tx = finetuning.make_optimizer(cfg.lr, cfg.lr_halve_every)
    masks = sharding.put_replicated(pruned.masks, self.mesh)
    # Optimiser state created directly replicated, from the abstract shapes.
    start_params = finetuning.starting_params(pruned.params, pruned.arch, pruned.masks,
                                              str(cfg.init), seed=config.seed + 2)
    state = jax.jit(lambda p: finetuning.init_state(p, tx), out_shardings=rep)(
        sharding.put_replicated(start_params, self.mesh))
    stage = StageLoop(f"finetune{member.label}",
                      self.path(member.dir(os.path.join("checkpoints", "finetune"))), cfg,
                      self.guard, _say)
    state, _, _ = stage.resume(state, self.mesh)
    step_fn = self._jit(finetuning.make_step(pruned.arch, tx, int(cfg.reduction_shards),
                                             self.mesh, str(config.precision)))
    start, total = int(jax.device_get(state.step)), member.finetune_steps
    progress = Progress(f"finetune{member.label}", total, start)

    def on_step(step, metrics, new_state):
      if stage.log(step, start + 1) or step == total:
        self.writer.write(member.stage("finetune"), step, metrics)
        _say(progress.line(step, metrics))
      return stage.after_step(step, new_state, last=total)

    try:
      state, _, _ = loop.run_steps(step_fn, state, batches(sampler, self.mesh, start),
                                   start + 1, total, args=(masks,), what="finetune",
                                   hint="lower finetune.lr.", on_step=on_step, say=_say)
    except FloatingPointError as e:
      raise stage.failed(e, "A lower finetune.lr") from e
    stage.finish()
    pruned = dataclasses.replace(pruned, params=bake_masks(jax.device_get(state.params),
                                                           jax.device_get(masks)))
    self._save_model(member, "finetuned", pruned,
                     dict(pruned.meta, stage="finetune", finetune_steps=total))
    return {"steps": total}

  # --- stages: evaluate, latency, export (per model) --------------------------------

  def evaluate(self, member: Member) -> dict:
    from fmp_jax import evaluation
    model = export.load(self.path(member.path("finetuned")))

    def said(name, s):
      _say(f"[evaluate{member.label}] {name}: {s['psnr']:.2f} dB / {s['ssim']:.4f} (bicubic "
           f"{s['bicubic_psnr']:.2f} dB / {s['bicubic_ssim']:.4f}), {s['images']} images")

    results = evaluation.evaluate_sets(model.params, model.arch, model.masks, self.config.data,
                                       said)
    if is_main():
      os.makedirs(self.path(member.dir("eval")), exist_ok=True)
      with open(self.path(member.path("eval", "results.json")), "w") as f:
        json.dump(results, f, indent=1)
    return results

  def _once(self, stage: str, work) -> dict:
    """Runs work() -> info unless `stage` is done, then marks it with its seconds."""
    if stage not in self.book.done:
      t0 = time.time()
      info = work()
      self.book.mark(stage, **info, seconds=time.time() - t0)
    return self.book.done[stage]

  def member(self, m: Member) -> dict:
    """Fine-tunes, scores, times and exports one model of the run; returns its report row."""
    book, members = self.book, self.members
    search_info = (book.done[m.stage("search")] if m.name and m.index < len(members) - 1
                   else book.done["search"])
    tuned = self._once(m.stage("finetune"), lambda: self.finetune(m))
    settings = report_lib.eval_settings(self.config)
    recorded = book.done.get(m.stage("evaluate"), {}).get("settings")
    if recorded is not None and recorded != settings:
      _say(f"[evaluate{m.label}] the eval settings changed; scoring again.")
      book.forget(m.stage("evaluate"), m.stage("export"))
    scored = self._once(m.stage("evaluate"), lambda: {
        "results": {k: v["summary"] for k, v in self.evaluate(m).items()},
        "settings": settings})
    if self.config.report.measure_latency and m.stage("latency") not in book.done:
      measured = (report_lib.measure_latency(export.load(self.path(m.path("finetuned"))),
                                             int(self.config.report.latency_repeats))
                  if is_main() else {})
      book.mark(m.stage("latency"), measured=measured)
      if measured:
        _say(f"[latency{m.label}] {1e3 * measured['seconds']:.1f} ms vs dense "
             f"{1e3 * measured['dense_seconds']:.1f} ms per {measured['lr_hw'][0]}x"
             f"{measured['lr_hw'][1]} LR image: {report_lib.format_latency(measured)}")
    row = report_lib.build_report(self.arch, m.budget, search_info,
                                  tuned.get("steps", m.finetune_steps),
                                  {k: {"summary": v} for k, v in scored["results"].items()})
    if is_main():
      model = export.load(self.path(m.path("finetuned")))
      meta = {"report": row, "config": workdir_lib.config_dict(self.config),
              **report_lib.run_plan(row["pruned"])}
      last = m.name and m.index == len(members) - 1   # the deepest member is also the export
      for path in [m.path("export")] + ([os.path.join("export", "model.msgpack")] if last else []):
        export.save(self.path(path), model.params, model.arch, model.masks, meta=meta)
    book.mark(m.stage("export"))
    measured = book.done.get(m.stage("latency"), {}).get("measured")
    return dict(row, **({"latency_measured": measured} if measured else {}),
                **({"member": m.name} if m.name else {}))

  def __call__(self) -> dict:
    self._once("search", self.search)
    # Per model, in order (a user may stop after the members they need).
    rows = [self.member(m) for m in self.members]
    final = dict(rows[-1], family=rows) if len(rows) > 1 else rows[-1]
    if is_main():
      self.writer.flush()
      report_lib.write(self.workdir, final, self.book, self.budget, rows,
                       str(self.config.report.baselines))
    return final


def train_and_evaluate(config, workdir: str, restart: bool = False,
                       distributed: Optional[dict] = None) -> dict:
  """Runs (or resumes) every stage in `workdir` and returns the final report dict.

  Raises WorkdirConflictError when `workdir` holds a run of a config that
  differs in a field that changes the result; `restart=True` moves that run
  to ``<workdir>.replaced-<time>`` and starts over; `Preempted` when SIGTERM or
  SIGINT stopped it (after a checkpoint). `distributed`: keyword arguments of
  `sharding.maybe_initialize_distributed` (coordinator address, process count
  and id, timeout); used when config.distributed is True or the environment
  names a coordinator.
  """
  workdir = os.path.abspath(workdir)
  sharding.maybe_initialize_distributed(bool(config.distributed), **(distributed or {}))
  arch, budget, mesh, book, images = prepare_workdir(config, workdir, restart, _say)
  _say(f"fmp_jax: {arch.model.upper()}-{arch.blocks}-{arch.channels} x{arch.scale}, "
       f"{budget.describe()}; {jax.device_count()} {jax.default_backend()} device(s), "
       f"{jax.process_count()} host(s); workdir {workdir}")
  with Guard() as guard:
    return Run(config, workdir, arch, budget, mesh, book, images, guard)()

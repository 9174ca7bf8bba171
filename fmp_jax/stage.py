"""One training stage's loop around its steps: resume, log, checkpoint, stop cleanly.

The search and the fine-tuning (`fmp_jax.train`) share it: each resumes from its latest
Orbax checkpoint (or starts), logs every ``log_every`` steps, checkpoints every
``checkpoint_every`` steps and every ``checkpoint_every_minutes``, and after a step in which
SIGTERM/SIGINT arrived (`fmp_jax.preemption.Guard`) checkpoints and raises `Preempted`.
"""

from __future__ import annotations

import itertools
from typing import Callable, Optional

import jax

from fmp_jax import sharding
from fmp_jax.arch import Arch
from fmp_jax.checkpoint import StageCheckpoints, abstract_like
from fmp_jax.preemption import Guard, Preempted


def make_sampler(config, arch: Arch, images, batch_size: int, patch_size: int, seed: int):
  """Training patches for this host: a PatchSampler over `images` = (hr, lr or None, names)."""
  from fmp_jax import data as data_lib
  hr, lr, names = images
  return data_lib.PatchSampler(
      hr, arch.scale, patch_size, batch_size, seed=seed, lr_images=lr,
      rgb_range=arch.rgb_range, process_index=jax.process_index(), names=names,
      process_count=jax.process_count(), skip_small=bool(config.data.skip_small))


def batches(sampler, mesh, start_step: int):
  """Global batches for steps start_step+1, start_step+2, ... (batch k feeds step k+1)."""
  for k in itertools.count(start_step):
    yield sharding.global_batch(mesh, *sampler.batch(k))


class StageLoop:
  """What every training stage does around its steps: resume from its latest checkpoint
  (or start), log every ``log_every`` steps, checkpoint every ``checkpoint_every`` steps and
  every ``checkpoint_every_minutes``, and stop after a step when the guard was signalled."""

  def __init__(self, name: str, directory: str, cfg, guard: Guard,
               say: Callable[[str], None] = print):
    self.name, self.cfg, self.guard, self.say = name, cfg, guard, say
    self.ckpts = StageCheckpoints(directory, warn=say)
    self.stopped_at: Optional[int] = None
    guard.checkpoint_every(cfg.checkpoint_every_minutes)

  def resume(self, state, mesh):
    """(state, step, record) of the latest checkpoint, or (state, 0, {})."""
    restored = self.ckpts.restore_latest(abstract_like(state, sharding.replicated(mesh)))
    if restored is None:
      return state, 0, {}
    step, state, record = restored
    self.say(f"[{self.name}] resuming from checkpoint at step {step}"
             + (" (converged)" if record.get("converged") else ""))
    return state, step, record

  def log(self, step: int, first: int) -> bool:
    return step % self.cfg.log_every == 0 or step == first

  def save(self, step: int, state, record: Optional[dict] = None) -> None:
    self.ckpts.save(step, state, record)
    self.guard.saved()

  def after_step(self, step: int, state, last: Optional[int] = None,
                 record: Optional[dict] = None) -> bool:
    """Checkpoints as due; True (stop the loop) when a signal asked to stop."""
    stop, due = self.guard.poll()
    if stop or due or step % self.cfg.checkpoint_every == 0 or step == last:
      self.save(step, state, record)
    if stop:
      self.stopped_at = step
    return stop

  def finish(self) -> None:
    """Closes the checkpoints (waits for the writes); raises Preempted if it was stopped."""
    self.ckpts.close()
    if self.stopped_at is not None:
      raise Preempted(self.name, self.stopped_at, self.guard.signal_name)

  def failed(self, error: FloatingPointError, change: str) -> FloatingPointError:
    last = self.ckpts.steps()
    kept = f"the last good checkpoint (step {last[-1]})" if last else "no checkpoint yet"
    return FloatingPointError(
        f"{error} Stopped; {kept} is kept in {self.ckpts.directory}. {change} starts a new run: "
        "rerun with it and --restart (moves this run aside), or use another --workdir.")

"""Stopping a long run cleanly: SIGTERM / SIGINT end it at a step boundary with a checkpoint.

A preemptible TPU VM, Slurm and Kubernetes send SIGTERM some time before they kill a job;
Ctrl-C sends SIGINT. While a `Guard` is active, either signal only raises a flag: the
stage's loop finishes the step it is in, writes a checkpoint, and raises `Preempted`, which
the driver turns into one line and the exit status `PREEMPTED_EXIT`. A second SIGINT
interrupts at once (the previous handler is back after the first).

The guard also says when a checkpoint is due by time (``checkpoint_every_minutes``), so a
run whose steps take many seconds does not wait hours for its first checkpoint.

On several hosts the signal may reach only some processes, and their clocks differ; every
decision must be the same on all of them or a collective hangs. `Guard.poll` therefore
agrees across processes every step (one small all-gather, `multihost_utils.process_allgather`):
a stop when any process was signalled, a timed checkpoint when process 0's clock says so.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Optional

import jax
import numpy as np

# EX_TEMPFAIL (sysexits.h): "temporary failure; the user is invited to retry". A wrapper
# (Slurm's --requeue, a Kubernetes restart policy, a shell loop) can rerun on this status.
PREEMPTED_EXIT = 75


class Preempted(Exception):
  """The run stopped on a signal after `step` of `stage`, with a checkpoint at that step."""

  def __init__(self, stage: str, step: int, signal_name: str):
    super().__init__(f"stopped by {signal_name} after {stage} step {step}; a checkpoint at that "
                     f"step is written. Rerun the same command to resume.")
    self.stage, self.step, self.signal_name = stage, step, signal_name


class Guard:
  """Catches SIGTERM and SIGINT while active (a context manager) and tells the loop when to
  stop and when a timed checkpoint is due; the same answers on every process."""

  def __init__(self, checkpoint_every_minutes: float = 0.0):
    self.signal_name: Optional[str] = None
    self._previous: dict = {}
    self.checkpoint_every(checkpoint_every_minutes)

  # --- signals ------------------------------------------------------------------------

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name
    if signum == signal.SIGINT:   # a second Ctrl-C interrupts at once
      signal.signal(signal.SIGINT, self._previous.get(signal.SIGINT, signal.default_int_handler))

  def __enter__(self) -> "Guard":
    if threading.current_thread() is threading.main_thread():   # signals reach only that one
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  # --- the loop's questions -------------------------------------------------------------

  def checkpoint_every(self, minutes: float) -> None:
    """Timed checkpoints every `minutes` (0: none), counted from now."""
    self.interval = 60.0 * float(minutes or 0.0)
    self.saved()

  def saved(self) -> None:
    """A checkpoint was written: the time until the next timed one starts now."""
    self._last_save = time.monotonic()

  def poll(self) -> tuple[bool, bool]:
    """(stop, checkpoint due by time), agreed by every process."""
    local = np.array([self.signal_name is not None,
                      self.interval > 0 and time.monotonic() - self._last_save >= self.interval],
                     np.int32)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      every = np.asarray(multihost_utils.process_allgather(local)).reshape(-1, 2)
      stop, due = bool(every[:, 0].any()), bool(every[0, 1])
      if stop and self.signal_name is None:
        self.signal_name = "a signal to another process"
      return stop, due
    return bool(local[0]), bool(local[1])

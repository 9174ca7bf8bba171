"""Scalars to a JSONL file always, to TensorBoard through clu when TensorFlow is installed,
and a human progress line on stdout.

clu's metric writers import TensorFlow and the `tensorboard` package; the core
install has neither, so the JSONL writer is the one that always works and the
one the plots read. `pip install -e '.[tensorboard]'` adds both.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Mapping

import jax


INSTALL_HINT = "pip install -e '.[tensorboard]'"
_warned = False


def _clu_writer(logdir: str):
  from clu import metric_writers  # imports TensorFlow and tensorboard
  return metric_writers.create_default_writer(logdir, just_logging=jax.process_index() > 0)


def _warn_once(reason: str) -> None:
  global _warned
  if not _warned:
    _warned = True
    print(f"TensorBoard logging is off ({reason}); metrics still go to metrics.jsonl. "
          f"To get TensorBoard events: {INSTALL_HINT}", file=sys.stderr, flush=True)


def _tensorboard_writer(logdir: str):
  """clu's TensorBoard writer, or None (quietly when TensorFlow is absent: the core install)."""
  try:
    import tensorflow  # noqa: F401
  except Exception as e:  # absent (quiet), or a broken install (say so)
    if not (isinstance(e, ModuleNotFoundError) and e.name == "tensorflow"):
      _warn_once(f"TensorFlow does not import: {type(e).__name__}: {e}")
    return None
  # TF is there, so the user wants TensorBoard: say why it cannot be had (clu
  # also needs the `tensorboard` package, which tensorflow-cpu does not pull in).
  try:
    return _clu_writer(logdir)
  except Exception as e:
    _warn_once(f"{type(e).__name__}: {e}")
    return None


class MetricWriter:
  """Writes {name: float} per (stage, step); only process 0 writes files."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.is_main = jax.process_index() == 0
    self.tensorboard = _tensorboard_writer(os.path.join(workdir, "tensorboard")) if self.is_main else None

  def write(self, stage: str, step: int, scalars: Mapping[str, float]) -> None:
    if not self.is_main:
      return
    row = {"stage": stage, "step": int(step), "time": time.time()}
    row.update({k: float(v) for k, v in scalars.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self.tensorboard is not None:
      self.tensorboard.write_scalars(int(step), {f"{stage}/{k}": float(v)
                                                 for k, v in scalars.items()})

  def flush(self) -> None:
    if self.tensorboard is not None:
      self.tensorboard.flush()


def read_metrics(workdir: str) -> list[dict]:
  """Rows of metrics.jsonl; when a stage was resumed, later rows win for a repeated step."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  rows: dict = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # a line cut short by a kill
        continue
      rows[(row["stage"], row["step"])] = row
  return [rows[k] for k in sorted(rows, key=lambda k: (k[0] != "search", k[1]))]


def format_duration(seconds: float) -> str:
  """`0:00:59`, `1d 01:00:00`, `4d 19:12:05`: hours wrap into days, never lost."""
  if not math.isfinite(seconds):
    return "?"
  total = int(round(max(seconds, 0.0)))
  days, rest = divmod(total, 86_400)
  hours, rest = divmod(rest, 3600)
  clock = f"{hours:d}:{rest // 60:02d}:{rest % 60:02d}"
  return f"{days}d {hours:02d}:{rest // 60:02d}:{rest % 60:02d}" if days else clock


def format_rate(steps_per_second: float) -> str:
  """`12.3 steps/s`, or `18.2 s/step` below one step a second (where 0.05 steps/s says little)."""
  if steps_per_second <= 0 or not math.isfinite(steps_per_second):
    return "? steps/s"
  if steps_per_second < 1:
    return f"{1 / steps_per_second:.2f} s/step"
  return f"{steps_per_second:.2f} steps/s"


class Progress:
  """`12:03:44 [finetune] step 120/400 (30%) 12.3 steps/s ETA 0:00:23 loss 0.0712 ...`.

  The line starts with the wall-clock time. The rate counts from the first report, after
  the step has compiled (compilation is reported on its own line, `loop.compile_step`).
  With `expected` (the search: its schedule reaches the budget at ``pace_steps``, its step
  limit is only a limit) the line reads `step 120/~400` and the ETA is to that step; past
  it, no ETA is shown.
  """

  def __init__(self, stage: str, total: int, start: int = 0, expected: bool = False):
    self.stage, self.total, self.expected = stage, total, expected
    self.t0, self.s0 = None, start

  def line(self, step: int, scalars: Mapping[str, float], extra: str = "") -> str:
    if self.t0 is None:  # rates count from the first report, after compilation
      self.t0, self.s0 = time.time(), step
    elapsed = max(time.time() - self.t0, 1e-9)
    rate = (step - self.s0) / elapsed
    eta = (self.total - step) / rate if rate > 0 else math.inf
    pct = 100.0 * step / max(self.total, 1)
    total = f"~{self.total}" if self.expected else f"{self.total}"
    timing = "" if step == self.s0 else f"{format_rate(rate)} "   # no rate from one report
    if step > self.s0 and not (self.expected and step >= self.total):
      timing += f"ETA {format_duration(eta)} "
    return (f"{time.strftime('%H:%M:%S')} [{self.stage}] step {step}/{total} ({pct:.0f}%) "
            f"{timing}loss {scalars.get('loss', float('nan')):.4f}{extra}")

"""Timing what `Upscaler` runs: latency tables (`pruning.latency`) and end-to-end latency.

Every time is the median of `repeats` calls of a compiled executable on
device-resident inputs (after one warm-up call), so it holds the computation
only: no compile, no host transfer. On Linux, processes that time should run
with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (`reexec_with_hugepages`), as
`bench/inference.py` does: XLA's large per-call buffers then sit on huge pages.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import sys
import time
from typing import Callable, Mapping, Optional, Sequence

import jax
import jaxlib
import numpy as np

from fmp_jax.arch import Arch
from fmp_jax.inference import Upscaler
from fmp_jax.models import init_params, precision_dtype
from fmp_jax.models.layers import NARROW_OUT
from fmp_jax.models.widths import default_channel_multiple, run_width, run_widths
from fmp_jax.pruning import complexity
from fmp_jax.pruning.latency import LatencyTable, LatencyTableError, device_info


def reexec_with_hugepages(argv: Optional[Sequence[str]] = None) -> None:
  """Re-executes this process with glibc's huge pages on (Linux, if not set already)."""
  if sys.platform.startswith("linux") and "GLIBC_TUNABLES" not in os.environ:
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.hugetlb=1")
    args = list(sys.argv if argv is None else argv)
    os.execve(sys.executable, [sys.executable] + args, env)


def median_seconds(fn: Callable, *args, repeats: int = 5) -> float:
  """Median wall time of fn(*args) (block_until_ready) after one warm-up call."""
  return time_interleaved({"fn": (fn, args)}, rounds=repeats).seconds("fn")


# A timing whose rounds differ by more than this fraction of their median (for any model,
# or for the ratio of two models timed side by side) is reported as unreliable: on an idle
# machine the rounds of a whole-image forward pass agree within a few per cent.
UNRELIABLE_SPREAD = 0.2


@dataclasses.dataclass(frozen=True)
class Timing:
  """Interleaved timings: per name, the seconds of every round (`time_interleaved`)."""
  rounds: dict

  def seconds(self, name: str) -> float:
    return statistics.median(self.rounds[name])

  def spread(self, name: str) -> float:
    """(slowest - fastest round) / median."""
    t = self.rounds[name]
    return (max(t) - min(t)) / statistics.median(t)

  def ratios(self, name: str, reference: str) -> list[float]:
    return [a / b for a, b in zip(self.rounds[name], self.rounds[reference])]

  def ratio(self, name: str, reference: str) -> float:
    """The median over rounds of name's time / reference's time in the same round."""
    return statistics.median(self.ratios(name, reference))

  def ratio_spread(self, name: str, reference: str) -> float:
    r = self.ratios(name, reference)
    return (max(r) - min(r)) / statistics.median(r)

  def unreliable(self, *names: str) -> bool:
    """True when the rounds disagree by more than UNRELIABLE_SPREAD (the machine was busy)."""
    names = names or tuple(self.rounds)
    worst = max(self.spread(n) for n in names)
    if len(names) == 2:
      worst = max(worst, self.ratio_spread(*names))
    return worst > UNRELIABLE_SPREAD

  def summary(self, name: str, reference: str) -> dict:
    """What a report holds of `name` timed against `reference` (seconds are medians)."""
    return {"seconds": self.seconds(name), "dense_seconds": self.seconds(reference),
            "ratio": self.ratio(name, reference),
            "ratio_min": min(self.ratios(name, reference)),
            "ratio_max": max(self.ratios(name, reference)),
            "spread": max(self.spread(name), self.spread(reference),
                          self.ratio_spread(name, reference)),
            "rounds": len(self.rounds[name]), "unreliable": self.unreliable(name, reference)}


def time_interleaved(calls: Mapping[str, tuple], rounds: int = 5, warmup: int = 1) -> Timing:
  """Times every fn(*args) of `calls` ({name: (fn, args)}) once per round, the models in
  turn (alternating direction each round), after `warmup` calls each; so a change of load
  hits all of them alike and their ratio per round stays meaningful. Returns the Timing."""
  for fn, args in calls.values():
    for _ in range(warmup):
      jax.block_until_ready(fn(*args))
  names = list(calls)
  times: dict = {n: [] for n in names}
  for r in range(rounds):
    for name in (names if r % 2 == 0 else names[::-1]):
      fn, args = calls[name]
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - t0)
  return Timing(times)


def format_latency(t: Mapping) -> str:
  """`82.4 % (5 rounds, 79.0-85.1 %)`, or with `unreliable: machine busy` when it is."""
  text = (f"{100 * t['ratio']:.1f} % ({t['rounds']} rounds, {100 * t['ratio_min']:.1f}-"
          f"{100 * t['ratio_max']:.1f} %)")
  if t.get("unreliable"):
    text += (f"; unreliable: machine busy (rounds differ by {100 * t['spread']:.0f} %, over "
             f"{100 * UNRELIABLE_SPREAD:.0f} %)")
  return text


def time_against_dense(params: Mapping, arch: Arch, lr_hw: tuple[int, int], rounds: int = 5,
                       run_widths: Optional[Mapping[str, int]] = None,
                       dense_params: Optional[Mapping] = None) -> dict:
  """A pruned model and its dense backbone timed interleaved by `Upscaler` (whole image at
  LR `lr_hw`, `run_widths` for the pruned one): `Timing.summary` of the pruned model."""
  dense = arch.dense()
  pruned_fn, x, _ = upscaler_call(params, arch, lr_hw, run_widths=run_widths)
  dense_fn, xd, _ = upscaler_call(dense_params or init_params(dense), dense, lr_hw)
  timing = time_interleaved({"pruned": (pruned_fn, (x,)), "dense": (dense_fn, (xd,))}, rounds)
  return dict(timing.summary("pruned", "dense"), lr_hw=list(lr_hw))


def upscaler_call(params: Mapping, arch: Arch, lr_hw: tuple[int, int], precision: str = "float32",
                  channel_multiple: Optional[int] = None,
                  run_widths: Optional[Mapping[str, int]] = None):
  """(compiled whole-image forward, its device input) as `Upscaler` runs `arch` by default
  (or at `run_widths`, e.g. a latency table's plan)."""
  up = Upscaler(params, arch, tile=None, channel_multiple=channel_multiple, precision=precision,
                max_call_pixels=None, run_widths=run_widths)
  shape = (1, lr_hw[0], lr_hw[1], 3)
  x = jax.device_put(np.random.default_rng(0).random(shape, np.float32))
  exe = up.executable(shape)
  return (lambda x: exe(up.params, x)), x, up.arch


def measure_model(params: Mapping, arch: Arch, lr_hw: tuple[int, int], repeats: int = 5,
                  precision: str = "float32",
                  run_widths: Optional[Mapping[str, int]] = None) -> float:
  """Seconds of one whole-image forward pass of `Upscaler` (default paths; default padding,
  or `run_widths`)."""
  fn, x, _ = upscaler_call(params, arch, lr_hw, precision, run_widths=run_widths)
  return median_seconds(fn, x, repeats=repeats)


def _min_over_passes(calls: Mapping, repeats: int, passes: int) -> dict:
  """key -> the fastest, over `passes` rounds (alternating order), of the median of `repeats`
  calls of fn(*args); every entry is warmed up once first."""
  for fn, args in calls.values():
    jax.block_until_ready(fn(*args))
  best = {}
  keys = list(calls)
  for k in range(passes):
    for key in (keys if k % 2 == 0 else keys[::-1]):
      # One entry's calls in a burst (as a device runs one model over and over).
      burst = time_interleaved({key: calls[key]}, rounds=repeats, warmup=0)
      best[key] = min(best.get(key, math.inf), burst.seconds(key))
  return best


def _subsample(widths: list[int], narrow: int, max_points: Optional[int]) -> list[int]:
  """All narrow widths, and at most `max_points` of the wider ones, evenly, full width kept."""
  low = [w for w in widths if w <= narrow]
  high = [w for w in widths if w > narrow]
  if max_points and len(high) > max_points:
    idx = np.unique(np.round(np.linspace(0, len(high) - 1, max_points)).astype(int))
    high = [high[i] for i in idx]
  return low + high


def check_supported(arch: Arch) -> None:
  if arch.backbone.latency_block is None:
    raise LatencyTableError(f"latency tables time a model as its blocks plus the rest; "
                            f"{arch.model.upper()} registers no block to time "
                            f"(Backbone.latency_block).")
  if arch.prune_esa:
    raise LatencyTableError("latency tables take ESA's width as fixed; prune_esa=True is not "
                            "supported.")


def build_table(arch: Arch, lr_hw: Optional[tuple[int, int]] = None, precision: str = "float32",
                repeats: int = 5, max_points: Optional[int] = None, passes: int = 2,
                progress: Callable[[str], None] = print) -> LatencyTable:
  """Times `arch`'s blocks and the rest of its forward pass on this device (module docstring
  of `fmp_jax.pruning.latency`). lr_hw: LR input (default: the 1280x720 HR convention);
  max_points: at most this many padded widths per axis above the narrow ones (None: all);
  passes: rounds over every entry (each the median of `repeats` calls), the fastest kept,
  so a moment of load on the machine spoils one round of an entry, not the table."""
  arch = arch.dense()
  check_supported(arch)
  lr_hw = tuple(lr_hw or complexity.lr_size_for(arch.scale))
  multiple, narrow = default_channel_multiple(), NARROW_OUT
  full = arch.channels
  grid = _subsample(run_widths(full, multiple, narrow), narrow, max_points)
  dtype = precision_dtype(precision)
  rng = np.random.default_rng(0)
  t_start = time.time()

  def model_arch(s, i, blocks):
    return arch.__class__(**dict(arch.to_dict(), blocks=blocks, widths=dict(
        {"stream": s}, **{f"block_{b}.inner": i for b in range(blocks)})))

  block_fn = jax.jit(lambda p, x: arch.backbone.latency_block(x, p, dtype))
  inputs = {s: jax.device_put(rng.random((1, lr_hw[0], lr_hw[1], s), np.float32).astype(dtype))
            for s in grid}
  blocks = {}
  for s in grid:
    for i in grid:
      p = jax.device_put(init_params(model_arch(s, i, 1), seed=1)["block_0"])
      blocks[s, i] = (block_fn.lower(p, inputs[s]).compile(), p, inputs[s])
    progress(f"[profile] stream {s:>4}: {len(grid)} blocks compiled "
             f"({time.time() - t_start:.0f} s)")
  # The rest at stream width S: a whole model of the table's depth at uniform width S, minus
  # its blocks, so the blocks' cost inside a chain (not only alone) is in the table and every
  # uniform model is predicted by a measurement of itself.
  wholes = {}
  for s in grid:
    a = model_arch(s, s, arch.blocks)
    fn, x, _ = upscaler_call(init_params(a, seed=1), a, lr_hw, precision, channel_multiple=1)
    wholes[s] = (fn, x)
  progress(f"[profile] {len(grid)} uniform models compiled ({time.time() - t_start:.0f} s)")
  times = _min_over_passes({**{("block",) + k: (fn, (p, x)) for k, (fn, p, x) in blocks.items()},
                            **{("whole", s): (fn, (x,)) for s, (fn, x) in wholes.items()}},
                           repeats, passes)
  block = np.array([[times["block", s, i] for i in grid] for s in grid])
  rest = np.array([times["whole", s] - arch.blocks * block[a, a] for a, s in enumerate(grid)])
  for a, s in enumerate(grid):
    progress(f"[profile] stream {s:>4}: block {1e3 * block[a].min():.1f}-"
             f"{1e3 * block[a].max():.1f} ms over inner widths {grid[0]}..{grid[-1]}, "
             f"rest {1e3 * rest[a]:.1f} ms")
  table = LatencyTable(
      arch=arch, lr_hw=lr_hw, precision=precision, device=device_info(),
      versions={"jax": jax.__version__, "jaxlib": jaxlib.__version__},
      channel_multiple=multiple, narrow=narrow, grid={"stream": grid, "inner": grid},
      block=block, rest=rest)
  dense_measured = measure_model(init_params(arch, seed=1), arch, lr_hw, repeats, precision)
  table.meta = {"repeats": repeats, "passes": passes, "max_points": max_points,
                "seconds": time.time() - t_start,
                "dense_measured": dense_measured, "dense_predicted": table.dense(),
                "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
  progress(f"[profile] dense {arch.model.upper()}-{arch.blocks}-{arch.channels}: predicted "
           f"{1e3 * table.dense():.1f} ms, measured {1e3 * dense_measured:.1f} ms; "
           f"{time.time() - t_start:.0f} s in all")
  table.meta["warnings"] = table_warnings(table)
  for w in table.meta["warnings"]:
    progress(f"[profile] WARNING: {w}")
  return table


def table_warnings(table: LatencyTable, tolerance: float = 0.1) -> list[str]:
  """What says a table was timed on a busy machine: the dense model predicted far from its
  own measurement, taken after the table's rounds. (A negative rest is no such sign: a block
  inside the whole model can run faster than the same block timed alone.)"""
  measured, predicted = table.meta.get("dense_measured"), table.dense()
  if measured and abs(predicted / measured - 1) > tolerance:
    return [f"the dense model is predicted at {1e3 * predicted:.1f} ms and measured at "
            f"{1e3 * measured:.1f} ms ({100 * (predicted / measured - 1):+.0f} %): was the "
            "machine busy? Rebuild the table on an idle machine."]
  return []


def random_widths(arch: Arch, rng: np.random.Generator, low: int = 4) -> dict[str, int]:
  """A random width per prunable group, in [low, full]."""
  a = arch.dense()
  return {g: int(rng.integers(min(low, a.width(g)), a.width(g) + 1)) for g in a.prunable_groups()}


__all__ = ["build_table", "measure_model", "median_seconds", "random_widths",
           "reexec_with_hugepages", "run_width", "table_warnings", "upscaler_call"]

"""A measured-latency cost model: a per-device table of what `Upscaler` runs, by width.

`fmp_jax.profiling.build_table` (or ``tools/profile_latency.py``) times, on the
current device, the pieces of the forward pass that `fmp_jax.inference.Upscaler`
runs (its fast paths, its padding of widths to the backend's channel multiple):

* ``block[s][i]``: one ESRB block (`models.esrb.block_forward` on
  `FastBlockOps`) at stream width ``grid["stream"][s]`` and inner width
  ``grid["inner"][i]``;
* ``rest[s]``: everything else (head, body end, upsampler, pixel shuffle) at
  stream width ``grid["stream"][s]``: a 1-block model's time minus its block.

A group of width w runs at ``run_width(w)``: w itself up to `narrow` channels
(the narrow-conv paths), else w rounded up to the channel multiple (at most
the full width). The grids hold run widths: every one of them, or a coarser
subset for wide models, with linear interpolation in between.

A model runs at its run widths or at any wider ones: padding is exact (zero
channels), and on a real device a wider run can be faster (on XLA:CPU a 16-wide
stream of ESRB-3-32 ran slower than a 24-wide one, a 56-wide one of ESRB-4-64
slower than the dense 64). `LatencyTable.plan` picks, for given widths, the
run widths at or above them that the table says run fastest; `Upscaler(...,
run_widths=plan)` runs them. The padding rule is `fmp_jax.models.widths`'s, the
one `Upscaler` applies.

Prediction (`LatencyTable.predict`): the time of that plan, rest(S') + sum over
blocks of block(S', I'_b): a step function of the widths, as the device is,
and never rising as channels are removed. `LatencyCost` makes it a cost model
(the budget metric "latency"); the plan's totals are one function
(`plan_totals`) for the host (numpy, float64) and the jitted step (jax.numpy).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import os
from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fmp_jax.arch import Arch
# run_width(s): the padding rule `Upscaler` runs; re-exported for the table's users.
from fmp_jax.models.widths import run_width, run_widths
from fmp_jax.pruning import complexity
from fmp_jax.pruning import cost as cost_lib
from fmp_jax.pruning.errors import BudgetError

FORMAT = 1


class LatencyTableError(BudgetError):
  """A latency table that cannot serve this model or this device."""


def device_info() -> dict:
  """What identifies the device a table was measured on."""
  dev = jax.devices()[0]
  info = {"backend": jax.default_backend(), "kind": str(dev.device_kind)}
  if info["backend"] == "cpu":
    model = ""
    try:
      with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f
                      if line.startswith("model name")), "")
    except OSError:
      pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["kind"] = f"cpu: {model or 'unknown'} ({cores} cores)"
  return info


def describe_device(info: Mapping) -> str:
  return f"{info.get('backend')} device {info.get('kind')!r}"


def _interp1(grid: Sequence[float], values: np.ndarray, x: float) -> float:
  """Piecewise-linear interpolation (exact at the grid, clamped outside)."""
  if x <= grid[0]:
    return float(values[0])
  if x >= grid[-1]:
    return float(values[-1])
  k = bisect.bisect_left(grid, x)
  if grid[k] == x:
    return float(values[k])
  t = (x - grid[k - 1]) / (grid[k] - grid[k - 1])
  return float((1 - t) * values[k - 1] + t * values[k])


@dataclasses.dataclass
class LatencyTable:
  """A measured table (see the module docstring); `to_dict`/`load` is its JSON form."""
  arch: Arch
  lr_hw: tuple[int, int]
  precision: str
  device: dict
  versions: dict
  channel_multiple: int
  narrow: int
  grid: dict                      # {"stream": [...], "inner": [...]} run widths measured
  block: np.ndarray               # (len(stream grid), len(inner grid)) seconds
  rest: np.ndarray                # (len(stream grid),) seconds
  meta: dict = dataclasses.field(default_factory=dict)   # repeats, build time, dense measured
  path: Optional[str] = None

  # --- identity ----------------------------------------------------------------------
  def check_device(self, allow_other: bool = False) -> None:
    here = device_info()
    if not allow_other and here["kind"] != self.device.get("kind"):
      raise LatencyTableError(
          f"latency table {self.path or '(in memory)'} was measured on "
          f"{describe_device(self.device)}; this is {describe_device(here)}. Latency differs "
          f"between devices: build a table here (python tools/profile_latency.py --config ... "
          f"--out latency.json), or accept this one with budget.latency_any_device=True "
          f"(allow_other_device=True).")

  def check_arch(self, arch: Arch) -> None:
    mine, theirs = self.arch.dense().to_dict(), arch.dense().to_dict()
    if mine != theirs:
      diff = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
      raise LatencyTableError(f"latency table {self.path or '(in memory)'} is of another "
                              f"model: {', '.join(f'{k}: table {a}, model {b}' for k, (a, b) in diff.items())}. "
                              f"Build one for this model with tools/profile_latency.py.")

  # --- prediction --------------------------------------------------------------------
  def run(self, group: str, width: int) -> int:
    full = self.arch.dense().width(group)
    return run_width(int(width), full, self.channel_multiple, self.narrow)

  def widths_of(self, widths: Optional[Mapping[str, int]] = None) -> dict[str, int]:
    """Every prunable group's width (missing: full)."""
    a = self.arch.dense()
    return {g: int((widths or {}).get(g, a.width(g))) for g in a.prunable_groups()}

  def _block(self, s: float, i: float) -> float:
    """Bilinear in the measured grid (exact at its points)."""
    gs, gi = self.grid["stream"], self.grid["inner"]
    col = np.array([_interp1(gi, self.block[k], i) for k in range(len(gs))])
    return _interp1(gs, col, s)

  def time_at(self, run: Mapping[str, int]) -> float:
    """Seconds of one forward pass that runs exactly these widths (no padding chosen)."""
    s = run["stream"]
    total = _interp1(self.grid["stream"], self.rest, s)
    for b in range(self.arch.blocks):
      total += self._block(s, run[f"block_{b}.inner"])
    return float(total)

  def candidates(self, group: str) -> list[int]:
    """Every width the group can run at (`run_widths` of its full width)."""
    return run_widths(self.arch.dense().width(group), self.channel_multiple, self.narrow)

  def at_candidates(self) -> tuple[list[int], list[int], np.ndarray, np.ndarray]:
    """(stream runs, inner runs, rest at each stream run, block at each (stream, inner) run):
    the table read at every width a group can run at (interpolated between grid points)."""
    rs, ri = self.candidates("stream"), self.candidates("block_0.inner")
    rest = np.array([_interp1(self.grid["stream"], self.rest, v) for v in rs])
    block = np.array([[self._block(a, b) for b in ri] for a in rs])
    return rs, ri, rest, block

  def plan(self, widths: Optional[Mapping[str, int]] = None) -> dict[str, int]:
    """The fastest run widths at or above these widths' own, as the table predicts them.

    The stream width S' fixes every block's cost row, so for each S' each block takes
    its fastest inner run at or above its own; the best S' wins (ties: the narrower).
    """
    rs, ri, rest, block = self.at_candidates()
    w = self.widths_of(widths)
    inner = [f"block_{b}.inner" for b in range(self.arch.blocks)]
    first = [ri.index(self.run(g, w[g])) for g in inner]
    k0 = rs.index(self.run("stream", w["stream"]))
    totals = plan_totals(rest, _suffix_min(block), first)
    k = k0 + int(np.argmin(totals[k0:]))
    run = {"stream": rs[k]}
    for g, j0 in zip(inner, first):
      run[g] = ri[j0 + int(np.argmin(block[k, j0:]))]
    return run

  def predict(self, widths: Optional[Mapping[str, int]] = None) -> float:
    """Seconds of one forward pass at these widths (group -> channels; missing: full), run
    at the table's `plan` for them."""
    return self.time_at(self.plan(widths))

  def dense(self) -> float:
    return self.predict(None)

  # --- file --------------------------------------------------------------------------
  def to_dict(self) -> dict:
    return {"format": FORMAT, "arch": self.arch.dense().to_dict(), "lr_hw": list(self.lr_hw),
            "precision": self.precision, "device": self.device, "versions": self.versions,
            "channel_multiple": self.channel_multiple, "narrow": self.narrow,
            "grid": self.grid, "block": np.asarray(self.block).tolist(),
            "rest": np.asarray(self.rest).tolist(), "meta": self.meta}

  def save(self, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(self.to_dict(), f, indent=1)
    os.replace(tmp, path)
    self.path = path

  @classmethod
  def from_dict(cls, d: Mapping, path: Optional[str] = None) -> "LatencyTable":
    if d.get("format") != FORMAT:
      raise LatencyTableError(f"latency table {path}: format {d.get('format')!r} is not "
                              f"{FORMAT}; build it again with tools/profile_latency.py.")
    return cls(arch=Arch.from_dict(d["arch"]), lr_hw=tuple(d["lr_hw"]),
               precision=d["precision"], device=dict(d["device"]),
               versions=dict(d["versions"]), channel_multiple=int(d["channel_multiple"]),
               narrow=int(d["narrow"]), grid={k: [int(v) for v in g] for k, g in d["grid"].items()},
               block=np.asarray(d["block"], np.float64), rest=np.asarray(d["rest"], np.float64),
               meta=dict(d.get("meta", {})), path=path)

  @classmethod
  def load(cls, path: str, allow_other_device: bool = False) -> "LatencyTable":
    """Reads a table; refuses one measured on another device kind unless allowed."""
    if not path:
      raise LatencyTableError("a latency budget needs a table: budget.latency_table=PATH "
                              "(build one with python tools/profile_latency.py --config ... "
                              "--out PATH).")
    try:
      with open(path) as f:
        d = json.load(f)
    except FileNotFoundError:
      raise LatencyTableError(f"latency table {path}: no such file (build it with "
                              f"python tools/profile_latency.py --config ... --out {path}).") from None
    except (OSError, ValueError) as e:
      raise LatencyTableError(f"latency table {path} is unreadable ({type(e).__name__}: {e}); "
                              "build it again with tools/profile_latency.py.") from None
    table = cls.from_dict(d, path)
    table.check_device(allow_other_device)
    return table


def plan_totals(rest, env, first):
  """Per stream run S': rest(S') plus each block's fastest inner run at or above its own
  (column `first[b]` of `env`, the block times' suffix minimum over inner runs), summed in
  block order. numpy on the host (`LatencyTable.plan`), jax.numpy in the step (`LatencyCost`)."""
  totals = rest
  for j in first:
    totals = totals + env[:, j]
  return totals


def _through_efficient(xs, values, efficient):
  """Per row of `values` (.., len(xs)): the piecewise-linear curve through its efficient
  points only (where no wider run is faster), read at every xs."""
  out = np.empty_like(values)
  for k in np.ndindex(values.shape[:-1]):
    keep = efficient[k]
    out[k] = np.interp(xs, np.asarray(xs, float)[keep], values[k][keep])
  return out


def _interp_left(xs, values, x):
  """Piecewise-linear in `xs` along the last axis of `values`, read at x; at a point of xs the
  segment below it (its gradient is what the next channel removed saves)."""
  k = jnp.clip(jnp.searchsorted(xs, x, side="left"), 1, xs.shape[0] - 1)
  t = (x - xs[k - 1]) / (xs[k] - xs[k - 1])
  return values[..., k - 1] * (1 - t) + values[..., k] * t


def _suffix_min(values):
  """min over j' >= j along the last axis."""
  return np.minimum.accumulate(values[..., ::-1], axis=-1)[..., ::-1]


class LatencyCost(cost_lib.CostModel):
  """Measured latency (seconds per forward pass at the table's input size, `latency`).

  The relaxed value is the table's prediction (`LatencyTable.predict`: its
  fastest run at or above the widths, a step function that never rises as
  channels go); its gradient is that of a piecewise-linear curve at the
  unpadded widths through the widths where no wider run is faster, so each
  channel entry is pushed by the average time the next such width saves per
  channel, also across widths that run slower than a wider one. Weight zeros
  save no time (`weights_count` is False): no kernel skips them.
  """

  name = "latency"
  weights_count = False

  def __init__(self, arch: Arch, table: LatencyTable):
    super().__init__(arch)
    table.check_arch(arch)
    self.table = table
    a = arch.dense()
    self._full = {g: a.width(g) for g in a.prunable_groups()}
    self._dense = table.dense()
    rs, ri, rest, block = table.at_candidates()
    env = _suffix_min(block)                      # fastest inner run at or above each
    self._rs, self._ri = np.asarray(rs, np.float32), np.asarray(ri, np.float32)
    self._rest = rest.astype(np.float32)
    self._env = env.astype(np.float32)
    self._smooth = _through_efficient(ri, env, block <= env).astype(np.float32)

  def dense(self) -> float:
    return self._dense

  def exact(self, channel_masks=None, weight_masks=None) -> float:
    del weight_masks   # weight zeros save no time
    widths = {g: int(np.count_nonzero(np.asarray(m))) for g, m in (channel_masks or {}).items()}
    return self.table.predict(widths)

  def at_widths(self, widths):
    return self.table.predict(widths)

  def run_widths(self, widths):
    return self.table.plan(widths)

  def report(self, widths):
    seconds, dense = self.table.predict(widths), self._dense
    # The widths the prediction runs at: where the table has a wider run faster, that one.
    return dict(run_widths=self.table.plan(widths), latency_seconds=seconds,
                dense_latency_seconds=dense, latency_ratio=seconds / dense,
                latency_lr_hw=list(self.table.lr_hw),
                latency_channel_pruned_ratio=1.0 - seconds / dense,
                latency_weight_pruned_ratio=0.0)   # weight zeros save no time

  def removal_cost(self, channel_masks, weight_masks=None, multiple: int = 1) -> dict:
    """Per group, the step of the table removing `multiple` more channels would take."""
    del weight_masks
    widths = {g: jnp.sum(jax.lax.stop_gradient(m)) for g, m in channel_masks.items()}
    now = self._predict_jnp(widths)
    out = {}
    for g, m in channel_masks.items():
      fewer = self._predict_jnp(dict(widths, **{g: jnp.maximum(widths[g] - multiple, 1.0)}))
      out[g] = jnp.full(m.shape[0] // multiple, (now - fewer) / self._dense)
    return out

  def grow(self, run, keep):
    """The run widths widened, one run-width step of one group at a time, while the table's
    prediction stays within `keep` of the dense model's. A search under a latency budget
    ends with a removal that may cross the budget by a whole step of the table (a stream
    run of 48 -> 40 channels priced at 12 points at ESRB-6-64 on a 2-core CPU); this spends
    what it left. Each step takes the group whose next run width adds the most params per
    added second (one that adds no time first); returns the plan of the grown widths."""
    limit = keep * self._dense
    widths = dict(self.table.plan(run))

    def params(w):
      return complexity.count(self.arch.with_widths(w)).params

    now_t, now_p = self.table.predict(widths), params(widths)
    while True:
      best = None
      for g, w in widths.items():
        wider = [c for c in self.table.candidates(g) if c > w]
        if not wider:
          continue
        cand = dict(widths, **{g: wider[0]})
        t = self.table.predict(cand)
        if t > limit:
          continue
        p = params(cand)
        score = (p - now_p) / (t - now_t) if t > now_t else float("inf")
        if best is None or score > best[0]:
          best = (score, cand, t, p)
      if best is None:
        return self.table.plan(widths)
      _, widths, now_t, now_p = best

  def _predict_jnp(self, widths):
    """The table's step function in jax.numpy (no gradient)."""
    return jax.lax.stop_gradient(self._relaxed_widths(widths))

  def relaxed(self, channel_masks, weight_masks=None):
    """The prediction's value, the efficient-width curve's gradient, in the masks' sums."""
    del weight_masks
    widths = {g: (jnp.sum(channel_masks[g]) if g in channel_masks else jnp.float32(full))
              for g, full in self._full.items()}
    return self._relaxed_widths(widths)

  def _relaxed_widths(self, widths):
    t = self.table
    widths = {g: jnp.asarray(widths.get(g, full), jnp.float32) for g, full in self._full.items()}
    rs, ri = jnp.asarray(self._rs), jnp.asarray(self._ri)

    def padded(g, w):
      # The run width, without gradient (the step's value).
      return run_width(jax.lax.stop_gradient(w), self._full[g], t.channel_multiple, t.narrow,
                       xp=jnp)

    def reverse_cummin(x):
      return jax.lax.cummin(x, reverse=True)

    # The step value: per stream run S' (every candidate), the rest plus each block's fastest
    # inner run at or above its own; the fastest S' at or above the stream's own run.
    env, smooth = jnp.asarray(self._env), jnp.asarray(self._smooth)
    inner = [widths[f"block_{b}.inner"] for b in range(t.arch.blocks)]
    first = [jnp.searchsorted(ri, padded(f"block_{b}.inner", i), side="left")
             for b, i in enumerate(inner)]
    step_rows = plan_totals(jnp.asarray(self._rest), env, first)
    smooth_rows = jnp.asarray(self._rest)
    for i in inner:
      smooth_rows = smooth_rows + _interp_left(ri, smooth, i)
    s = widths["stream"]
    k = jnp.searchsorted(rs, padded("stream", s), side="left")
    step = reverse_cummin(step_rows)[k]
    # The smooth value: linear in s between the efficient stream runs around s (where no
    # wider run is faster under the same inner widths; at one of them, the segment below),
    # so its slope is never negative.
    efficient = jax.lax.stop_gradient(smooth_rows <= reverse_cummin(smooth_rows))
    up = jnp.argmin(jnp.where(efficient & (rs >= s), rs, jnp.inf))
    below = efficient & (rs < s)
    lo = jnp.where(jnp.any(below), jnp.argmax(jnp.where(below, rs, -jnp.inf)), up)
    span = rs[up] - rs[lo]
    frac = jnp.where(span > 0, (s - rs[lo]) / jnp.where(span > 0, span, 1.0), 0.0)
    smooth_value = smooth_rows[lo] * (1 - frac) + smooth_rows[up] * frac
    return step + smooth_value - jax.lax.stop_gradient(smooth_value)


def load_table_once(path: str, allow_other_device: bool = False) -> LatencyTable:
  """`LatencyTable.load`, read once per file version (path and modification time) in this
  process: a run's budgets, family members and reports share one read."""
  try:
    stamp = os.stat(path).st_mtime_ns if path else None
  except OSError:
    stamp = None   # load names the problem
  return _load_cached(path, bool(allow_other_device), stamp)


@functools.lru_cache(maxsize=16)
def _load_cached(path, allow_other_device, stamp):
  del stamp   # part of the cache key only
  return LatencyTable.load(path, allow_other_device=allow_other_device)


cost_lib.register_metric("latency", cost_lib.Metric(
    lambda arch, budget: LatencyCost(arch, load_table_once(
        budget.latency_table, allow_other_device=budget.latency_any_device)),
    weights_count=False, needs=("latency_table",),
    hint="a table measured on the target device (python tools/profile_latency.py "
         "--config ... --out PATH)"))


__all__ = ["LatencyTable", "LatencyTableError", "LatencyCost", "load_table_once", "plan_totals", "run_width", "run_widths", "device_info"]

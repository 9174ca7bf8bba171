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
run_widths=plan)` runs them.

Prediction (`LatencyTable.predict`): the time of that plan, rest(S') + sum over
blocks of block(S', I'_b): a step function of the widths, as the device is,
and never rising as channels are removed. `fmp_jax.pruning.cost.LatencyCost`
makes it a cost model.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import os
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np

from fmp_jax.arch import Arch
from fmp_jax.pruning.errors import BudgetError

FORMAT = 1


class LatencyTableError(BudgetError):
  """A latency table that cannot serve this model or this device."""


def run_width(width: int, full: int, multiple: int, narrow: int) -> int:
  """The width a group of `width` channels runs at (`Upscaler`'s padding rule)."""
  if width <= narrow or multiple <= 1:
    return int(width)
  return int(min(full, multiple * math.ceil(width / multiple)))


def run_widths(full: int, multiple: int, narrow: int) -> list[int]:
  """Every width a group of `full` channels can run at."""
  return sorted({run_width(w, full, multiple, narrow) for w in range(1, full + 1)})


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
    its fastest inner width independently; the best S' wins (ties: the narrower).
    """
    rs, ri, rest, block = self.at_candidates()
    w = self.widths_of(widths)
    best = None
    for k in range(rs.index(self.run("stream", w["stream"])), len(rs)):
      run, total = {"stream": rs[k]}, rest[k]
      for b in range(self.arch.blocks):
        g = f"block_{b}.inner"
        j0 = ri.index(self.run(g, w[g]))
        j = j0 + int(np.argmin(block[k, j0:]))
        run[g], total = ri[j], total + block[k, j]
      if best is None or total < best[0]:
        best = (total, run)
    return best[1]

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


__all__ = ["LatencyTable", "LatencyTableError", "run_width", "run_widths", "device_info"]

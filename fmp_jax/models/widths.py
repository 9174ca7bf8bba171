"""The widths a pruned model runs at: the padding rule, written once.

A pruned group of w channels can run at any wider width with zero channels
added (exact: see `pad_to_widths`). `Upscaler` pads every pruned group to the
backend's channel multiple, except the narrow groups (at most `NARROW_OUT`
channels), which run on the narrow-conv paths that padding would only slow
down; a latency table (`fmp_jax.pruning.latency`) is measured at, and plans
with, the same rule, so what it predicts is what `Upscaler` runs.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import jax
import numpy as np

from fmp_jax.arch import Arch
from fmp_jax.models.layer_table import layer_table
from fmp_jax.models.layers import NARROW_OUT
from fmp_jax.tree_paths import get_at, set_at

# Width padding that ran fastest per backend (bench/inference.py --channel-multiples):
# XLA:CPU (YNNPACK) on AVX-512 at 8, an H200 at 32. Other backends: unmeasured, 8.
CHANNEL_MULTIPLE = {"cpu": 8, "gpu": 32}


def default_channel_multiple(backend: Optional[str] = None) -> int:
  """The width multiple `Upscaler` pads to by default on `backend` (default: JAX's)."""
  return CHANNEL_MULTIPLE.get(backend or jax.default_backend(), 8)


def run_width(width, full, multiple: int, narrow: int = NARROW_OUT, xp=None):
  """The width a group of `width` channels (full size `full`) runs at: itself up to `narrow`
  channels or without padding (`multiple` <= 1), else rounded up to `multiple`, at most `full`.

  xp=None takes and returns Python ints; xp=jax.numpy (or numpy) maps arrays of widths.
  """
  if xp is None:
    if width <= narrow or multiple <= 1:
      return int(width)
    return int(min(full, multiple * math.ceil(width / multiple)))
  if multiple <= 1:
    return width
  up = xp.minimum(full, multiple * xp.ceil(width / multiple))
  return xp.where(width <= narrow, width, up)


def run_widths(full: int, multiple: int, narrow: int = NARROW_OUT) -> list[int]:
  """Every width a group of `full` channels can run at."""
  return sorted({run_width(w, full, multiple, narrow) for w in range(1, full + 1)})


def pad_channels(params: Mapping, arch: Arch, multiple: int,
                 min_width: int = 1) -> tuple[dict, Arch]:
  """Zero-pads every pruned channel group of width >= `min_width` up to a multiple of `multiple`
  (`run_width` with narrow = min_width - 1); see `pad_to_widths`. Returns (params, arch)."""
  if multiple <= 1 or not arch.widths:
    return dict(params), arch
  groups = arch.groups()
  return pad_to_widths(params, arch, {g: run_width(w, groups[g].size, multiple, min_width - 1)
                                      for g, w in arch.widths.items()})


def pad_to_widths(params: Mapping, arch: Arch, widths: Mapping[str, int]) -> tuple[dict, Arch]:
  """Zero-pads the named channel groups up to these widths.

  Exact: a padded channel has zero kernel columns and zero bias, so it is 0
  after every conv, LeakyReLU/ReLU and residual add; ESA gates it by
  sigmoid(0)=0.5 times 0; and its zero kernel rows add nothing downstream.
  Each width must lie between the group's built width and its full size.
  Returns (params, arch).
  """
  groups = arch.groups()
  for g, w in widths.items():
    if g not in groups:
      raise ValueError(f"run widths: {g!r} is not a channel group of this model "
                       f"(groups: {', '.join(sorted(groups))}).")
    if not arch.width(g) <= int(w) <= groups[g].size:
      raise ValueError(f"run widths: {g} at {w} must lie between its width "
                       f"{arch.width(g)} and its full size {groups[g].size} (padding only adds "
                       f"channels).")
  new_arch = arch.with_widths(dict(arch.widths or {}, **{g: int(w) for g, w in widths.items()}))
  padded: dict = {}
  for layer in layer_table(new_arch):
    node = get_at(params, layer.path)
    kernel, bias = np.asarray(node["kernel"]), np.asarray(node["bias"])
    k_pad = [(0, t - s) for s, t in zip(kernel.shape, layer.kernel)]
    set_at(padded, layer.path, {"kernel": np.pad(kernel, k_pad),
                                "bias": np.pad(bias, (0, layer.kernel[3] - bias.shape[0]))})
  return padded, new_arch


__all__ = ["CHANNEL_MULTIPLE", "default_channel_multiple", "run_width", "run_widths",
           "pad_channels", "pad_to_widths"]

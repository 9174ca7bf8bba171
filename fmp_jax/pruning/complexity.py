"""Params and FLOPs of a (masked or pruned) backbone: the one counter everything uses.

Convention (FMP.md section 2):
* FLOPs are multiply-accumulates of convolution weights, counted once per
  output element, each conv at its own output resolution; biases,
  activations, pooling, resizing, shuffles and element-wise ops are free.
* Params are conv weights + biases.
* Under masks, a weight counts only if its input channel, its output channel
  and its own weight-mask entry are all kept; a bias counts if its output
  channel is kept. A layer's MACs are its counted weights x output pixels.
* Default input: the LR image for a 1280x720 HR output, i.e.
  floor(720/s) x floor(1280/s).

The layer table is read off the Flax module itself
(`fmp_jax.models.layer_table`), so the counter cannot drift from the model
code. The same formulas serve exact counts (numpy, int64) and the
differentiable counts of the budget term (jax.numpy, straight-through masks).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np

from fmp_jax.arch import Arch
# Re-exported: the counter's callers read the layer table through it.
from fmp_jax.models.layer_table import (  # noqa: F401
    HR_CONVENTION, ConvLayer, layer_table, lr_size_for)


@dataclasses.dataclass(frozen=True)
class Counts:
  """Exact totals. `flops` are MACs (see module docstring)."""
  params: int
  flops: int

  def ratio_to(self, other: "Counts") -> dict[str, float]:
    return {"params": self.params / other.params, "flops": self.flops / other.flops}


def _layer_weights(xp, layer: ConvLayer, in_mask, out_mask, weight_mask):
  """Kept weights of one layer: sum_{hwio} a_i b_o w_hwio (None means all ones)."""
  kh, kw, ci, co = layer.kernel
  if weight_mask is None:
    a = ci if in_mask is None else xp.sum(in_mask)
    b = co if out_mask is None else xp.sum(out_mask)
    return kh * kw * a * b
  per_io = xp.sum(weight_mask, axis=(0, 1))  # (ci, co)
  if in_mask is not None:
    per_io = per_io * in_mask[:, None]
  if out_mask is not None:
    per_io = per_io * out_mask[None, :]
  return xp.sum(per_io)


def layer_counts(layers: Sequence[ConvLayer], channel_masks: Optional[Mapping] = None,
                 weight_masks: Optional[Mapping] = None, xp=np):
  """Per-layer (params, macs) under masks, with numpy (exact) or jax.numpy (differentiable).

  Args:
    layers: from `layer_table`.
    channel_masks: group -> (C,) keep values (0/1, or soft in [0,1]); missing
      groups are fully kept. Tied groups need their own entries
      (`Arch.expand_tied`).
    weight_masks: layer name ("block_0/conv_a") -> HWIO keep values; missing
      layers are fully kept.
    xp: numpy for exact integer counts, jax.numpy inside jit.
  Returns:
    list of (params, macs) per layer, in `layers` order.
  """
  channel_masks = channel_masks or {}
  weight_masks = weight_masks or {}
  rows = []
  for layer in layers:
    a = channel_masks.get(layer.in_group)
    b = channel_masks.get(layer.out_group)
    w = weight_masks.get(layer.name)
    if xp is np:
      a = None if a is None else np.asarray(a, np.int64)
      b = None if b is None else np.asarray(b, np.int64)
      w = None if w is None else (np.asarray(w) != 0).astype(np.int64)
    weights = _layer_weights(xp, layer, a, b, w)
    biases = layer.kernel[3] if b is None else xp.sum(b)
    rows.append((weights + biases, weights * layer.pixels))
  return rows


def count(arch: Arch, channel_masks: Optional[Mapping] = None,
          weight_masks: Optional[Mapping] = None,
          lr_hw: Optional[tuple[int, int]] = None) -> Counts:
  """Exact params and FLOPs (MACs) of `arch` under optional masks.

  Args:
    arch: the built architecture (its widths, if any, are the layer sizes).
    channel_masks: group -> (C,) 0/1 arrays at the built widths.
    weight_masks: layer name -> HWIO 0/1 arrays at the built widths (nested
      param-tree dicts ``{"block_0": {"conv_a": {"weight": ...}}}`` also work).
    lr_hw: LR input (height, width); default: 1280x720 HR convention.
  """
  layers = layer_table(arch, None if lr_hw is None else tuple(lr_hw))
  weight_masks = flatten_weight_masks(weight_masks)
  channel_masks = arch.expand_tied(channel_masks) if channel_masks else None
  rows = layer_counts(layers, channel_masks, weight_masks, xp=np)
  return Counts(params=int(sum(int(p) for p, _ in rows)), flops=int(sum(int(m) for _, m in rows)))


def per_layer(arch: Arch, channel_masks=None, weight_masks=None, lr_hw=None) -> list[dict]:
  """Rows {layer, kernel, out_hw, params, flops} for printing."""
  layers = layer_table(arch, None if lr_hw is None else tuple(lr_hw))
  channel_masks = arch.expand_tied(channel_masks) if channel_masks else None
  rows = layer_counts(layers, channel_masks, flatten_weight_masks(weight_masks), xp=np)
  return [{"layer": l.name, "kernel": "x".join(map(str, l.kernel)), "in_group": l.in_group,
           "out_group": l.out_group, "out_hw": l.out_hw, "params": int(p), "flops": int(m)}
          for l, (p, m) in zip(layers, rows)]


def flatten_weight_masks(weight_masks: Optional[Mapping]) -> dict[str, Any]:
  """Accepts {"a/b": mask} or the nested collection {"a": {"b": {"weight": mask}}}."""
  if not weight_masks:
    return {}
  flat = {}

  def walk(prefix, node):
    for key, value in node.items():
      if key == "weight" and not isinstance(value, Mapping):
        flat["/".join(prefix)] = value
      elif isinstance(value, Mapping):
        walk(prefix + (key,), value)
      else:
        flat["/".join(prefix + (key,))] = value
  walk((), weight_masks)
  return flat


def nest_weight_masks(flat: Mapping[str, Any]) -> dict:
  """Inverse of `flatten_weight_masks`: the ``masks`` collection layout."""
  nested: dict = {}
  for name, value in flat.items():
    node = nested
    for part in name.split("/"):
      node = node.setdefault(part, {})
    node["weight"] = value
  return nested


def param_count(params) -> int:
  """Number of scalars in a params pytree (arrays or ShapeDtypeStructs)."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))

"""Physical pruning: slice a masked full-width model into a smaller one.

Channels whose mask is 0 are removed from every layer that writes or reads
their group (coupled layers together, since they share the group's mask);
weight masks are kept as fixed zeros baked into the kernels and returned so
fine-tuning can hold them at zero.
"""

from __future__ import annotations

from typing import Mapping, Optional

import jax.numpy as jnp
import numpy as np

from fmp_jax.arch import Arch
from fmp_jax.pruning import complexity
from fmp_jax.pruning.masks import indicator_as_kernel
from fmp_jax.tree_paths import get_at, set_at


def slice_model(arch: Arch, params: Mapping, channel_masks: Mapping,
                weight_masks: Optional[Mapping] = None):
  """Removes masked channels from full-width `params`.

  Args:
    arch: the dense architecture of `params`.
    params: full-width backbone params.
    channel_masks: prunable group -> (C,) 0/1 (missing groups are kept whole).
    weight_masks: layer name ("block_0/conv_a") or nested -> HWIO 0/1.
  Returns:
    (params, arch, weight_masks): the smaller params with masked weights set to
    zero, the `Arch` with the kept widths, and the nested ``masks`` collection
    of sliced weight masks (empty if none were given).
  """
  keep = {g: np.flatnonzero(np.asarray(m)) for g, m in arch.expand_tied(channel_masks).items()}
  for g, idx in keep.items():
    if idx.size == 0:
      raise ValueError(f"channel group {g!r} has no channel left; cannot build a zero-width layer.")
  flat_w = complexity.flatten_weight_masks(weight_masks)
  new_params: dict = {}
  new_masks: dict = {}
  for layer in complexity.layer_table(arch):
    node = get_at(params, layer.path)
    kernel, bias = np.asarray(node["kernel"]), np.asarray(node["bias"])
    w = flat_w.get(layer.name)
    w = None if w is None else indicator_as_kernel(np.asarray(w) != 0, layer.kernel)
    if layer.in_group in keep:
      kernel = kernel[:, :, keep[layer.in_group], :]
      w = None if w is None else w[:, :, keep[layer.in_group], :]
    if layer.out_group in keep:
      kernel = kernel[:, :, :, keep[layer.out_group]]
      bias = bias[keep[layer.out_group]]
      w = None if w is None else w[:, :, :, keep[layer.out_group]]
    if w is not None:
      kernel = kernel * w
      set_at(new_masks, layer.path, {"weight": jnp.asarray(w, jnp.float32)})
    set_at(new_params, layer.path, {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)})
  widths = {g: int(idx.size) for g, idx in keep.items() if arch.groups()[g].prunable}
  return new_params, arch.with_widths(widths), new_masks



def revive_channels(arch: Arch, params: Mapping, fresh: Mapping, channel_masks: Mapping,
                    weight_masks: Optional[Mapping], widths: Mapping[str, int]):
  """Turns pruned channels back on, per group up to `widths`, without changing the function.

  Each revived channel (the group's first pruned ones) takes its output weights and bias
  from `fresh` (full-width params of a new initialisation) and contributes nothing yet:
  every weight from a revived channel into any channel is zero, and trainable (its weight
  mask is 1), so fine-tuning grows it in. Used where the channels run anyway, as the zero
  padding of a latency table's plan.

  Returns (params, channel_masks, weight_masks) at full width, ready for `slice_model`.
  """
  masks, revived = {}, {}
  for g, m in channel_masks.items():
    m = np.asarray(m).astype(np.float32).copy()
    need = int(widths.get(g, 0)) - int(np.count_nonzero(m))
    on = np.flatnonzero(m == 0)[:max(need, 0)]
    m[on] = 1.0
    masks[g] = m
    flag = np.zeros_like(m)
    flag[on] = 1.0
    revived[g] = flag
  revived = {g: np.flatnonzero(v) for g, v in arch.expand_tied(revived).items()}
  flat_w = complexity.flatten_weight_masks(weight_masks)
  out_params, out_w = {}, {}
  for layer in complexity.layer_table(arch):
    node, new = get_at(params, layer.path), get_at(fresh, layer.path)
    kernel, bias = np.array(node["kernel"]), np.array(node["bias"])
    w = flat_w.get(layer.name)
    w = None if w is None else np.array(indicator_as_kernel(np.asarray(w) != 0, layer.kernel),
                                        np.float32)
    rows, cols = revived.get(layer.in_group, ()), revived.get(layer.out_group, ())
    if len(cols):
      kernel[:, :, :, cols] = np.asarray(new["kernel"])[:, :, :, cols]
      bias[cols] = np.asarray(new["bias"])[cols]
    if len(rows):
      kernel[:, :, rows, :] = 0.0
    if w is not None:
      if len(rows):
        w[:, :, rows, :] = 1.0
      if len(cols):
        w[:, :, :, cols] = 1.0
      set_at(out_w, layer.path, {"weight": w})
    set_at(out_params, layer.path, {"kernel": kernel, "bias": bias})
  return out_params, {g: masks[g] for g in channel_masks}, (out_w or weight_masks)

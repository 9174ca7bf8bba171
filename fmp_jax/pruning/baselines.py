"""Simple ways of reaching a budget, the yardsticks FMP's search must beat.

* `uniform_widths`: the widest model whose every prunable group keeps the same
  fraction of its channels and that fits the budget (trained from scratch,
  this is the "uniform width" baseline).
* `magnitude_channel_masks`: classic L1-norm filter pruning (Li et al., ICLR
  2017, "Pruning Filters for Efficient ConvNets"): in each channel group keep
  the channels whose output filters have the largest L1 norm, the norms of
  coupled layers (all layers writing the group) summed.
* `random_channel_masks`: the same widths, channels drawn at random.
* `magnitude_weight_masks`: unstructured magnitude pruning of kernel weights
  (the same kept fraction in every layer).

Each returns masks for `fmp_jax.pruning.surgery.slice_model`, which makes the
model physically smaller.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from fmp_jax.arch import Arch
from fmp_jax.pruning import complexity
from fmp_jax.pruning.budget import Budget, BudgetError
from fmp_jax.tree_paths import get_at


def uniform_widths(arch: Arch, budget: Budget, multiple: int = 1) -> dict[str, int]:
  """Widths (group -> channels) of the widest uniform model within `budget.keep`.

  Every prunable group keeps ``round(fraction * size)`` channels (a multiple
  of `multiple` when one is given), for the largest fraction that fits, in
  the budget's metric.
  Raises BudgetError if not even one channel (or `multiple`) per group fits.
  """
  arch = arch.dense()
  cost = budget.cost_model(arch)
  limit = budget.keep * cost.dense()
  groups = {g: arch.groups()[g].size for g in arch.prunable_groups()}

  def widths_at(k: int) -> dict[str, int]:
    # k counts units of `multiple` channels in the widest group.
    widest = max(groups.values())
    return {g: max(multiple, min(size, multiple * round(k * size / widest)))
            for g, size in groups.items()}

  best = None
  for k in range(1, max(groups.values()) // multiple + 1):
    widths = widths_at(k)
    if cost.at_widths(widths) <= limit:
      best = widths
  if best is None:
    raise BudgetError(f"budget ({budget.describe()}): not even {multiple} channel(s) per group "
                      f"fit; raise keep.")
  return best


def channel_scores(params: Mapping, arch: Arch) -> dict[str, np.ndarray]:
  """Group -> (C,) sum over the layers writing the group of each output filter's L1 norm."""
  scores = {g: np.zeros(arch.width(g)) for g in arch.prunable_groups()}
  for layer in complexity.layer_table(arch):
    if layer.out_group in scores:
      kernel = np.asarray(get_at(params, layer.path)["kernel"], np.float64)
      scores[layer.out_group] += np.abs(kernel).sum(axis=(0, 1, 2))
  return scores


def _top(scores: np.ndarray, k: int) -> np.ndarray:
  mask = np.zeros(scores.shape, np.int64)
  mask[np.argsort(-scores, kind="stable")[:k]] = 1
  return mask


def magnitude_channel_masks(params: Mapping, arch: Arch,
                            widths: Mapping[str, int]) -> dict[str, np.ndarray]:
  """Group -> 0/1 mask keeping the `widths[group]` largest-L1-norm channels."""
  scores = channel_scores(params, arch)
  return {g: _top(s, int(widths.get(g, s.size))) for g, s in scores.items()}


def random_channel_masks(arch: Arch, widths: Mapping[str, int],
                         seed: int = 0) -> dict[str, np.ndarray]:
  """Group -> 0/1 mask keeping `widths[group]` channels drawn uniformly at random."""
  rng = np.random.default_rng(seed)
  return {g: _top(rng.random(arch.width(g)), int(widths.get(g, arch.width(g))))
          for g in arch.prunable_groups()}


def magnitude_weight_masks(params: Mapping, arch: Arch, keep_fraction: float,
                           channel_masks: Optional[Mapping] = None) -> dict[str, np.ndarray]:
  """Layer name -> HWIO 0/1 mask keeping the largest `keep_fraction` of each kernel's weights.

  Weights of removed channels (`channel_masks`) are not counted as kept, so the
  fraction applies to the weights that survive channel pruning.
  """
  if not 0.0 < keep_fraction <= 1.0:
    raise ValueError(f"keep_fraction={keep_fraction} must be in (0, 1].")
  channel_masks = channel_masks or {}
  out = {}
  for layer in complexity.layer_table(arch):
    kernel = np.abs(np.asarray(get_at(params, layer.path)["kernel"], np.float64))
    alive = np.ones(layer.kernel, bool)
    if layer.in_group in channel_masks:
      alive &= np.asarray(channel_masks[layer.in_group], bool)[None, None, :, None]
    if layer.out_group in channel_masks:
      alive &= np.asarray(channel_masks[layer.out_group], bool)[None, None, None, :]
    k = int(round(keep_fraction * alive.sum()))
    scores = np.where(alive, kernel, -1.0).ravel()
    mask = np.zeros(scores.size, np.int64)
    mask[np.argsort(-scores, kind="stable")[:k]] = 1
    out[layer.name] = mask.reshape(layer.kernel)
  return out

"""The proximal step of the latents, and its landing on the schedule.

After the gradient step proposes new latents (`latents.propose`), the
proximal operator (`masks.prox_channels`, `masks.prox_weights`) soft-
thresholds them by ``alpha * latent_lr * l1`` and zeroes what falls at or
below ``alpha * prune_threshold`` (DHP's threshold), every group keeping
``min_channels``; of the channel entries a step would remove, only the
``max_channel_drop`` smallest go (ties by position), so pruning stays gradual
even when many latents reach zero together. The step fraction alpha in [0, 1]
of each kind is the largest whose result keeps the quantity that governs that
kind (the criterion's `governs`) at or above its scheduled target
(`pace.landing_alpha`, by bisection). Under a joint criterion (Total) one
fraction moves both kinds, so entries go in order of size, whatever their
kind, without crossing the target; the fine-grained weights then land it.
When weight zeros do not lower the cost (a latency budget), the channels land
it: their step may then take the smallest crossing step. A channel entry whose
removal alone would cross by more than ``max_overshoot`` waits for the target
to fall; once the target has stopped falling (the pace has ended, or a family
member holds it) and every removable entry waits, none ever could go: the
step then takes its smallest crossing step however far it lands (`released`),
so a coarse cost (latency steps of 8 channels) lands below the budget instead
of stalling above it.

`Prox` takes the in-graph measurement as a function, so it can be tested
with hand-made latents and a hand counter.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fmp_jax.pruning import masks as masks_lib
from fmp_jax.pruning import pace
from fmp_jax.pruning.criteria import Criterion


@dataclasses.dataclass(frozen=True, eq=False)
class Prox:
  """The proximal step of one search (see the module docstring).

  Attributes:
    criterion: which quantity governs each kind's step (`criteria`).
    measure: (channel vectors, weight indicators or None) -> in-graph
      {"total", "channel", "weight"} of the hard masks of those latents.
    eta: the proximal step size (``latent_lr``).
    channel_l1, weight_l1: the l1 strengths of the soft threshold (already
      scaled for the criterion's free kind; 0 for the weights under
      ``weight_update="penalty"``).
    dead_zone: ``prune_threshold``.
    keep_at_least: group -> entries its vector keeps at least.
    max_drop: the most channel-vector entries one step may remove.
    landing_tol, landing_iters: see `pace.landing_alpha`.
    weights_land: whether weight zeros lower the measured cost (so the weights'
      step can land a joint criterion's target).
    max_cross: the most a crossing step may land below its target.
    removal_cost: (channel vectors, weight indicators or None) -> group ->
      (entries,) the fraction of the dense cost removing each entry alone saves;
      with it, entries that would cross by more than `max_cross` wait (`held_back`).
  """
  criterion: Criterion
  measure: Callable
  eta: float
  channel_l1: float
  weight_l1: float
  dead_zone: float
  keep_at_least: Mapping[str, int]
  max_drop: int
  landing_tol: float = 0.0
  landing_iters: int = 30
  weights_land: bool = True
  max_cross: float = float("inf")
  removal_cost: Optional[Callable] = None

  def channels(self, vectors: Mapping, alpha, held: Optional[Mapping] = None) -> dict:
    """The channel vectors after a step of fraction `alpha` (at most `max_drop` removed;
    entries marked in `held` stay as they are)."""
    after = masks_lib.prox_channels(vectors, alpha * self.eta * self.channel_l1,
                                    alpha * self.dead_zone, self.keep_at_least)
    if held is not None:
      after = {g: jnp.where(held[g], vectors[g], z) for g, z in after.items()}
    return cap_removals(vectors, after, self.max_drop)

  def held_back(self, vectors: Mapping, weights, quantity: str, target) -> Optional[dict]:
    """Entries whose removal alone would land more than `max_cross` below `target`: a coarse
    cost (a latency step) must not block every other entry behind it, so those wait."""
    if self.removal_cost is None or self.max_cross == float("inf"):
      return None
    margin = self.measure(vectors, weights)[quantity] - (target - self.max_cross)
    return {g: c > margin for g, c in self.removal_cost(vectors, weights).items()}

  def released(self, vectors: Mapping, held: Mapping, above, settled):
    """Whether the hold is lifted for this step: the target has stopped falling (`settled`),
    the quantity is `above` it, and every entry that could go waits (`held`)."""
    stuck = jnp.bool_(True)
    for g, z in vectors.items():
      alive = z != 0
      removable = alive & (jnp.sum(alive) > self.keep_at_least[g])
      stuck &= jnp.all(held[g] | ~removable)
    return stuck & above & settled

  def weights(self, indicators, alpha):
    """The weight indicators after a step of fraction `alpha`."""
    return masks_lib.prox_weights(indicators, alpha * self.eta * self.weight_l1,
                                  alpha * self.dead_zone)

  def weight_masks(self, indicators, alpha):
    """The 0/1 masks of `weights(indicators, alpha)`, for the landing's many evaluations.

    Without an l1 threshold the step only zeroes what lies in the dead zone, so the mask
    is 1[|u| > alpha * prune_threshold]: one comparison per weight instead of the whole
    shrink (the same floats compared, so the same masks)."""
    if self.weight_l1 != 0.0:
      return masks_lib.hard(self.weights(indicators, alpha))
    bound = alpha * self.dead_zone
    return jax.tree.map(lambda u: (jnp.abs(u) > bound).astype(jnp.float32), indicators)

  def land(self, q_of_alpha: Callable, target, may_cross: bool = True, release=None):
    return pace.landing_alpha(q_of_alpha, target, self.landing_tol, self.landing_iters,
                              may_cross, self.max_cross, release)

  def __call__(self, half: Mapping, targets: Mapping, floor, settled=False):
    """The step from proposed latents `half`: (latents, alpha_channel, alpha_weight).

    targets: quantity -> its scheduled target now; floor: the scheduled lowest
    tested target (what "floor" governs); settled: whether the targets stay where
    they are after this step (no later step has a lower one).
    """
    hc, hw = half["channels"], half["weights"]
    gov_c, gov_w = self.criterion.governs
    target = lambda g: floor if g == "floor" else targets[g]
    measured = lambda g: "total" if g == "floor" else g
    q_c = measured(gov_c)
    if self.criterion.joint:
      weights_at = lambda a: self.weight_masks(hw, a)
    else:
      fixed = None if q_c == "channel" else hw
      weights_at = lambda a: fixed
    may_cross = not (self.criterion.joint and self.weights_land)
    held = self.held_back(hc, weights_at(0.0), q_c, target(gov_c)) if may_cross else None
    release = None
    if held is not None:
      above = self.measure(hc, weights_at(0.0))[q_c] > target(gov_c) - pace.TARGET_MARGIN
      release = self.released(hc, held, above, jnp.asarray(settled))
      held = {g: h & ~release for g, h in held.items()}
    a_c = self.land(lambda a: self.measure(self.channels(hc, a, held), weights_at(a))[q_c],
                    target(gov_c), may_cross=may_cross, release=release)
    channels = self.channels(hc, a_c, held)
    q_w = measured(gov_w)
    a_w = self.land(lambda a: self.measure(channels, self.weight_masks(hw, a))[q_w],
                    target(gov_w))
    return {"channels": channels, "weights": self.weights(hw, a_w)}, a_c, a_w


def cap_removals(before: Mapping, after: Mapping, k: int) -> dict:
  """`after`, where of the entries it removed from `before` only the k of smallest
  |before| stay removed (ties: the first in group-name, then position order)."""
  names = sorted(before)
  b = jnp.concatenate([before[g] for g in names])
  a = jnp.concatenate([after[g] for g in names])
  removed = (b != 0) & (a == 0)
  order = jnp.argsort(jnp.where(removed, jnp.abs(b), jnp.inf), stable=True)
  rank = jnp.zeros(order.shape, jnp.int32).at[order].set(jnp.arange(order.size, dtype=jnp.int32))
  out = jnp.where(removed & (rank >= k), b, a)
  bounds = np.cumsum([before[g].size for g in names])[:-1]
  return dict(zip(names, jnp.split(out, bounds)))


def max_drop(n_entries: int, fraction: float) -> int:
  """The most entries one step may remove: `fraction` of them, at least one."""
  return max(1, int(fraction * n_entries))


def min_entries(sizes: Mapping[str, int], min_channels: int, multiple: int) -> dict[str, int]:
  """Group -> entries its vector keeps at least: ceil(min_channels / multiple), capped."""
  return {g: min(n, math.ceil(min_channels / multiple)) for g, n in sizes.items()}

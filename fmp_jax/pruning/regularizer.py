"""In-graph counting and the differentiable budget term of the search.

`Counter` evaluates the project's one complexity formula (`complexity.
layer_counts`) with jax.numpy, normalised by the dense model, so the search
step can count params/FLOPs of any mask state inside jit.

The budget term (``search.budget_reg``):

* ``"straight_through"``: mu * R(m), where each mask entry is
  m = 1[x != 0] + |x| - stop_gradient(|x|). Its value is the hard count R (so it
  tracks what the convergence test sees), and its gradient with respect to a
  latent x is mu * sign(x) * dR/dm: the metric that removing that entry would
  save, given every other mask as it is. Inside the latents' optimiser this
  pushes each entry towards zero with a force proportional to its cost, so
  channels and weights compete on loss per FLOP (or param) instead of on
  hyperparameters. mu (one per tested quantity) is a dual variable adapted
  by `update_duals`.
* ``"off"``: no budget term; only the l1 proximal steps prune.
"""

from __future__ import annotations

from typing import Mapping, Optional

import jax
import jax.numpy as jnp

from fmp_jax.arch import Arch
from fmp_jax.pruning import complexity

BUDGET_REGS = ("straight_through", "off")


class Counter:
  """Metric counts normalised by the dense model, differentiable, for one arch.

  Masks are full-width (after `masks.expand`) for the prunable groups; tied
  groups are added here.
  """

  def __init__(self, arch: Arch):
    self.arch = arch
    self.layers = complexity.layer_table(arch)
    dense = complexity.count(arch)
    self.dense = (float(dense.params), float(dense.flops))

  def _weights_full(self, weight_masks):
    if weight_masks is None:
      return None
    out = {}
    for l in self.layers:
      w = weight_masks
      for part in l.path:
        w = w[part]
      out[l.name] = w if w.ndim == 4 else jnp.broadcast_to(w[None, None], l.kernel)
    return out

  def both(self, channel_masks, weight_masks):
    """(params, flops) normalised by dense, under channel and weight masks."""
    rows = complexity.layer_counts(self.layers, self.arch.expand_tied(channel_masks, jnp),
                                   self._weights_full(weight_masks), xp=jnp)
    params = sum(p for p, _ in rows) / self.dense[0]
    flops = sum(m for _, m in rows) / self.dense[1]
    return jnp.stack([params, flops])

  def quantities(self, channel_masks, weight_masks, metric_w):
    """{"total": R, "channel": R_C, "weight": R_W} in the metric chosen by metric_w."""
    both = jnp.dot(metric_w, self.both(channel_masks, weight_masks))
    conly = jnp.dot(metric_w, self.both(channel_masks, None))
    return {"total": both, "channel": conly, "weight": 1.0 - (conly - both)}


def straight_through(tree):
  """Masks whose value is 1[x != 0] and whose gradient is sign(x) (0 at a pruned entry)."""
  def one(x):
    a = x * jax.lax.stop_gradient(jnp.sign(x))
    return (x != 0).astype(jnp.float32) + a - jax.lax.stop_gradient(a)
  return jax.tree.map(one, tree)


def budget_terms(criterion: str, c_st, w_st, c_hard, w_hard, free_scale: float) -> list:
  """(dual, scale, quantity, channel masks, weight masks) of each term, per criterion.

  Each tested quantity is counted with straight-through masks of the kind(s)
  it measures. Under Channel (Weight) the kind the criterion does not test is
  pushed too, through the total, at `free_scale` times the tested kind's dual.
  """
  if criterion == "total":
    return [("total", 1.0, "total", c_st, w_st)]
  if criterion == "channel":
    return [("channel", 1.0, "channel", c_st, None), ("channel", free_scale, "total", c_hard, w_st)]
  if criterion == "weight":
    return [("weight", 1.0, "weight", c_hard, w_st), ("weight", free_scale, "total", c_st, w_hard)]
  return [("channel", 1.0, "channel", c_st, None), ("weight", 1.0, "weight", c_hard, w_st)]


def budget_term(kind: str, counter: Counter, terms: list, duals: Mapping, metric_w) -> jax.Array:
  """Sum of duals[dual] * scale * quantity(masks) over `terms` (see `budget_terms`)."""
  if kind == "off":
    return jnp.zeros(())
  if kind != "straight_through":
    raise ValueError(f"search.budget_reg={kind!r} is unknown; use one of {BUDGET_REGS}.")
  return sum(duals[dual] * scale * counter.quantities(c, w, metric_w)[q]
             for dual, scale, q, c, w in terms)


def update_duals(duals: Mapping, behind: Mapping, capped: Mapping, rate: float,
                 limits: Optional[tuple[float, float]] = (1e-6, 1e6)) -> dict:
  """Multiplicative dual update: mu shrinks by exp(-rate) when the landing had to
  hold the proximal step back (more pressure than the schedule needs), and
  otherwise grows by exp(rate) while its quantity lags its scheduled target."""
  out = {}
  for q, mu in duals.items():
    factor = jnp.where(capped[q], jnp.exp(-rate), jnp.where(behind[q], jnp.exp(rate), 1.0))
    out[q] = jnp.clip(mu * factor, *limits)
  return out

"""The differentiable budget term of the search and its dual variables.

The budget term (``search.budget_reg``, `BUDGET_TERMS`):

* ``"straight_through"``: the sum over the criterion's terms
  (`criteria.Term`) of mu * R(m), where each mask entry is
  m = 1[x != 0] + |x| - stop_gradient(|x|). Its value is the hard count R (so it
  tracks what the convergence test sees), and its gradient with respect to a
  latent x is mu * sign(x) * dR/dm: the cost (`fmp_jax.pruning.cost`) that
  removing that entry would save, given every other mask as it is. Inside the
  latents' optimiser this pushes each entry towards zero with a force
  proportional to its cost, so channels and weights compete on loss per FLOP
  (or param) instead of on hyperparameters. mu (one per tested quantity) is a
  dual variable adapted by `update_duals`.
* ``"off"``: no budget term; only the l1 proximal steps prune.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from fmp_jax.pruning.criteria import Criterion


def straight_through(tree):
  """Masks whose value is 1[x != 0] and whose gradient is sign(x) (0 at a pruned entry)."""
  def one(x):
    a = x * jax.lax.stop_gradient(jnp.sign(x))
    return (x != 0).astype(jnp.float32) + a - jax.lax.stop_gradient(a)
  return jax.tree.map(one, tree)


def straight_through_term(criterion: Criterion, measure: Callable, st: tuple, hard: tuple,
                          duals: Mapping, free_scale: float) -> jax.Array:
  """sum over `criterion.terms` of duals[dual] * scale * quantity(masks).

  measure(channel masks, weight masks or None) -> {"total", "channel", "weight"};
  st, hard: (channel masks, weight masks), straight-through and hard.
  """
  kinds = {"st": st, "hard": hard}
  def masks(term):
    c = kinds[term.channels][0] if term.channels else None
    w = kinds[term.weights][1] if term.weights else None
    return c, w
  return sum(duals[t.dual] * (free_scale if t.free else 1.0) * measure(*masks(t))[t.quantity]
             for t in criterion.terms)


def no_term(criterion, measure, st, hard, duals, free_scale) -> jax.Array:
  del criterion, measure, st, hard, duals, free_scale
  return jnp.zeros(())


# search.budget_reg -> the budget term (same arguments as `straight_through_term`).
BUDGET_TERMS = {"straight_through": straight_through_term, "off": no_term}


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

"""How fast the search may prune: the scheduled target and the landing of each proximal step.

* `scheduled_target`: with ``search.pace_steps`` = P > 0 the target a step
  may not go below falls from 1 to the budget on the cubic schedule of
  gradual magnitude pruning (Zhu & Gupta, 2017, "To prune, or not to prune"):
  R(t) = keep + (1 - keep) (1 - p)^3, p = clip((t - w) / (P - w), 0, 1),
  with w = ``pace_warmup`` * P steps of training before any pruning. P = 0
  aims at the budget from the first step.
* `landing_alpha`: the largest fraction alpha of a proximal step (its
  threshold scaled by alpha) after which the tested quantity does not fall
  below the step's target. The search thus removes what the latents give up,
  at most as fast as the schedule allows, and lands on the budget instead of
  jumping past it; when no shortened step makes progress without crossing,
  the smallest crossing step is taken (if `may_cross`), unless it would land
  more than `max_cross` below the target (a coarse cost, such as a latency
  step of 8 channels): then the step waits, and other entries may come first
  (unless `release`: then the smallest crossing step is taken however far).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# float32 counts: demand a hair more than the target so that the exact host
# check (float64) agrees with the in-graph one.
TARGET_MARGIN = 1e-6


def scheduled_target(final, step, pace_steps: int, warmup: float):
  """The target at `step` (0-based) on the cubic schedule towards `final`."""
  if pace_steps <= 0:
    return final
  start = warmup * pace_steps
  p = jnp.clip((step - start) / max(pace_steps - start, 1.0), 0.0, 1.0)
  return final + (1.0 - final) * (1.0 - p) ** 3


def landing_alpha(q_of_alpha: Callable, target, tol: float, iters: int, may_cross: bool = True,
                  max_cross: float = float("inf"), release=None):
  """Largest alpha in [0, 1] with q(alpha) >= target - tol (see the module docstring)."""
  target = target - TARGET_MARGIN
  goal = target - tol
  q_none, q_full = q_of_alpha(0.0), q_of_alpha(1.0)

  def bisect(_):
    def body(_, lohi):
      lo, hi = lohi
      mid = 0.5 * (lo + hi)
      ok = q_of_alpha(mid) >= goal
      return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)
    lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.float32(0.0), jnp.float32(1.0)))
    if not may_cross:
      return lo
    progress = q_of_alpha(lo) < q_none
    if max_cross == float("inf"):
      return jnp.where(progress, lo, hi)
    too_far = q_of_alpha(hi) < target - max_cross
    if release is not None:
      too_far &= ~release
    return jnp.where(progress | too_far, lo, hi)

  already_met = q_none <= target
  crossing = q_full < goal
  alpha = jax.lax.cond(crossing & ~already_met, bisect, lambda _: jnp.float32(1.0), None)
  return jnp.where(already_met, 0.0, alpha)

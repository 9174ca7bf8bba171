"""The proximal step on hand-made latents, measured by a hand counter.

The counter: a channel entry costs 10, a weight 1, independently of each other;
the dense model costs 10 * channels + weights. Critical step fractions: with
l1 = 0 and dead zone 0.05, an entry x is removed by a step of fraction alpha
exactly when |x| <= alpha * 0.05, i.e. alpha >= |x| / 0.05.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from fmp_jax.pruning import criteria
from fmp_jax.pruning.prox import Prox

Z = [0.9, 0.8, 0.03, 0.01]                  # removed at alpha >= 0.6 (0.03), 0.2 (0.01)
U = [0.9, 0.9, 0.9, 0.02, 0.015, 0.005]     # removed at alpha >= 0.4, 0.3, 0.1
DENSE = 10 * len(Z) + len(U)                 # 46


def measure(channels, weights):
  kept_c = sum(jnp.sum(z != 0) for z in channels.values())
  both = 10 * kept_c + (len(U) if weights is None else jnp.sum(weights["l"] != 0))
  conly = 10 * kept_c + len(U)
  return {"total": both / DENSE, "channel": conly / DENSE, "weight": 1.0 - (conly - both) / DENSE}


def prox(criterion="total", **kw):
  args = dict(criterion=criteria.CRITERIA[criterion], measure=measure, eta=0.1, channel_l1=0.0,
              weight_l1=0.0, dead_zone=0.05, keep_at_least={"g": 1}, max_drop=10)
  args.update(kw)
  return Prox(**args)


def half(z=Z, u=U):
  return {"channels": {"g": jnp.asarray(z, jnp.float32)}, "weights": {"l": jnp.asarray(u, jnp.float32)}}


def targets(total=2.0, channel=2.0, weight=2.0):
  return {"total": jnp.float32(total), "channel": jnp.float32(channel), "weight": jnp.float32(weight)}


def test_full_step_soft_thresholds_then_zeroes_the_dead_zone():
  p = prox(channel_l1=1.0, weight_l1=0.5)   # thresholds 0.1 and 0.05 per full step
  out, a_c, a_w = p(half(z=[0.5, -0.3, 0.12, 0.04, -0.2], u=[1.0, 0.06, -0.3, 0.08]),
                    targets(total=0.0), jnp.float32(0.0))
  assert float(a_c) == 1.0 and float(a_w) == 1.0          # nothing to land: full steps
  np.testing.assert_allclose(out["channels"]["g"], [0.4, -0.2, 0.0, 0.0, -0.1], atol=1e-7)
  np.testing.assert_allclose(out["weights"]["l"], [0.95, 0.0, -0.25, 0.0], atol=1e-7)


def test_a_group_keeps_min_channels_unshrunk():
  p = prox(channel_l1=10.0, keep_at_least={"g": 3})        # every entry would go
  out, _, _ = p(half(z=[0.5, -0.3, 0.12, 0.04, -0.2]), targets(total=0.0), jnp.float32(0.0))
  np.testing.assert_allclose(out["channels"]["g"], [0.5, -0.3, 0.0, 0.0, -0.2], atol=0)


def test_one_step_removes_at_most_max_drop_channel_entries_the_smallest_first():
  p = prox(max_drop=2)
  out, a_c, _ = p(half(z=[0.03, 0.01, 0.04, 0.02, 0.9, 0.8], u=[1.0] * 6), targets(total=0.0),
                  jnp.float32(0.0))
  # A full step would remove four; only the two smallest go, the others stay as they were.
  np.testing.assert_allclose(out["channels"]["g"], [0.03, 0.0, 0.04, 0.0, 0.9, 0.8])
  assert float(a_c) == 1.0
  # Equal entries (latents that moved in step) are no way around the cap: the first go.
  out, _, _ = p(half(z=[0.01] * 4 + [0.9, 0.8], u=[1.0] * 6), targets(total=0.0),
                jnp.float32(0.0))
  np.testing.assert_allclose(out["channels"]["g"], [0.0, 0.0, 0.01, 0.01, 0.9, 0.8])
  # Across groups, the cap counts every entry once.
  two = {"channels": {"a": jnp.asarray([0.01, 0.9]), "b": jnp.asarray([0.02, 0.03, 0.9])},
         "weights": {"l": jnp.ones(6)}}
  out, _, _ = prox(max_drop=2, keep_at_least={"a": 1, "b": 1})(two, targets(total=0.0),
                                                                jnp.float32(0.0))
  np.testing.assert_allclose(out["channels"]["a"], [0.0, 0.9])
  np.testing.assert_allclose(out["channels"]["b"], [0.0, 0.03, 0.9])


def test_total_moves_both_kinds_in_order_of_size_and_lands_exactly():
  # Joint step fraction a: costs 46, 45 (u .005), 35 (z .01), 34 (u .015), 33 (u .02),
  # 23 (z .03) as a passes 0.1, 0.2, 0.3, 0.4, 0.6. Target 34: the joint step stops before
  # a = 0.4, where the weights it moves along would cross (a channel step alone could go
  # on to 0.6). Its channels stay; the weights then land on 34 exactly (30 + 4 weights).
  out, a_c, a_w = prox()(half(), targets(total=34 / DENSE), jnp.float32(34 / DENSE))
  assert 0.29 < float(a_c) < 0.4
  np.testing.assert_allclose(out["channels"]["g"], [0.9, 0.8, 0.03, 0.0])
  assert 0.29 < float(a_w) < 0.4
  np.testing.assert_allclose(out["weights"]["l"], [0.9, 0.9, 0.9, 0.02, 0.0, 0.0])
  assert float(measure(out["channels"], out["weights"])["total"]) == pytest.approx(34 / DENSE)


def test_channel_criterion_lands_the_channels_and_the_weights_take_the_smallest_crossing_step():
  # R_C >= 36/46 lets one channel go (z .01). The weights are held by the floor (the total
  # at 36/46, met exactly); no shortened weight step makes progress without crossing, so
  # the smallest crossing step is taken: the one weight of alpha 0.1.
  t = 36 / DENSE
  out, a_c, a_w = prox("channel")(half(), targets(channel=t), jnp.float32(t))
  np.testing.assert_allclose(out["channels"]["g"], [0.9, 0.8, 0.03, 0.0])
  assert 0.19 < float(a_c) < 0.6
  np.testing.assert_allclose(out["weights"]["l"], [0.9, 0.9, 0.9, 0.02, 0.015, 0.0])
  assert 0.09 < float(a_w) < 0.3


def test_weight_criterion_lands_the_weights_after_the_free_channels_step():
  # The channel step comes first, held by the floor (the total at 43/46, weights as
  # proposed): one channel costs 10 > 3, so no shortened step progresses and the smallest
  # crossing one removes z .01. The weights then land R_W >= 43/46: three of them go.
  t = 43 / DENSE
  out, a_c, a_w = prox("weight")(half(), targets(weight=t), jnp.float32(t))
  np.testing.assert_allclose(out["channels"]["g"], [0.9, 0.8, 0.03, 0.0])
  assert 0.19 < float(a_c) < 0.6
  np.testing.assert_allclose(out["weights"]["l"], [0.9, 0.9, 0.9, 0.0, 0.0, 0.0])
  assert float(measure(out["channels"], out["weights"])["weight"]) == pytest.approx(t)


def test_an_entry_whose_removal_would_overshoot_waits_and_cheaper_ones_go():
  # Group a: 20 per entry, group b: 5 per entry, plus 6 weights: dense 66. The smallest
  # entry (a: 0.001) would take R_C from 1 to 46/66, far below the target 56/66; it waits
  # (held back), and b's two smallest go instead, landing on the target exactly.
  cost_of = {"a": 20, "b": 5}
  dense = 20 * 2 + 5 * 4 + 6

  def measure2(channels, weights):
    kept = sum(cost_of[g] * jnp.sum(z != 0) for g, z in channels.items())
    conly = kept + 6
    both = kept + (6 if weights is None else jnp.sum(weights["l"] != 0))
    return {"total": both / dense, "channel": conly / dense,
            "weight": 1.0 - (conly - both) / dense}

  def removal_cost(channels, weights):
    return {g: jnp.full(z.shape, cost_of[g] / dense) for g, z in channels.items()}

  lat = {"channels": {"a": jnp.asarray([0.001, 0.9]), "b": jnp.asarray([0.9, 0.02, 0.03, 0.9])},
         "weights": {"l": jnp.ones(6)}}
  t = 56 / dense
  args = dict(criterion=criteria.CRITERIA["channel"], measure=measure2, eta=0.1,
              channel_l1=0.0, weight_l1=0.0, dead_zone=0.05, keep_at_least={"a": 1, "b": 1},
              max_drop=10, max_cross=0.03)
  out, _, _ = Prox(**args, removal_cost=removal_cost)(lat, targets(channel=t), jnp.float32(t))
  np.testing.assert_allclose(out["channels"]["a"], [0.001, 0.9])
  np.testing.assert_allclose(out["channels"]["b"], [0.9, 0.0, 0.0, 0.9])
  # Without the hold the blocking entry stalls the step: nothing goes (it waits for a
  # crossing within max_cross that never comes).
  out, _, _ = Prox(**args)(lat, targets(channel=t), jnp.float32(t))
  np.testing.assert_allclose(out["channels"]["b"], [0.9, 0.02, 0.03, 0.9])


@pytest.mark.parametrize("weight_l1", [0.0, 0.5])
def test_the_landings_masks_are_those_of_the_step(weight_l1):
  rng = np.random.default_rng(0)
  u = {"l": jnp.asarray(np.where(rng.random(5000) < 0.3, rng.uniform(0, 0.06, 5000),
                                 rng.normal(0, 1, 5000)), jnp.float32).at[:7].set(0.0)}
  p = prox(weight_l1=weight_l1)
  for alpha in (0.0, 1e-6, 0.137, 0.5, 0.93, 1.0):
    a = jnp.float32(alpha)
    want = (np.asarray(p.weights(u, a)["l"]) != 0).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(p.weight_masks(u, a)["l"]), want)


def test_once_the_target_stops_falling_an_entry_that_only_waits_goes_however_far_it_lands():
  # Group a: 20 per entry, b: 5 per entry (at its floor), 6 weights: dense 51. R_C = 1 is
  # above the target 0.9; the only removable entry (a: 0.001) lands at 31/51, 29 points
  # under: more than max_cross, so it waits while the target still falls. Once the target
  # has stopped falling waiting cannot help, and the step takes it.
  cost_of = {"a": 20, "b": 5}
  dense = 20 * 2 + 5 + 6

  def measure2(channels, weights):
    kept = sum(cost_of[g] * jnp.sum(z != 0) for g, z in channels.items())
    return {"total": (kept + 6) / dense, "channel": (kept + 6) / dense, "weight": 1.0}

  def removal_cost(channels, weights):
    return {g: jnp.full(z.shape, cost_of[g] / dense) for g, z in channels.items()}

  lat = {"channels": {"a": jnp.asarray([0.001, 0.9]), "b": jnp.asarray([0.02])},
         "weights": {"l": jnp.ones(6)}}
  p = Prox(criterion=criteria.CRITERIA["channel"], measure=measure2, eta=0.1, channel_l1=0.0,
           weight_l1=0.0, dead_zone=0.05, keep_at_least={"a": 1, "b": 1}, max_drop=10,
           max_cross=0.03, removal_cost=removal_cost)
  run = lambda t, settled: p(lat, targets(channel=t), jnp.float32(t), settled)[0]["channels"]
  waiting = run(0.9, settled=False)
  np.testing.assert_allclose(waiting["a"], [0.001, 0.9])
  taken = run(0.9, settled=True)
  np.testing.assert_allclose(taken["a"], [0.0, 0.9])
  np.testing.assert_allclose(taken["b"], [0.02])          # at its floor: never removable
  # Already under the target: nothing to land, settled or not.
  np.testing.assert_allclose(run(1.01, settled=True)["a"], [0.001, 0.9])


def test_the_hold_is_not_lifted_while_another_entry_can_go():
  # The scene of the held-back test with a settled target: b's entries can still go, so a's
  # overshooting entry keeps waiting.
  cost_of = {"a": 20, "b": 5}
  dense = 20 * 2 + 5 * 4 + 6

  def measure2(channels, weights):
    kept = sum(cost_of[g] * jnp.sum(z != 0) for g, z in channels.items())
    return {"total": (kept + 6) / dense, "channel": (kept + 6) / dense, "weight": 1.0}

  removal_cost = lambda c, w: {g: jnp.full(z.shape, cost_of[g] / dense) for g, z in c.items()}
  lat = {"channels": {"a": jnp.asarray([0.001, 0.9]), "b": jnp.asarray([0.9, 0.02, 0.03, 0.9])},
         "weights": {"l": jnp.ones(6)}}
  t = 56 / dense
  p = Prox(criterion=criteria.CRITERIA["channel"], measure=measure2, eta=0.1, channel_l1=0.0,
           weight_l1=0.0, dead_zone=0.05, keep_at_least={"a": 1, "b": 1}, max_drop=10,
           max_cross=0.03, removal_cost=removal_cost)
  out, _, _ = p(lat, targets(channel=t), jnp.float32(t), True)
  np.testing.assert_allclose(out["channels"]["a"], [0.001, 0.9])
  np.testing.assert_allclose(out["channels"]["b"], [0.9, 0.0, 0.0, 0.9])

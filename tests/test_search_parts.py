"""The search's named pieces, each against values worked out by hand or by the exact counter."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmp_jax
from fmp_jax import Arch
from fmp_jax.pruning import baselines, complexity, cost, criteria, hyper, latents, masks, pace
from fmp_jax.pruning import regularizer
from fmp_jax.pruning.budget import Budget


# --- the proximal operator -------------------------------------------------------------

def test_shrink_soft_thresholds_then_applies_the_dead_zone():
  x = jnp.asarray([0.3, -0.3, 0.104, -0.05, 0.0])
  np.testing.assert_allclose(masks.shrink(x, 0.1, 0.0), [0.2, -0.2, 0.004, 0.0, 0.0], atol=1e-7)
  np.testing.assert_allclose(masks.shrink(x, 0.1, 0.005), [0.2, -0.2, 0.0, 0.0, 0.0], atol=1e-7)


def test_a_group_keeps_its_strongest_entries():
  z = jnp.asarray([0.5, -0.02, 0.3, 0.01, 0.0, -0.4])
  # Everything would go: the 3 largest |z| stay as they were.
  np.testing.assert_allclose(masks.keep_strongest(z, jnp.zeros(6), 3),
                             [0.5, 0.0, 0.3, 0.0, 0.0, -0.4], atol=0)
  # Two entries survive the threshold; the third strongest is put back unshrunk.
  out = masks.prox_channels({"g": z}, 0.35, 0.0, {"g": 3})["g"]
  np.testing.assert_allclose(out, [0.15, 0.0, 0.3, 0.0, 0.0, -0.05], atol=1e-7)
  # With enough survivors the step is plain soft-thresholding.
  np.testing.assert_allclose(masks.prox_channels({"g": z}, 0.1, 0.0, {"g": 2})["g"],
                             [0.4, 0.0, 0.2, 0.0, 0.0, -0.3], atol=1e-7)


def test_expand_repeats_each_entry_over_its_channels():
  out = masks.expand({"g": jnp.asarray([1.0, 0.0, 2.0])}, 4)["g"]
  np.testing.assert_array_equal(out, [1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2])


# --- the hypernetwork ---------------------------------------------------------------------

@pytest.mark.parametrize("gate", ["none", "z"])
def test_hypernetwork_reproduces_a_kernel_at_its_initial_latents(gate):
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
  z_in, z_out = rng.uniform(0.5, 1.5, 4), rng.uniform(0.5, 1.5, 5)
  h = hyper.init_layer(kernel, 6, rng, z_in, z_out, gate)
  out = hyper.generate_kernel(h, jnp.asarray(z_in, jnp.float32), jnp.asarray(z_out, jnp.float32),
                              jnp.ones((3, 3, 4, 5)), gate)
  np.testing.assert_allclose(out, kernel, rtol=1e-4, atol=1e-5)
  # A zero indicator zeroes its weight in both forms; a zero channel entry only under the gate.
  u = jnp.ones((3, 3, 4, 5)).at[0, 1, 2, 3].set(0.0)
  k = hyper.generate_kernel(h, jnp.ones(4), jnp.ones(5).at[2].set(0.0), u, gate)
  assert float(k[0, 1, 2, 3]) == 0.0
  assert np.all(np.asarray(k[..., 2]) == 0.0) == (gate == "z")


def test_z_gate_needs_nonzero_initial_latents():
  with pytest.raises(ValueError, match="non-zero"):
    hyper.init_layer(np.ones((1, 1, 2, 2), np.float32), 4, np.random.default_rng(0),
                     np.array([1.0, 0.0]), np.ones(2), "z")


# --- the latents' optimisers ----------------------------------------------------------------

def test_rms_sgd_divides_each_kind_by_its_gradient_rms():
  tx = latents.optimizer("rms_sgd", lr=0.1)
  params = {"channels": {"a": jnp.ones(2)}, "weights": {"w": jnp.ones(3)}}
  grads = {"channels": {"a": jnp.asarray([3.0, 4.0])}, "weights": {"w": jnp.asarray([1.0, 1.0, 1.0])}}
  updates, _ = tx.update(grads, tx.init(params), params)
  rms_c = np.sqrt((9 + 16) / 2)
  np.testing.assert_allclose(updates["channels"]["a"], [-0.3 / rms_c, -0.4 / rms_c], rtol=1e-6)
  np.testing.assert_allclose(updates["weights"]["w"], [-0.1] * 3, rtol=1e-6)


def test_pruned_entries_stay_pruned():
  out = latents.propose({"z": jnp.asarray([0.0, 0.5])}, {"z": jnp.asarray([0.3, 0.3])})
  np.testing.assert_allclose(out["z"], [0.0, 0.8])


def test_an_entry_pushed_through_zero_stops_in_the_dead_zone():
  x = {"z": jnp.asarray([0.01, 0.001, 0.5, 0.0, -0.02])}
  d = {"z": jnp.asarray([-0.03, -0.03, -0.1, 0.3, 0.01])}
  out = np.asarray(latents.propose(x, d, "stop", 0.005)["z"])
  # 0.01 reaches zero a quarter into its step: 0.005 * 0.25 (position 0: no tie factor);
  # 0.001 already waits in the dead zone: it halves (up to the 1e-3 tie factor of its
  # position); 0.5 and -0.02 do not reach zero; a pruned entry stays pruned.
  np.testing.assert_allclose(out, [0.00125, 0.0005, 0.4, 0.0, -0.01], rtol=1.1e-3)
  assert out[0] == np.float32(0.00125)
  passed = np.asarray(latents.propose(x, d, "pass", 0.005)["z"])
  np.testing.assert_allclose(passed, [-0.02, -0.029, 0.4, 0.0, -0.01], rtol=1e-6)
  # Entries that moved in lockstep arrive apart, in a fixed order.
  same = np.asarray(latents.propose({"z": jnp.full(6, 0.01)}, {"z": jnp.full(6, -0.03)},
                                    "stop", 0.005)["z"])
  assert len(set(same.tolist())) == 6 and np.all((same > 0) & (same <= 0.00125))


def test_randn_init_never_starts_at_zero():
  z = latents.init_channel_vectors({"g": 10_000}, "randn", np.random.default_rng(1))["g"]
  assert np.min(np.abs(z)) >= 1e-3 and abs(float(np.std(z)) - 1.0) < 0.03


# --- the budget term --------------------------------------------------------------------------

def test_straight_through_value_is_the_hard_count_and_gradient_the_marginal_cost():
  arch = Arch(model="edsr", blocks=1, channels=4, scale=2)
  counter = cost.CountCost(arch, "params")
  inner = jnp.asarray([0.7, -0.2, 0.0, 0.4])
  stream = jnp.ones(4)
  channel_only = dataclasses.replace(criteria.CRITERIA["channel"],
                                     terms=criteria.CRITERIA["channel"].terms[:1])

  def term(z):
    st = regularizer.straight_through({"stream": stream, "block_0.inner": z})
    return regularizer.straight_through_term(
        channel_only, lambda c, w: cost.quantities(counter, c, w), (st, None), (None, None),
        {"channel": 2.0}, 0.5)

  value, grad = jax.value_and_grad(term)(inner)
  dense = complexity.count(arch).params
  hard_mask = {"block_0.inner": np.array([1, 1, 0, 1])}
  assert float(value) == pytest.approx(2.0 * complexity.count(arch, hard_mask).params / dense)
  # Removing one inner channel removes its conv_a filter (9*4 + 1 bias) and its
  # conv_b input slice (9*4): 73 params, whatever the other channels do.
  expected = 2.0 * 73 / dense * np.sign(np.asarray(inner))
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_duals_follow_the_schedule():
  duals = {"total": jnp.asarray(1.0)}
  up = regularizer.update_duals(duals, {"total": True}, {"total": False}, 0.1)
  down = regularizer.update_duals(duals, {"total": True}, {"total": True}, 0.1)
  same = regularizer.update_duals(duals, {"total": False}, {"total": False}, 0.1)
  assert float(up["total"]) == pytest.approx(np.exp(0.1))
  assert float(down["total"]) == pytest.approx(np.exp(-0.1))
  assert float(same["total"]) == 1.0


# --- the pace ---------------------------------------------------------------------------------

def test_cubic_schedule_by_hand():
  t = lambda step: float(pace.scheduled_target(0.3, step, 100, 0.1))
  assert t(0) == 1.0 and t(10) == 1.0
  assert t(55) == pytest.approx(0.3 + 0.7 * 0.5 ** 3)
  assert t(100) == pytest.approx(0.3) and t(500) == pytest.approx(0.3)
  assert float(pace.scheduled_target(0.3, 7, 0, 0.1)) == 0.3


def test_landing_takes_the_largest_step_that_does_not_cross():
  q = lambda a: 1.0 - 0.5 * jnp.floor(jnp.asarray(a) * 10) / 10   # falls in steps of 0.05
  alpha = float(pace.landing_alpha(q, 0.8, 0.0, 30))
  assert 0.4 <= alpha < 0.5 and float(q(alpha)) >= 0.8 - 1e-6
  assert float(pace.landing_alpha(q, 0.4, 0.0, 30)) == 1.0      # the full step is fine
  assert float(pace.landing_alpha(q, 1.2, 0.0, 30)) == 0.0      # already met: no step


# --- the baselines ------------------------------------------------------------------------------

def test_uniform_widths_are_the_widest_that_fit():
  arch = Arch(blocks=3, channels=32, esa_channels=16, scale=2)
  budget = Budget(0.3)
  widths = baselines.uniform_widths(arch, budget)
  assert set(widths.values()) == {16}
  dense = complexity.count(arch).flops
  assert complexity.count(arch.with_widths(widths)).flops <= 0.3 * dense
  wider = {g: 17 for g in widths}
  assert complexity.count(arch.with_widths(wider)).flops > 0.3 * dense
  assert set(baselines.uniform_widths(arch, budget, multiple=8).values()) == {16}


def test_l1_norm_keeps_the_largest_filters_summed_over_coupled_layers():
  arch = Arch(model="edsr", blocks=1, channels=4, scale=2)
  params = jax.tree.map(lambda x: np.zeros(x.shape, np.float32), fmp_jax.init_params(arch))
  params["block_0"]["conv_a"]["kernel"][..., 1] = 1.0      # inner channel 1: largest
  params["block_0"]["conv_a"]["kernel"][0, 0, 0, 3] = 5.0  # inner channel 3: 5 < 9*4
  params["head"]["kernel"][..., 2] = 0.1                   # stream: head ...
  params["body_end"]["kernel"][0, 0, 0, 0] = 2.0           # ... and body_end add up
  out = baselines.magnitude_channel_masks(params, arch, {"block_0.inner": 2, "stream": 1})
  np.testing.assert_array_equal(out["block_0.inner"], [0, 1, 0, 1])
  # head's channel 2 (27 * 0.1 = 2.7) beats body_end's channel 0 (2.0).
  np.testing.assert_array_equal(out["stream"], [0, 0, 1, 0])


# --- the budget term of each criterion, by hand ----------------------------------------------
# EDSR-1-4 x2: removing inner channel j of block 0 removes conv_a's filter j (3*3*4 weights
# and a bias) and conv_b's input slice j (3*3*4 weights), at P = 360*640 LR pixels each.
# One conv_a weight of filter 1 is pruned, so with weight masks counted channel 1 holds 71
# weights, without them (R_C) 72. A kept weight indicator of conv_a costs P FLOPs, 1 param.

P = 360 * 640
DUALS = {"total": 0.3, "channel": 0.5, "weight": 0.7}
FREE = 0.5


def budget_term_grads(criterion, metric):
  from fmp_jax.pruning import search, settings as settings_lib, state as state_lib
  arch = Arch(model="edsr", blocks=1, channels=4, scale=2)
  settings = settings_lib.SearchSettings(free_l1_scale=FREE)
  extra = {"channel_keep": 0.7} if "channel_keep" in criteria.CRITERIA[criterion].needs else {}
  budget = Budget(0.5, metric=metric, criterion=criterion, **extra)
  ctx = search.make_step(arch, budget, settings).args[0]
  state = state_lib.init_state(arch, fmp_jax.init_params(arch), settings)
  lat = jax.tree.map(jnp.asarray, state.latents)
  lat["channels"]["block_0.inner"] = jnp.asarray([0.7, -0.2, 0.5, 0.4])
  lat["weights"]["block_0"]["conv_a"] = lat["weights"]["block_0"]["conv_a"].at[0, 0, 0, 1].set(0.0)
  c_hard = state_lib.channel_masks_of(lat, 1)
  duals = {q: jnp.float32(v) for q, v in DUALS.items()}
  grads = jax.grad(lambda l: search.budget_term(ctx, l, c_hard, duals))(lat)
  dense = budget.cost_model(arch).dense()
  return grads, dense


@pytest.mark.parametrize("metric", ["flops", "params"])
@pytest.mark.parametrize("criterion, mu_c, masked_weights, mu_w", [
    ("total", DUALS["total"], True, DUALS["total"]),                     # one term, both kinds
    ("channel", DUALS["channel"], False, FREE * DUALS["channel"]),       # R_C; free weights
    ("weight", FREE * DUALS["weight"], True, DUALS["weight"]),           # R_W; free channels
    ("total_fixed", DUALS["channel"], False, DUALS["weight"]),
])
def test_budget_term_gradients_by_hand(criterion, metric, mu_c, masked_weights, mu_w):
  grads, dense = budget_term_grads(criterion, metric)
  per_weight = P if metric == "flops" else 1
  # Channel 1 (z = -0.2): its weights (71 with the weight masks, 72 without), plus its
  # conv_a bias in params; the gradient is the cost it saves, signed like z.
  weights_of_channel = 71 if masked_weights else 72
  saved = weights_of_channel * per_weight + (1 if metric == "params" else 0)
  g_z = grads["channels"]["block_0.inner"]
  np.testing.assert_allclose(g_z[1], -mu_c * saved / dense, rtol=1e-5)
  g_u = grads["weights"]["block_0"]["conv_a"]
  np.testing.assert_allclose(g_u[1, 1, 2, 3], mu_w * per_weight / dense, rtol=1e-5)
  assert float(g_u[0, 0, 0, 1]) == 0.0          # a pruned indicator feels nothing

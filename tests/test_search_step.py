"""The search step as a whole: its fixed-order variant, and options off the defaults."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmp_jax
from fmp_jax import Arch, Budget
from fmp_jax.pruning import search
from fmp_jax.pruning.settings import SearchSettings
from fmp_jax.pruning.state import channel_masks_of, init_state
from conftest import photo_batches

ARCH = Arch(blocks=2, channels=16, esa_channels=8, scale=2)
SHORT = dict(lr=1e-3, hyper_embed=4, latent_lr=0.03, pace_steps=60)


@pytest.mark.slow
def test_fixed_order_gradients_equal_the_plain_ones():
  """reduction_shards=4 changes the order of the sums, not what is summed: the loss, the
  data term, the budget term and every gradient (the budget term's included) agree."""
  params = fmp_jax.init_params(ARCH, seed=3)
  budget = Budget(0.5)
  plain = search.make_step(ARCH, budget, SearchSettings(**SHORT)).args[0]
  fixed = search.make_step(ARCH, budget, SearchSettings(**SHORT, reduction_shards=4)).args[0]
  state = init_state(ARCH, params, plain.settings)
  # Latents off their start, some pruned, so the budget term's gradient is not uniform.
  lat = jax.tree.map(jnp.asarray, state.latents)
  lat["channels"]["stream"] = jnp.linspace(0.2, 1.3, 16).at[3].set(0.0)
  lat["weights"]["block_0"]["conv_a"] = lat["weights"]["block_0"]["conv_a"].at[0, 1].set(0.0)
  state = state.replace(latents=lat)
  lr, hr = next(photo_batches(batch=8, seed=4))
  c_hard = channel_masks_of(state.latents, 1)
  (v0, g0) = jax.jit(lambda s: search.plain_gradients(plain, s, c_hard, lr, hr))(state)
  (v1, g1) = jax.jit(lambda s: search.fixed_order_gradients(fixed, s, c_hard, lr, hr))(state)
  np.testing.assert_allclose(v1, v0, rtol=1e-6)                  # loss, data term, budget term
  assert float(v0[2]) > 0
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-7), g1, g0)
  # The budget term's own gradient is a visible part of the latents' gradient.
  g_reg = jax.grad(lambda l: search.budget_term(plain, l, c_hard, state.duals))(state.latents)
  assert float(jnp.max(jnp.abs(g_reg["channels"]["stream"]))) > 1e-3
  # And the whole step: same new state.
  b = search.budget_arrays(budget)
  s0, m0 = jax.jit(search.make_step(ARCH, budget, plain.settings))(state, b, lr, hr)
  s1, m1 = jax.jit(search.make_step(ARCH, budget, fixed.settings))(state, b, lr, hr)
  np.testing.assert_allclose(m1["loss"], m0["loss"], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               s1.latents, s0.latents)


@pytest.mark.parametrize("options", [
    dict(weight_update="penalty", weight_l1=0.3),
    dict(budget_reg="off", channel_l1=0.5, weight_l1=0.5),
    dict(gate="none", latent_init="randn"),
    dict(channel_l1=0.3, weight_l1=0.3),
], ids=["penalty", "budget_reg_off", "gate_none_randn", "l1"])
def test_search_options_off_the_defaults_land_the_budget(options):
  result = fmp_jax.prune(fmp_jax.init_params(ARCH, seed=0), Budget(0.5), arch=ARCH,
                         data=photo_batches(batch=2, seed=5), steps=400,
                         config=dict(SHORT, batch_size=2, **options))
  r = result.report
  assert r["converged"], r
  assert 0.5 - 0.03 <= r["flops_ratio"] <= 0.5, r
  if options.get("budget_reg") == "off":
    assert all(h["budget_reg"] == 0.0 for h in result.history)
  else:
    assert any(h["budget_reg"] > 0.0 for h in result.history)


def test_the_search_removes_the_channels_the_loss_does_not_need_first():
  """Half the inner channels of a briefly trained ESRB-2-16 are made useless (their conv_a
  filter, bias and conv_b input slice zero: no gradient ever reaches them). Under criterion
  Channel (weights left alone) the search must take those first, and zeroing what it took
  must cost the trained network less loss than zeroing as many channels it kept."""
  from fmp_jax import data
  from fmp_jax.models import MASKS, build_model
  arch = ARCH
  params = fmp_jax.finetune(fmp_jax.init_params(arch, seed=0), arch, None,
                            data.bundled_patches(2, 32, 8, seed=5), 300, lr=2e-3)
  params = jax.tree.map(np.array, params)
  useless = np.arange(1, 16, 2)
  for b in ("block_0", "block_1"):
    params[b]["conv_a"]["kernel"][..., useless] = 0.0
    params[b]["conv_a"]["bias"][useless] = 0.0
    params[b]["conv_b"]["kernel"][:, :, useless, :] = 0.0
  removed = []

  def on_step(step, metrics, state):
    del metrics
    z = jax.device_get(state.latents["channels"])
    for g in ("block_0.inner", "block_1.inner"):
      for j in np.flatnonzero(np.asarray(z[g]) == 0):
        if (g, j) not in removed:
          removed.append((g, int(j)))

  settings = SearchSettings(lr=1e-3, hyper_embed=4, latent_lr=0.03, pace_steps=150,
                            free_l1_scale=0.0)
  search.run_search(arch, init_state(arch, params, settings), Budget(0.6, criterion="channel"),
                    settings, iter(data.bundled_patches(2, 24, 2, seed=0)), 400, on_step=on_step)
  first = removed[:8]
  assert sum(j in useless for _, j in first) >= 7, removed
  # Zeroing what the search took vs as many channels it kept, in the trained network.
  model = build_model(arch)
  lr, hr = data.bundled_patches(2, 32, 16, seed=99).batch(0)
  loss = lambda m: float(jnp.mean(jnp.abs(
      model.apply({"params": params, MASKS: {"channels": m}}, jnp.asarray(lr)) - hr)))
  full = {g: np.ones(arch.width(g), np.float32) for g in arch.prunable_groups()}

  def without(channels):
    m = {g: v.copy() for g, v in full.items()}
    for g, j in channels:
      m[g][j] = 0.0
    return loss(m)

  taken = without(first)
  kept = [(g, j) for g in ("block_0.inner", "block_1.inner") for j in range(16)
          if (g, j) not in removed]
  rng = np.random.default_rng(0)
  for _ in range(5):
    draw = [kept[i] for i in rng.choice(len(kept), len(first), replace=False)]
    assert taken < without(draw)

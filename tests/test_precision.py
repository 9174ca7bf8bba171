"""bfloat16 compute: params and optimiser state stay float32, results stay close to float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmp_jax
from fmp_jax import finetuning
from fmp_jax.inference import Upscaler
from fmp_jax.pruning import search

ARCH = fmp_jax.Arch(blocks=1, channels=8, esa_channels=4, scale=2)


def batch(seed=0):
  rng = np.random.default_rng(seed)
  hr = rng.random((2, 32, 32, 3), np.float32)
  return hr[:, ::2, ::2].copy(), hr


def test_bf16_search_step_keeps_float32_state_and_tracks_float32():
  params = fmp_jax.init_params(ARCH)
  settings = search.SearchSettings(lr=1e-3)
  b = search.budget_arrays(fmp_jax.Budget(0.5))
  lr, hr = batch()
  out = {}
  for precision in ("float32", "bfloat16"):
    step = jax.jit(search.make_step(ARCH, "total", settings, precision=precision))
    state, metrics = step(search.init_state(ARCH, params, settings), b, lr, hr)
    assert {x.dtype for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)} \
        == {jnp.dtype(jnp.float32)}
    out[precision] = float(metrics["l1"])
  # bf16 has an 8-bit mantissa: the loss agrees to about 1 % (a float32 bug would not).
  assert out["bfloat16"] != out["float32"]
  np.testing.assert_allclose(out["bfloat16"], out["float32"], rtol=2e-2)


def test_bf16_finetune_step_and_upscaler():
  params = fmp_jax.init_params(ARCH)
  tx = finetuning.make_optimizer(1e-3)
  lr, hr = batch(1)
  losses = {}
  for precision in ("float32", "bfloat16"):
    step = jax.jit(finetuning.make_step(ARCH, tx, precision=precision))
    state, metrics = step(finetuning.init_state(params, tx), {}, lr, hr)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    losses[precision] = float(metrics["loss"])
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=2e-2)
  img = np.random.default_rng(2).random((20, 24, 3), np.float32)
  a = Upscaler(params, ARCH, tile=None).forward(img[None])
  b = Upscaler(params, ARCH, tile=None, precision="bfloat16").forward(img[None])
  assert b.dtype == jnp.float32 and not np.array_equal(a, b)
  np.testing.assert_allclose(b, a, atol=3e-2)


def test_unknown_precision_is_refused():
  with pytest.raises(ValueError, match="precision='fp8' is unknown"):
    search.make_step(ARCH, "total", search.SearchSettings(), precision="fp8")

"""bfloat16 compute: params and optimiser state stay float32, results stay close to float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmp_jax
from fmp_jax import finetuning
from fmp_jax.inference import Upscaler
from fmp_jax.pruning import search
from fmp_jax.pruning.settings import SearchSettings
from fmp_jax.pruning.state import init_state

ARCH = fmp_jax.Arch(blocks=1, channels=8, esa_channels=4, scale=2)


def batch(seed=0):
  rng = np.random.default_rng(seed)
  hr = rng.random((2, 32, 32, 3), np.float32)
  return hr[:, ::2, ::2].copy(), hr


def test_bf16_search_step_keeps_float32_state_and_tracks_float32():
  params = fmp_jax.init_params(ARCH)
  settings = SearchSettings(lr=1e-3)
  b = search.budget_arrays(fmp_jax.Budget(0.5))
  lr, hr = batch()
  out = {}
  for precision in ("float32", "bfloat16"):
    step = jax.jit(search.make_step(ARCH, fmp_jax.Budget(0.5), settings, precision=precision))
    state, metrics = step(init_state(ARCH, params, settings), b, lr, hr)
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


def conv_operand_dtypes(fn, *args) -> set:
  """Dtypes of the operands of every conv_general_dilated in fn's jaxpr, sub-jaxprs included
  (the forward pass, its transposes in the backward pass, jit/scan/cond bodies)."""
  found = set()

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        found.update(str(v.aval.dtype) for v in eqn.invars)
      for value in eqn.params.values():
        for sub in (value if isinstance(value, (list, tuple)) else [value]):
          if isinstance(sub, jax.extend.core.ClosedJaxpr):
            walk(sub.jaxpr)
          elif isinstance(sub, jax.extend.core.Jaxpr):
            walk(sub)
  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


@pytest.mark.parametrize("precision, dtype", [("bfloat16", "bfloat16"), ("float32", "float32")])
def test_every_convolution_runs_in_the_compute_dtype(precision, dtype):
  """The search step, the fine-tune step and Upscaler convolve in `precision` (forward and
  backward): a cast back to float32 anywhere before a conv shows up here."""
  params = fmp_jax.init_params(ARCH)
  lr, hr = batch()
  settings = SearchSettings(lr=1e-3)
  search_step = search.make_step(ARCH, fmp_jax.Budget(0.5), settings, precision=precision)
  assert conv_operand_dtypes(search_step, init_state(ARCH, params, settings),
                             search.budget_arrays(fmp_jax.Budget(0.5)), lr, hr) == {dtype}
  tx = finetuning.make_optimizer(1e-3)
  tune_step = finetuning.make_step(ARCH, tx, precision=precision)
  assert conv_operand_dtypes(tune_step, finetuning.init_state(params, tx), {}, lr, hr) == {dtype}
  # Upscaler with the fast paths off runs every conv as a convolution; with them, the 3x3s.
  for fast in (False, True):
    up = Upscaler(params, ARCH, tile=None, precision=precision, fast_paths=fast)
    assert conv_operand_dtypes(up._fn, up.params, lr) == {dtype}


def test_unknown_precision_is_refused():
  with pytest.raises(ValueError, match="precision='fp8' is unknown"):
    search.make_step(ARCH, fmp_jax.Budget(0.5), SearchSettings(), precision="fp8")

"""Layout-independent gradient sums: 1, 2 and 4 devices give bit-identical values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from fmp_jax import Arch, init_params, reduction, sharding
from fmp_jax.models import build_model

ARCH = Arch(blocks=1, channels=8, esa_channels=4, scale=2)


def loss_and_grads(devices, shards, params, lr, hr):
  model = build_model(ARCH)

  def fn(p, lr, hr):
    return jnp.mean(jnp.abs(model.apply({"params": p}, lr) - hr)), None
  mesh = jax.make_mesh((devices,), ("data",), devices=jax.devices()[:devices],
                       axis_types=(jax.sharding.AxisType.Auto,))
  rep, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  if shards:
    g = reduction.sharded_value_and_grad(fn, shards, mesh)
  else:
    g = jax.value_and_grad(fn, has_aux=True)
  f = jax.jit(g, in_shardings=(rep, rows, rows), out_shardings=rep)
  (value, _), grads = f(params, jax.device_put(lr, rows), jax.device_put(hr, rows))
  return jax.device_get(value), jax.device_get(grads)


def test_any_device_count_gives_the_same_bits_and_the_plain_mean():
  assert jax.device_count() >= 4
  rng = np.random.default_rng(0)
  lr = rng.random((8, 16, 16, 3), np.float32)
  hr = rng.random((8, 32, 32, 3), np.float32)
  params = init_params(ARCH, seed=1)
  ref_value, ref_grads = loss_and_grads(1, 4, params, lr, hr)
  for devices in (2, 4):
    value, grads = loss_and_grads(devices, 4, params, lr, hr)
    assert value == ref_value
    jax.tree.map(np.testing.assert_array_equal, grads, ref_grads)
  # The same quantity as the ordinary batch mean, up to rounding.
  plain_value, plain_grads = jax.value_and_grad(
      lambda p: jnp.mean(jnp.abs(build_model(ARCH).apply({"params": p}, lr) - hr)))(params)
  np.testing.assert_allclose(ref_value, plain_value, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
               ref_grads, plain_grads)


def test_pairwise_sum_is_the_fixed_tree():
  x = np.array([1e8, 1.0, -1e8, 1.0], np.float32)
  # ((1e8 + 1) + (-1e8 + 1)) in float32: 1e8 + 1 rounds to 1e8, so the tree gives 0.
  assert float(reduction.pairwise_sum(jnp.asarray(x))) == float(
      (np.float32(1e8) + np.float32(1.0)) + (np.float32(-1e8) + np.float32(1.0)))


@pytest.mark.parametrize("shards, batch, devices, ok", [
    (0, 6, 2, True), (4, 8, 2, True), (3, 6, 1, False), (4, 6, 2, False), (2, 8, 4, False)])
def test_reduction_shards_are_checked(shards, batch, devices, ok):
  mesh = jax.make_mesh((devices,), ("data",), devices=jax.devices()[:devices],
                       axis_types=(jax.sharding.AxisType.Auto,))
  if ok:
    sharding.check_reduction_shards(shards, batch, mesh, "search")
  else:
    with pytest.raises(ValueError, match=f"search.reduction_shards={shards} must be a power of two"):
      sharding.check_reduction_shards(shards, batch, mesh, "search")

"""Data parallelism on 8 forced CPU devices: the sharded finetune step equals the single-device one."""

import jax
import numpy as np

import fmp_jax
from fmp_jax import finetuning, sharding
from conftest import photo_batches


def test_mesh_spans_all_devices():
  mesh = sharding.make_mesh()
  assert mesh.devices.size == jax.device_count() == 8


def test_global_batch_and_replicated_placement():
  mesh = sharding.make_mesh()
  x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
  (g,) = sharding.global_batch(mesh, x)
  assert g.shape == (8, 3) and len(g.sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(g), x)
  r = sharding.put_replicated({"a": x}, mesh)["a"]
  assert r.sharding.is_fully_replicated
  np.testing.assert_array_equal(np.asarray(r), x)


def test_sharded_finetune_step_matches_single_device():
  arch = fmp_jax.Arch(blocks=2, channels=16, esa_channels=8, scale=2,
                      widths={"stream": 11, "block_0.inner": 5})
  params = fmp_jax.init_params(arch, seed=2)
  tx = finetuning.make_optimizer(1e-3)
  step = finetuning.make_step(arch, tx)
  lr, hr = next(photo_batches(batch=8, seed=3))
  single_state, single = jax.jit(step)(finetuning.init_state(params, tx), {}, lr, hr)

  mesh = sharding.make_mesh()
  rep, bat = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  sharded = jax.jit(step, in_shardings=(rep, rep, bat, bat), out_shardings=(rep, rep),
                    donate_argnums=0)
  state = jax.jit(lambda p: finetuning.init_state(p, tx), out_shardings=rep)(
      sharding.put_replicated(params, mesh))
  lr_g, hr_g = sharding.global_batch(mesh, np.asarray(lr), np.asarray(hr))
  multi_state, multi = sharded(state, {}, lr_g, hr_g)
  np.testing.assert_allclose(multi["loss"], single["loss"], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               single_state.params, multi_state.params)

"""Backbones: shapes, mask semantics, and pruned widths == masked full model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmp_jax
from fmp_jax.arch import Arch
from fmp_jax.models import pixel_shuffle
from fmp_jax.pruning import complexity


def lr_batch(seed=0, n=2, h=17, w=19):
  return jax.random.uniform(jax.random.key(seed), (n, h, w, 3))


@pytest.mark.parametrize("model", ["esrb", "edsr"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape(model, scale):
  arch = Arch(model=model, blocks=1, channels=8, esa_channels=4, scale=scale)
  params = fmp_jax.init_params(arch)
  out = fmp_jax.apply(params, arch, lr_batch())
  assert out.shape == (2, 17 * scale, 19 * scale, 3)
  assert np.isfinite(np.asarray(out)).all()


def test_full_size_shapes_without_weights():
  for scale in (2, 3, 4):
    arch = Arch(scale=scale)
    model = fmp_jax.build_model(arch)
    params = fmp_jax.models.abstract_params(arch)
    out = jax.eval_shape(lambda p, x: model.apply({"params": p}, x), params,
                         jax.ShapeDtypeStruct((1, 48, 48, 3), jnp.float32))
    assert out.shape == (1, 48 * scale, 48 * scale, 3)


def test_pixel_shuffle_matches_pytorch_order():
  # PyTorch: out[c, h*r+i, w*r+j] = in[c*r*r + i*r + j, h, w]
  r, c, h, w = 2, 3, 2, 5
  x = np.arange(1 * h * w * c * r * r, dtype=np.float32).reshape(1, h, w, c * r * r)
  y = np.asarray(pixel_shuffle(jnp.asarray(x), r))
  for ch in range(c):
    for i in range(r):
      for j in range(r):
        np.testing.assert_array_equal(y[0, i::r, j::r, ch], x[0, :, :, ch * r * r + i * r + j])


def ones_masks(arch):
  channels = {g: jnp.ones(arch.width(g)) for g in arch.prunable_groups()}
  weights = {l.name: jnp.ones(l.kernel) for l in complexity.layer_table(arch, (24, 24))}
  return {"channels": channels, **complexity.nest_weight_masks(weights)}


@pytest.mark.parametrize("model", ["esrb", "edsr"])
def test_all_ones_masks_equal_dense(model):
  arch = Arch(model=model, blocks=2, channels=8, esa_channels=4, scale=2)
  params = fmp_jax.init_params(arch, seed=1)
  x = lr_batch()
  np.testing.assert_array_equal(fmp_jax.apply(params, arch, x),
                                fmp_jax.apply(params, arch, x, masks=ones_masks(arch)))


@pytest.mark.parametrize("model", ["esrb", "edsr"])
def test_zeroing_an_inner_channel_removes_only_its_contribution(model):
  """Masking conv_a's channel j == deleting channel j's path into conv_b by hand."""
  arch = Arch(model=model, blocks=2, channels=8, esa_channels=4, scale=2)
  params = fmp_jax.init_params(arch, seed=2)
  x = lr_batch()
  j = 5
  mask = jnp.ones(8).at[j].set(0.0)
  masked = fmp_jax.apply(params, arch, x, masks={"channels": {"block_1.inner": mask}})
  cut = jax.tree.map(lambda a: a, params)
  cut["block_1"]["conv_b"]["kernel"] = cut["block_1"]["conv_b"]["kernel"].at[:, :, j, :].set(0)
  np.testing.assert_allclose(masked, fmp_jax.apply(cut, arch, x), atol=1e-6)
  assert not np.allclose(masked, fmp_jax.apply(params, arch, x), atol=1e-4)


def test_weight_mask_zeroes_that_weight():
  arch = Arch(model="edsr", blocks=1, channels=8, scale=2)
  params = fmp_jax.init_params(arch, seed=3)
  x = lr_batch()
  w = jnp.ones((3, 3, 8, 8)).at[1, 2, 3, 4].set(0.0)
  masked = fmp_jax.apply(params, arch, x, masks={"block_0": {"conv_a": {"weight": w}}})
  cut = jax.tree.map(lambda a: a, params)
  cut["block_0"]["conv_a"]["kernel"] = cut["block_0"]["conv_a"]["kernel"].at[1, 2, 3, 4].set(0)
  np.testing.assert_allclose(masked, fmp_jax.apply(cut, arch, x), atol=1e-6)


def slice_by_hand(params, arch, keep):
  """Builds smaller params by indexing kernels/biases with each group's kept channels."""
  out = jax.tree.map(lambda a: a, params)
  for layer in complexity.layer_table(arch, (24, 24)):
    node = out
    for part in layer.path:
      node = node[part]
    kernel, bias = node["kernel"], node["bias"]
    if layer.in_group in keep:
      kernel = kernel[:, :, keep[layer.in_group], :]
    if layer.out_group in keep:
      kernel = kernel[:, :, :, keep[layer.out_group]]
      bias = bias[keep[layer.out_group]]
    node["kernel"], node["bias"] = kernel, bias
  return out


@pytest.mark.parametrize("model", ["esrb", "edsr"])
def test_smaller_widths_equal_masked_full_model(model):
  arch = Arch(model=model, blocks=2, channels=8, esa_channels=4, scale=2, prune_esa=True)
  params = fmp_jax.init_params(arch, seed=4)
  keep = {"stream": np.array([0, 2, 3, 6]), "block_0.inner": np.array([1, 7]),
          "block_1.inner": np.arange(8)}
  if model == "esrb":
    keep["block_1.esa"] = np.array([0, 3])
  channel_masks = {g: jnp.zeros(8 if "esa" not in g else 4).at[idx].set(1.0)
                   for g, idx in keep.items()}
  x = lr_batch(n=1, h=20, w=18)
  masked = fmp_jax.apply(params, arch, x, masks={"channels": channel_masks})
  small_arch = arch.with_widths({g: len(idx) for g, idx in keep.items()})
  small = slice_by_hand(params, arch, keep)
  assert complexity.param_count(small) == complexity.count(small_arch).params
  np.testing.assert_allclose(fmp_jax.apply(small, small_arch, x), masked, atol=1e-5)


def test_too_small_input_is_a_clear_error():
  arch = Arch(blocks=1, channels=8, esa_channels=4)
  with pytest.raises(ValueError, match="15x15"):
    fmp_jax.apply(fmp_jax.init_params(arch), arch, jnp.zeros((1, 10, 10, 3)))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_upsampler_pruned_with_the_stream(scale):
  """The upsampler conv keeps the r*r outputs of each kept stream channel (DHP's
  --prune_upsampler); the sliced model equals the masked full-width one."""
  arch = Arch(model="edsr", blocks=1, channels=6, scale=scale, prune_upsampler=True)
  params = fmp_jax.init_params(arch, seed=5)
  stream = np.array([1, 4, 5])
  keep = {"stream": stream, "block_0.inner": np.array([0, 2, 3, 5])}
  rates = {2: (2,), 3: (3,), 4: (2, 2)}[scale]
  for j, r in enumerate(rates):   # pixel shuffle reads conv channel c*r*r + k into channel c
    keep[f"upsample_{j}"] = np.array([c * r * r + k for c in stream for k in range(r * r)])
    keep[f"upsample_{j}.shuffled"] = stream
  small = slice_by_hand(params, arch, keep)
  small_arch = arch.with_widths({"stream": 3, "block_0.inner": 4})
  x = lr_batch(n=1, h=9, w=7)
  masks = {g: jnp.zeros(6).at[keep[g]].set(1.0) for g in ("stream", "block_0.inner")}
  masked = fmp_jax.apply(params, arch, x, masks={"channels": masks})
  np.testing.assert_allclose(fmp_jax.apply(small, small_arch, x), masked, atol=1e-5)
  from fmp_jax.pruning import surgery
  sliced, sliced_arch, _ = surgery.slice_model(arch, params, masks)
  assert sliced_arch == small_arch
  jax.tree.map(np.testing.assert_array_equal, sliced, small)

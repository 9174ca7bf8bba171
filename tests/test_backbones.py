"""A new backbone is one registered entry: the rest of the package builds, counts, prunes
and tiles it without a branch on its name."""

import flax.linen as nn
import jax
import numpy as np
import pytest

import fmp_jax
from fmp_jax import Arch, ArchError, inference
from fmp_jax.arch import BACKBONES, Backbone, Group, register_backbone
from fmp_jax.models.layers import conv_factory, pixel_shuffle, read_channel_masks
from fmp_jax.pruning import complexity


class Plain(nn.Module):
  """head -> B x [conv_a, ReLU, conv_b, + input] -> conv to 3 s^2 -> shuffle."""
  arch: Arch

  @nn.compact
  def __call__(self, lr):
    masks = read_channel_masks(self)
    conv = conv_factory(self.arch, masks)
    y = conv("head", "rgb_in", "stream")(lr)
    for i in range(self.arch.blocks):
      y = y + conv(f"conv_b{i}", f"block_{i}.inner", "stream")(
          nn.relu(conv(f"conv_a{i}", "stream", f"block_{i}.inner")(y)))
    return pixel_shuffle(conv("upsample", "stream", "upsample")(y), self.arch.scale)


@pytest.fixture
def plain():
  backbone = register_backbone(Backbone(
      name="plain", module=Plain,
      groups=lambda a: [Group(f"block_{i}.inner", a.channels, True) for i in range(a.blocks)]
      + [Group("upsample", 3 * a.scale ** 2, False)],
      receptive_radius=lambda a: 2 * a.blocks + 2))
  yield backbone
  del BACKBONES["plain"]


def test_a_registered_backbone_is_built_counted_and_tiled(plain):
  arch = Arch(model="plain", blocks=2, channels=8, scale=2)
  assert arch.backbone is plain
  assert arch.prunable_groups() == ["stream", "block_0.inner", "block_1.inner"]
  params = fmp_jax.init_params(arch, seed=0)
  lr = np.random.default_rng(0).random((1, 16, 20, 3), np.float32)
  assert fmp_jax.apply(params, arch, lr).shape == (1, 32, 40, 3)
  # Params by hand: head 3*3*3*8+8, per block 2 * (3*3*8*8+8), upsample 3*3*8*12+12.
  assert complexity.count(arch).params == 224 + 2 * 1168 + 876
  assert inference.receptive_radius(arch) == 6 and inference.default_overlap(arch) == 8
  # Pruned widths slice and pad through the same layer table.
  small = arch.with_widths({"stream": 5, "block_0.inner": 3})
  padded, wide = inference.pad_channels(fmp_jax.init_params(small), small, 8)
  assert wide.width("stream") == 8 and wide.width("block_0.inner") == 8
  assert jax.tree.map(np.shape, padded) == jax.tree.map(np.shape, params)


def test_an_unregistered_backbone_or_a_foreign_option_is_refused():
  with pytest.raises(ArchError, match="'plain' is unknown; use one of \\('edsr', 'esrb'\\)"):
    Arch(model="plain")
  with pytest.raises(ArchError, match="applies to EDSR only"):
    Arch(model="esrb", prune_upsampler=True)

"""EDSR-B-C baseline (Lim et al. 2017), used in FMP's ablation as EDSR-8-128.

mean shift -> head conv -> B blocks [conv_a, ReLU, conv_b, + input] ->
body_end conv + head output -> upsampler (conv to r*r*C + shuffle, once for
x2/x3, twice x2 for x4) -> tail conv to 3 at HR -> add mean back.
Input: LR image, NHWC, values in [0, arch.rgb_range]. Output: HR image, NHWC.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from fmp_jax.arch import Arch, edsr_upsample_factors
from fmp_jax.models.layers import conv_factory, pixel_shuffle, read_channel_masks

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class EDSRBlock(nn.Module):
  arch: Arch
  block: int

  @nn.compact
  def __call__(self, x, channel_masks):
    conv = conv_factory(self.arch, channel_masks)
    r = nn.relu(conv("conv_a", "stream", f"block_{self.block}.inner")(x))
    return conv("conv_b", f"block_{self.block}.inner", "stream")(r) + x


class EDSR(nn.Module):
  arch: Arch

  @nn.compact
  def __call__(self, lr: jax.Array) -> jax.Array:
    arch = self.arch
    # The upsampler's masks follow the stream's when it is pruned with it.
    channel_masks = arch.expand_tied(read_channel_masks(self), jnp)
    conv = conv_factory(arch, channel_masks)
    mean = jnp.asarray(DIV2K_RGB_MEAN, lr.dtype) * arch.rgb_range
    head = conv("head", "rgb_in", "stream")(lr - mean)
    y = head
    for i in range(arch.blocks):
      y = EDSRBlock(arch, i, name=f"block_{i}")(y, channel_masks)
    y = conv("body_end", "stream", "stream")(y) + head
    group = "stream"
    for j, r in enumerate(edsr_upsample_factors(arch.scale)):
      y = pixel_shuffle(conv(f"upsample_{j}", group, f"upsample_{j}")(y), r)
      group = f"upsample_{j}.shuffled"
    return conv("tail", group, "rgb_out")(y) + mean

"""ESRB-B-C, the efficient SR baseline that FMP prunes (FMP.md section 1).

head conv -> B blocks [conv_a, LeakyReLU(0.05), conv_b, + block input,
conv 1x1, ESA] -> body_end conv + head output -> conv to 3*s*s -> pixel shuffle.
Input: LR image, NHWC, values in [0, arch.rgb_range]. Output: HR image, NHWC.
ESA's strided branch needs an LR input of at least 15x15 pixels.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from fmp_jax.arch import Arch
from fmp_jax.models.layers import conv_factory, pixel_shuffle, read_channel_masks

LEAKY_SLOPE = 0.05


class ESA(nn.Module):
  """Simplified enhanced spatial attention (RLFN): gates the stream x by a mask."""
  arch: Arch
  block: int

  @nn.compact
  def __call__(self, x, channel_masks):
    g = f"block_{self.block}.esa"
    conv = conv_factory(self.arch, channel_masks)
    c1 = conv("reduce", "stream", g, k=1)(x)
    cf = conv("cross", g, g, k=1)(c1)
    d = conv("down", g, g, k=3, strides=2, padding="VALID")(c1)
    if min(d.shape[1:3]) < 7:
      raise ValueError(
          f"ESRB's ESA needs an LR input of at least 15x15 pixels; got {x.shape[1]}x{x.shape[2]}.")
    p = nn.max_pool(d, (7, 7), strides=(3, 3), padding="VALID")
    c3 = conv("mid", g, g, k=3)(p)
    n, h, w, _ = x.shape
    u = jax.image.resize(c3, (n, h, w, c3.shape[-1]), method="bilinear")
    # No output mask: pruned stream channels of x are already zero, so x * m is too.
    m = jax.nn.sigmoid(conv("expand", g, "stream", k=1, mask_output=False)(u + cf))
    return x * m


class ESRBBlock(nn.Module):
  arch: Arch
  block: int

  @nn.compact
  def __call__(self, x, channel_masks):
    conv = conv_factory(self.arch, channel_masks)
    inner = f"block_{self.block}.inner"
    r = nn.leaky_relu(conv("conv_a", "stream", inner)(x), LEAKY_SLOPE)
    r = conv("conv_b", inner, "stream")(r) + x
    r = conv("conv_1x1", "stream", "stream", k=1)(r)
    return ESA(self.arch, self.block, name="esa")(r, channel_masks)


class ESRB(nn.Module):
  arch: Arch

  @nn.compact
  def __call__(self, lr: jax.Array) -> jax.Array:
    arch = self.arch
    channel_masks = read_channel_masks(self)
    conv = conv_factory(arch, channel_masks)
    head = conv("head", "rgb_in", "stream")(lr)
    y = head
    for i in range(arch.blocks):
      y = ESRBBlock(arch, i, name=f"block_{i}")(y, channel_masks)
    y = conv("body_end", "stream", "stream")(y) + head
    y = conv("upsample", "stream", "upsample")(y)
    return pixel_shuffle(y, arch.scale)

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

from fmp_jax.arch import Arch, Backbone, Group, register_backbone
from fmp_jax.models.layers import conv_factory, pixel_shuffle, read_channel_masks

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def upsample_factors(scale: int) -> tuple[int, ...]:
  """EDSR's upsampler: one x2 or x3 stage, or two x2 stages for x4."""
  return {2: (2,), 3: (3,), 4: (2, 2)}[scale]


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
    for j, r in enumerate(upsample_factors(arch.scale)):
      y = pixel_shuffle(conv(f"upsample_{j}", group, f"upsample_{j}")(y), r)
      group = f"upsample_{j}.shuffled"
    return conv("tail", group, "rgb_out")(y) + mean


def _groups(arch: Arch) -> list[Group]:
  c = arch.channels
  groups = [Group(f"block_{i}.inner", c, True) for i in range(arch.blocks)]
  # Tied to the stream under prune_upsampler (DHP's --prune_upsampler): see `fmp_jax.arch`.
  tie = "stream" if arch.prune_upsampler else None
  for j, r in enumerate(upsample_factors(arch.scale)):
    groups += [Group(f"upsample_{j}", r * r * c, False, tie, r * r),
               Group(f"upsample_{j}.shuffled", c, False, tie, 1)]
  return groups


def _receptive_radius(arch: Arch) -> int:
  # Head + 2 per block + body_end + the upsampler's convs (each at LR or a finer grid: 1 px
  # there is <= 1 LR px) + the tail at HR (<= 1 LR px).
  return 1 + 2 * arch.blocks + 1 + len(upsample_factors(arch.scale)) + 1


BACKBONE = register_backbone(Backbone(
    name="edsr", module=EDSR, groups=_groups, receptive_radius=_receptive_radius,
    min_lr_side=1, prunable_upsampler=True))

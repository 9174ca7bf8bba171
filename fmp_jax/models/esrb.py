"""ESRB-B-C, the efficient SR baseline that FMP prunes (FMP.md section 1).

head conv -> B blocks [conv_a, LeakyReLU(0.05), conv_b, + block input,
conv 1x1, ESA] -> body_end conv + head output -> conv to 3*s*s -> pixel shuffle.
Input: LR image, NHWC, values in [0, arch.rgb_range]. Output: HR image, NHWC.
ESA's strided branch needs an LR input of at least 15x15 pixels.

A block's dataflow is written once, in `block_forward`, over a set of ops:
the Flax module runs it with its (masked) convolutions (`ESRBBlock`), and
`fmp_jax.inference.Upscaler` runs it with `FastBlockOps` on the block's
param arrays, where the 1x1 conv and ESA's reduction share one matmul.
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from fmp_jax.arch import Arch, Backbone, Group, register_backbone
from fmp_jax.models.layers import (MaskedConv, apply_conv, conv_factory, pixel_shuffle,
                                   read_channel_masks)

LEAKY_SLOPE = 0.05
ESA_MIN_POOLED = 7   # ESA's 7x7 max pool needs its strided conv's output at least this large


def block_forward(x: jax.Array, ops) -> jax.Array:
  """One ESRB block: the one definition the module and the fast inference path share.

  ops provides the block's layers: ``conv_a``, ``conv_b``, ESA's ``cross``,
  ``down`` (3x3, stride 2, VALID), ``mid`` and ``expand`` as callables x -> y;
  ``stream_and_reduce(h) -> (y, c1)``: the 1x1 conv's output y and ESA's
  reduction c1 of it; ``gate(y, m)``: y gated by ESA's mask m.
  """
  r = nn.leaky_relu(ops.conv_a(x), LEAKY_SLOPE)
  h = ops.conv_b(r) + x
  y, c1 = ops.stream_and_reduce(h)
  # ESA (RLFN's simplified enhanced spatial attention): a mask for the stream.
  cf = ops.cross(c1)
  d = ops.down(c1)
  if min(d.shape[1:3]) < ESA_MIN_POOLED:
    raise ValueError(
        f"ESRB's ESA needs an LR input of at least 15x15 pixels; got {x.shape[1]}x{x.shape[2]}.")
  p = nn.max_pool(d, (7, 7), strides=(3, 3), padding="VALID")
  c3 = ops.mid(p)
  n, h_, w_, _ = x.shape
  u = jax.image.resize(c3, (n, h_, w_, c3.shape[-1]), method="bilinear")
  m = jax.nn.sigmoid(ops.expand(u + cf))
  return ops.gate(y, m)


class ESA(nn.Module):
  """ESA's convolutions (their dataflow is `block_forward`'s); params under ``esa/``."""
  arch: Arch
  block: int

  def setup(self):
    g, a = f"block_{self.block}.esa", self.arch
    self.reduce = MaskedConv(a.width(g), "stream", g, kernel_size=1)
    self.cross = MaskedConv(a.width(g), g, g, kernel_size=1)
    self.down = MaskedConv(a.width(g), g, g, kernel_size=3, strides=2, padding="VALID")
    self.mid = MaskedConv(a.width(g), g, g, kernel_size=3)
    self.expand = MaskedConv(a.width("stream"), g, "stream", kernel_size=1)


class _ModuleOps:
  """`block_forward`'s ops as the block's Flax layers, outputs masked by their group."""

  def __init__(self, conv, esa: ESA, block: int, channel_masks: Mapping):
    inner = f"block_{block}.inner"
    mask = channel_masks.get(f"block_{block}.esa") if channel_masks else None
    self.conv_a = conv("conv_a", "stream", inner)
    self.conv_b = conv("conv_b", inner, "stream")
    self._conv_1x1 = conv("conv_1x1", "stream", "stream", k=1)
    self._reduce = lambda x: esa.reduce(x, mask)
    self.cross = lambda x: esa.cross(x, mask)
    self.down = lambda x: esa.down(x, mask)
    self.mid = lambda x: esa.mid(x, mask)
    # No output mask: pruned stream channels of y are already zero, so y * m is too.
    self.expand = lambda x: esa.expand(x)

  def stream_and_reduce(self, h):
    y = self._conv_1x1(h)
    return y, self._reduce(y)

  @staticmethod
  def gate(y, m):
    return y * m


class FastBlockOps:
  """`block_forward`'s ops on an unmasked block's params, on `apply_conv`'s fast paths.

  XLA:CPU fuses no bias add or elementwise op into a matmul or convolution, so
  every full-resolution tensor costs memory passes. Here the 1x1 conv's bias
  is added inside ESA's final gate, and ESA's reduce, c1 = (h W1 + b1) Wr + br,
  comes out of the same matmul as h W1 as extra columns h (W1 Wr): two fewer
  passes over the stream per block. Same math as the module up to float
  rounding (a test compares them).
  """

  def __init__(self, p: Mapping, dtype):
    kb = lambda node: (node["kernel"].astype(dtype), node["bias"].astype(dtype))
    conv = lambda node, **kw: (lambda x: apply_conv(x, *kb(node), **kw))
    esa = p["esa"]
    self.conv_a, self.conv_b = conv(p["conv_a"]), conv(p["conv_b"])
    self.cross, self.mid, self.expand = conv(esa["cross"]), conv(esa["mid"]), conv(esa["expand"])
    self.down = conv(esa["down"], strides=2, padding="VALID")
    w1, self._b1 = kb(p["conv_1x1"])
    self._w1 = w1[0, 0]
    w_r, self._b_r = kb(esa["reduce"])
    self._w_r = w_r[0, 0]

  def stream_and_reduce(self, h):
    hi = jax.lax.Precision.HIGHEST  # weight products: exact up to float32 rounding on any backend
    w1, w_r = self._w1, self._w_r
    both = jnp.dot(h, jnp.concatenate([w1, jnp.dot(w1, w_r, precision=hi)], axis=1))
    c = w1.shape[1]
    c1 = both[..., c:] + (jnp.dot(self._b1, w_r, precision=hi) + self._b_r)
    return both[..., :c], c1    # y without its bias: `gate` adds it

  def gate(self, y_no_bias, m):
    return (y_no_bias + self._b1) * m


class ESRBBlock(nn.Module):
  arch: Arch
  block: int

  @nn.compact
  def __call__(self, x, channel_masks):
    ops = _ModuleOps(conv_factory(self.arch, channel_masks),
                     ESA(self.arch, self.block, name="esa"), self.block, channel_masks)
    return block_forward(x, ops)


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


def _groups(arch: Arch) -> list[Group]:
  groups = []
  for i in range(arch.blocks):
    groups += [Group(f"block_{i}.inner", arch.channels, True),
               Group(f"block_{i}.esa", arch.esa_channels, arch.prune_esa)]
  return groups + [Group("upsample", 3 * arch.scale ** 2, False)]


def _receptive_radius(arch: Arch) -> int:
  # Every stride-1 3x3 conv on the LR grid adds 1: head, conv_a and conv_b of each block,
  # body_end, upsample (1x1 convs add 0). ESA's pooled branch is global, not counted.
  return 2 * arch.blocks + 3


def _latency_block(x, block_params, dtype):
  return block_forward(x, FastBlockOps(block_params, dtype))


# ESA's strided conv and 7x7 max pool need at least 15 LR pixels a side.
BACKBONE = register_backbone(Backbone(
    name="esrb", module=ESRB, groups=_groups, receptive_radius=_receptive_radius,
    min_lr_side=15, latency_block=_latency_block))

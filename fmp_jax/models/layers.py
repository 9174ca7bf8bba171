"""Building blocks shared by the backbones: the masked convolution and pixel shuffle.

`MaskedConv` is an ordinary NHWC convolution that knows which channel group it
reads from and writes to (see `fmp_jax.arch`). Pruning enters in two ways:

* a per-layer weight mask, read from the ``masks`` variable collection at
  ``masks/<layer path>/weight`` (shape of the kernel, HWIO) when one is given;
* an output channel mask of shape (C_out,), passed in by the parent module
  (channel masks are per group and shared by coupled layers).

With neither present the layer is a plain convolution with no extra work.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MASKS = "masks"  # the variable collection that carries pruning masks


def torch_uniform_init(fan_in_axes=(0, 1, 2)):
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the common SR-codebase conv init."""
  def init(key, shape, dtype=jnp.float32):
    fan_in = int(np.prod([shape[a] for a in fan_in_axes]))
    bound = 1.0 / np.sqrt(max(fan_in, 1))
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class MaskedConv(nn.Module):
  """k x k convolution (NHWC, kernel HWIO) with optional pruning masks.

  Attributes:
    features: output channels (the built width of `out_group`).
    in_group / out_group: channel groups of the input and output (metadata
      used by the complexity counter and the pruning code).
    kernel_size, strides: square kernel and stride.
    padding: "SAME" or "VALID".
  """
  features: int
  in_group: str
  out_group: str
  kernel_size: int = 3
  strides: int = 1
  padding: str = "SAME"

  @nn.compact
  def __call__(self, x: jax.Array, out_mask: Optional[jax.Array] = None) -> jax.Array:
    k = self.kernel_size
    in_features = x.shape[-1]
    fan_in = k * k * in_features
    kernel = self.param("kernel", torch_uniform_init(), (k, k, in_features, self.features))
    bias_bound = 1.0 / np.sqrt(fan_in)
    bias = self.param(
        "bias", lambda key, shape: jax.random.uniform(key, shape, jnp.float32,
                                                      -bias_bound, bias_bound),
        (self.features,))
    if self.has_variable(MASKS, "weight"):
      kernel = kernel * self.get_variable(MASKS, "weight").astype(kernel.dtype)
    y = jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), window_strides=(self.strides, self.strides),
        padding=self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = y + bias.astype(y.dtype)
    if out_mask is not None:
      y = y * out_mask.astype(y.dtype)
    return y


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
  """Depth-to-space with PyTorch's channel order: (N,H,W,C*r*r) -> (N,H*r,W*r,C).

  Output channel c at sub-pixel (i, j) comes from input channel c*r*r + i*r + j,
  as in `torch.nn.PixelShuffle`, so weights ported from PyTorch line up.
  """
  n, h, w, c = x.shape
  if c % (r * r):
    raise ValueError(f"pixel_shuffle: {c} channels is not a multiple of r*r={r * r}.")
  out_c = c // (r * r)
  x = x.reshape(n, h, w, out_c, r, r)
  x = x.transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(n, h * r, w * r, out_c)


def conv_factory(arch, channel_masks):
  """Returns `conv(name, in_group, out_group, k=3, **kw) -> callable(x)`.

  The callable applies a `MaskedConv` whose width is `arch.width(out_group)` and
  whose output is masked by the group's channel mask when one is given.
  """
  def conv(name, in_group, out_group, k=3, mask_output=True, **kw):
    layer = MaskedConv(features=arch.width(out_group), in_group=in_group,
                       out_group=out_group, kernel_size=k, name=name, **kw)
    mask = channel_masks.get(out_group) if (channel_masks and mask_output) else None
    return lambda x: layer(x, mask)
  return conv


def read_channel_masks(module: nn.Module) -> dict:
  """The group -> (C,) channel masks from the ``masks`` collection, or {}."""
  if module.has_variable(MASKS, "channels"):
    return dict(module.get_variable(MASKS, "channels"))
  return {}

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

# precision -> the dtype activations and convolutions run in (params stay float32).
PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def precision_dtype(precision: str):
  """"float32" or "bfloat16" -> the dtype activations and convolutions run in."""
  if precision not in PRECISIONS:
    raise ValueError(f"precision={precision!r} is unknown; use one of {tuple(PRECISIONS)}.")
  return PRECISIONS[precision]


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


# --- the fast paths of a conv (what `fmp_jax.inference.Upscaler` runs) -----------------

# Conv shapes XLA:CPU runs far below its peak, and what runs instead. Thresholds
# from measurements at 360x640 LR on a 2-core AVX-512 CPU (bench/inference.py
# --plain shows the effect on a whole model): a 3x3 conv 1->168 took 23 ms as a
# convolution and 12.5 ms as unrolled multiply-adds; 168->1, 35 ms vs 14 ms as
# one matmul to 9 outputs followed by 9 shifted adds; a 1x1 conv 146->146, 2.5x
# slower than the same matmul.
NARROW_IN = 3   # stride-1 'SAME' convs with at most this many input channels: "taps"
NARROW_OUT = 4  # ... with at most this many output channels: "shifted_outputs"


def conv_path(kernel_shape: tuple[int, int, int, int], strides: int, padding: str) -> str:
  """How `Upscaler` runs a conv of this HWIO kernel shape (see the NARROW_* constants).

  "matmul": 1x1 stride-1 conv as one matmul over channels; "taps": each input
  channel and kernel tap as a broadcast multiply-add (one fused elementwise
  pass, no convolution kernel); "shifted_outputs": one matmul from C_in to
  k*k*C_out, then the k*k output planes added at their shifts; "conv": XLA's
  convolution.
  """
  k, _, c_in, c_out = kernel_shape
  if strides != 1:
    return "conv"
  if k == 1:
    return "matmul"
  if padding != "SAME" or k % 2 == 0:
    return "conv"
  if c_in <= NARROW_IN:
    return "taps"
  if c_out <= NARROW_OUT:
    return "shifted_outputs"
  return "conv"


def _pad_same(x, p):
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x


def conv_by_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 'SAME' conv as sum_{i,j,c} shift_ij(x)[..., c] * kernel[i, j, c]: NHWC, HWIO."""
  k, _, c_in, _ = kernel.shape
  n, h, w, _ = x.shape
  xp = _pad_same(x, k // 2)
  out = None
  for i in range(k):
    for j in range(k):
      window = xp[:, i:i + h, j:j + w]
      for c in range(c_in):
        term = window[..., c:c + 1] * kernel[i, j, c]
        out = term if out is None else out + term
  return out


def conv_by_shifted_outputs(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 'SAME' conv as one matmul C_in -> k*k*C_out, then the planes added at their shifts.

  out[h, w] = sum_ij x[h+i-p, w+j-p] @ kernel[i, j] = sum_ij z_pad[h+i, w+j, i, j], with
  z = x @ kernel (all taps at once) zero-padded by p = k // 2.
  """
  k, _, c_in, c_out = kernel.shape
  n, h, w, _ = x.shape
  z = jnp.dot(x.reshape(-1, c_in), kernel.transpose(2, 0, 1, 3).reshape(c_in, k * k * c_out))
  p = k // 2
  z = jnp.pad(z.reshape(n, h, w, k, k, c_out), ((0, 0), (p, p), (p, p), (0, 0), (0, 0), (0, 0)))
  out = None
  for i in range(k):
    for j in range(k):
      plane = z[:, i:i + h, j:j + w, i, j]
      out = plane if out is None else out + plane
  return out


def apply_conv(x: jax.Array, kernel: jax.Array, bias: Optional[jax.Array] = None,
               strides: int = 1, padding: str = "SAME") -> jax.Array:
  """One NHWC conv (HWIO kernel) on the path `conv_path` picks; same math as `MaskedConv`."""
  path = conv_path(kernel.shape, strides, padding)
  if path == "matmul":
    y = jnp.dot(x, kernel[0, 0])
  elif path == "taps":
    y = conv_by_taps(x, kernel)
  elif path == "shifted_outputs":
    y = conv_by_shifted_outputs(x, kernel)
  else:
    y = jax.lax.conv_general_dilated(x, kernel, (strides, strides), padding,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y if bias is None else y + bias

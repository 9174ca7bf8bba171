"""MATLAB-compatible bicubic `imresize` in numpy, plus `modcrop`.

SR datasets (DIV2K, Set5, ...) make their LR images with MATLAB's
``imresize(hr, 1/s, 'bicubic')``; training or scoring against another
resampler (PIL, OpenCV, jax.image.resize) shifts PSNR by tenths of a dB.
This module follows MATLAB's algorithm:

* Keys' cubic kernel with a = -0.5;
* output size ``ceil(in * scale)`` per axis (or an explicit output shape,
  in which case the per-axis scale is ``out / in``);
* output pixel x (1-based) samples the input coordinate
  ``u = x / scale + 0.5 * (1 - 1 / scale)``;
* when shrinking with antialiasing (the default), the kernel is stretched by
  1/scale and its height scaled by `scale`, so it also low-pass filters;
* each output pixel reads ``ceil(kernel width) + 2`` taps, their weights are
  normalised to sum to 1, and taps outside the image read it mirrored at its
  border (symmetric padding: ... 2 1 | 1 2 3 ... n | n n-1 ...); tap columns
  whose weight is zero everywhere are dropped;
* the two axes are resized one after the other, the one with the smaller
  scale first (ties: rows first);
* uint8 input: after EACH axis pass the result is rounded (half away from
  zero) and saturated to uint8, and the output is uint8, as MATLAB does for
  integer classes. Any other input is computed and returned as float64,
  without clipping (MATLAB's behaviour for double input).

Known differences from MATLAB:

* only the bicubic kernel (MATLAB's default) is implemented; no 'nearest',
  'bilinear', 'lanczos', custom kernels, indexed images or NaN output sizes;
* sums run in a different order than MATLAB's mex file, so float results
  can differ in the last bits (~1e-13); for uint8 this can flip a rounding
  only when a value lies within ~1e-13 of a .5 boundary (practically never);
* only the first two axes are resized; inputs of other integer classes
  (uint16, int32, ...) are treated as float64 (MATLAB would round to their
  class).
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
  """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
  ax = np.abs(x)
  ax2, ax3 = ax * ax, ax * ax * ax
  return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
          + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


@functools.lru_cache(maxsize=256)
def contributions(in_len: int, out_len: int, scale: float,
                  antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Per output pixel along one axis: the input pixels it reads and their weights.

  Args:
    in_len, out_len: axis length before and after resizing (pixels).
    scale: the axis' scale factor (out / in for an explicit size).
    antialias: stretch the kernel when shrinking (scale < 1).
  Returns:
    (indices, weights), both (out_len, taps): 0-based input indices (already
    mirrored into [0, in_len)) and float64 weights summing to 1 per row.
    Cached and read-only: the same sizes recur for every image of a dataset.
  """
  if scale < 1 and antialias:
    kernel = lambda d: scale * _cubic(scale * d)
    width = 4.0 / scale
  else:
    kernel = _cubic
    width = 4.0
  x = np.arange(1, out_len + 1, dtype=np.float64)
  u = x / scale + 0.5 * (1.0 - 1.0 / scale)
  left = np.floor(u - width / 2.0)
  taps = int(math.ceil(width)) + 2
  idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]   # 1-based positions
  weights = kernel(u[:, None] - idx)
  weights = weights / np.sum(weights, axis=1, keepdims=True)
  # Symmetric padding: position p (1-based) maps through a period-2n mirror.
  mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
  idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
  used = np.any(weights != 0, axis=0)
  idx, weights = np.ascontiguousarray(idx[:, used]), np.ascontiguousarray(weights[:, used])
  idx.flags.writeable = False
  weights.flags.writeable = False
  return idx, weights


def _round_uint8(x: np.ndarray) -> np.ndarray:
  # MATLAB's uint8 conversion: saturate, then round half away from zero
  # (floor(x + 0.5) on the clipped, non-negative values).
  return np.floor(np.clip(x, 0.0, 255.0) + 0.5).astype(np.uint8)


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float,
                 antialias: bool) -> np.ndarray:
  """One 1-D pass along `axis` of a float64 (H, W[, C]) array."""
  idx, weights = contributions(img.shape[axis], out_len, scale, antialias)
  shape = [1] * img.ndim
  shape[axis] = out_len
  # One gather per tap (not one (out, taps, ...) gather): memory stays at the
  # output size, which keeps a 2K image pass well under a second.
  out = None
  for t in range(idx.shape[1]):
    term = np.take(img, idx[:, t], axis=axis)
    term *= weights[:, t].reshape(shape)
    if out is None:
      out = term
    else:
      out += term
  return out


def _output_size(h: int, w: int, scale, output_shape):
  if output_shape is not None:
    if scale is not None:
      raise ValueError("imresize: give scale or output_shape, not both.")
    if len(output_shape) != 2 or min(int(v) for v in output_shape) < 1:
      raise ValueError(f"imresize: output_shape={tuple(output_shape)} must be two positive "
                       f"sizes (H_out, W_out).")
    out = (int(output_shape[0]), int(output_shape[1]))
    return out, (out[0] / h, out[1] / w)
  if scale is None:
    raise ValueError("imresize: give scale or output_shape.")
  scale = float(scale)
  if not scale > 0 or not math.isfinite(scale):
    raise ValueError(f"imresize: scale={scale} must be a positive number.")
  return (int(math.ceil(h * scale)), int(math.ceil(w * scale))), (scale, scale)


def imresize(img: np.ndarray, scale: Optional[float] = None,
             output_shape: Optional[Sequence[int]] = None,
             antialias: bool = True) -> np.ndarray:
  """Bicubic resize of an (H, W) or (H, W, C) image, as MATLAB's imresize.

  Args:
    img: (H, W) or (H, W, C) image. uint8 is treated as MATLAB treats uint8
      (values 0..255, rounded after each axis, uint8 result); any other
      dtype is computed in float64 in whatever units it has ([0, 1] or
      [0, 255] alike), without clipping.
    scale: one factor for both axes, e.g. 0.5 to halve, 2 to double; the
      output is ceil(H * scale) x ceil(W * scale).
    output_shape: (H_out, W_out) instead of `scale`.
    antialias: MATLAB's default (True) widens the kernel when shrinking.
  Returns:
    (H_out, W_out[, C]) array: uint8 for uint8 input, else float64.
  """
  img = np.asarray(img)
  if img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
    raise ValueError(f"imresize expects a non-empty (H, W) or (H, W, C) image, got shape "
                     f"{img.shape}.")
  is_uint8 = img.dtype == np.uint8
  h, w = img.shape[:2]
  out, scales = _output_size(h, w, scale, output_shape)
  x = img.astype(np.float64)
  for axis in sorted((0, 1), key=lambda a: scales[a]):   # stable: rows first on ties
    x = _resize_axis(x, axis, out[axis], scales[axis], antialias)
    if is_uint8:
      x = _round_uint8(x).astype(np.float64)
  return x.astype(np.uint8) if is_uint8 else x


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
  """Crops the bottom/right so H and W are multiples of `scale` (the SR convention).

  Works on (H, W) or (H, W, C); returns a view.
  """
  scale = int(scale)
  if scale < 1:
    raise ValueError(f"modcrop: scale={scale} must be a positive integer.")
  h, w = img.shape[:2]
  return img[:h - h % scale, :w - w % scale]


def _as_uint8(img: np.ndarray) -> np.ndarray:
  img = np.asarray(img)
  return img if img.dtype == np.uint8 else _round_uint8(img.astype(np.float64))


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
  """The SR benchmark LR of an 8-bit HR image: MATLAB ``imresize(hr, 1/scale, 'bicubic')``.

  Args:
    hr: (H, W[, C]) uint8 HR image (other dtypes are rounded to uint8 first,
      so pass values in [0, 255]); H and W should be multiples of `scale`
      (see `modcrop`), otherwise the LR is ceil(H / scale) x ceil(W / scale).
    scale: integer SR factor s.
  Returns:
    (ceil(H/s), ceil(W/s)[, C]) uint8 LR image.
  """
  return imresize(_as_uint8(hr), scale=1.0 / int(scale))


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
  """The bicubic baseline of SR papers: MATLAB ``imresize(lr, scale, 'bicubic')`` of 8-bit LR.

  Args:
    lr: (h, w[, C]) uint8 LR image (other dtypes are rounded to uint8 first).
    scale: integer SR factor s.
  Returns:
    (h*s, w*s[, C]) uint8 image.
  """
  return imresize(_as_uint8(lr), scale=int(scale))

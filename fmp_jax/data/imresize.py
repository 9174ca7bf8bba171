"""MATLAB-compatible `imresize` (bicubic) in numpy, and `modcrop`.

SR datasets make LR images with MATLAB's ``imresize(hr, 1/s, 'bicubic')``;
training or scoring against another resampler shifts PSNR by tenths of a dB.
This follows MATLAB's algorithm:

* Keys' cubic kernel with a = -0.5;
* output size ``ceil(in * scale)`` (or an explicit output shape);
* output pixel x (1-based) samples input coordinate
  ``u = x / scale + 0.5 * (1 - 1 / scale)``;
* when shrinking with antialiasing, the kernel is stretched by 1/scale
  (and its height scaled by `scale`), so it acts as a low-pass filter;
* weights are normalised to sum to 1 per output pixel, and out-of-range
  taps read the image mirrored at its border (symmetric padding);
* dimensions are resized in order of increasing scale factor.

Known differences from MATLAB: we compute in float64 and return float64
(MATLAB rounds to the input class, so compare against MATLAB with
``np.round`` for uint8 input); MATLAB's other kernels and its
`'Antialiasing'` default for non-bicubic methods are not implemented.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
  ax = np.abs(x)
  ax2, ax3 = ax * ax, ax * ax * ax
  return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
          + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def _contributions(in_len: int, out_len: int, scale: float, antialias: bool):
  """Per output pixel: the input indices it reads (0-based) and their weights."""
  if scale < 1 and antialias:
    kernel = lambda x: scale * _cubic(scale * x)
    width = 4.0 / scale
  else:
    kernel = _cubic
    width = 4.0
  x = np.arange(1, out_len + 1, dtype=np.float64)
  u = x / scale + 0.5 * (1.0 - 1.0 / scale)
  left = np.floor(u - width / 2.0)
  taps = int(math.ceil(width)) + 2
  idx = left[:, None] + np.arange(taps)[None, :]           # 1-based input positions
  weights = kernel(u[:, None] - idx)
  weights /= np.sum(weights, axis=1, keepdims=True)
  mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
  idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
  used = np.any(weights != 0, axis=0)
  return idx[:, used], weights[:, used]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float,
                 antialias: bool) -> np.ndarray:
  idx, weights = _contributions(img.shape[axis], out_len, scale, antialias)
  moved = np.moveaxis(img, axis, 0)                         # (in, ...)
  gathered = moved[idx]                                     # (out, taps, ...)
  w = weights.reshape(weights.shape + (1,) * (moved.ndim - 1))
  return np.moveaxis(np.sum(gathered * w, axis=1), 0, axis)


def imresize(img: np.ndarray, scale: Optional[float] = None,
             output_shape: Optional[Sequence[int]] = None, antialias: bool = True) -> np.ndarray:
  """Bicubic resize of an (H, W) or (H, W, C) image, as MATLAB's imresize.

  Args:
    img: image of any real dtype; values are not clipped or rounded.
    scale: one factor for both axes (e.g. 0.5 to halve, 2 to double).
    output_shape: (H_out, W_out) instead of `scale`.
    antialias: MATLAB's default (true) widens the kernel when shrinking.
  Returns:
    float64 array of shape (H_out, W_out[, C]).
  """
  img = np.asarray(img, dtype=np.float64)
  if img.ndim not in (2, 3):
    raise ValueError(f"imresize expects an (H, W) or (H, W, C) image, got shape {img.shape}.")
  h, w = img.shape[:2]
  if output_shape is not None:
    out = (int(output_shape[0]), int(output_shape[1]))
    scales = (out[0] / h, out[1] / w)
  elif scale is not None:
    if scale <= 0:
      raise ValueError(f"imresize: scale={scale} must be positive.")
    scales = (float(scale), float(scale))
    out = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
  else:
    raise ValueError("imresize: give scale or output_shape.")
  for axis in sorted((0, 1), key=lambda a: scales[a]):
    img = _resize_axis(img, axis, out[axis], scales[axis], antialias)
  return img


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
  """Crops the bottom/right so both sides are multiples of `scale` (SR convention)."""
  h, w = img.shape[:2]
  return img[:h - h % scale, :w - w % scale]


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
  """The SR benchmark LR: MATLAB bicubic of an 8-bit HR image by 1/scale, rounded to uint8."""
  lr = imresize(np.asarray(hr, np.float64), scale=1.0 / scale)
  return np.clip(np.round(lr), 0, 255).astype(np.uint8)

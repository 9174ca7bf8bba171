"""Scoring a model on LR/HR pairs, with the bicubic baseline beside it."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from fmp_jax import metrics
from fmp_jax.data.imresize import imresize


def evaluate(upscale_fn: Callable[[np.ndarray], np.ndarray], pairs: Sequence, scale: int,
             rgb_range: float = 1.0) -> dict:
  """PSNR/SSIM (Y channel, border `scale`, 8-bit) of `upscale_fn` and of bicubic.

  Args:
    upscale_fn: (h, w, 3) float32 LR in [0, rgb_range] -> (h*s, w*s, 3) HR.
    pairs: `fmp_jax.data.Pair`s (uint8 lr, hr).
  Returns:
    {"images": [{name, psnr, ssim, bicubic_psnr, bicubic_ssim}], "summary": means + "images"}.
  """
  rows = []
  for pair in pairs:
    lr = pair.lr.astype(np.float32) * np.float32(rgb_range / 255.0)
    sr = metrics.quantize(np.asarray(upscale_fn(lr)), rgb_range)
    bic = np.clip(np.round(imresize(pair.lr.astype(np.float64), scale=scale)), 0, 255)
    hr = pair.hr.astype(np.float64)
    rows.append({"name": pair.name,
                 "psnr": metrics.psnr(sr, hr, crop=scale), "ssim": metrics.ssim(sr, hr, crop=scale),
                 "bicubic_psnr": metrics.psnr(bic, hr, crop=scale),
                 "bicubic_ssim": metrics.ssim(bic, hr, crop=scale)})
  keys = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
  summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
  summary["images"] = len(rows)
  return {"images": rows, "summary": summary}


def evaluate_model(params: Mapping, arch, pairs: Sequence) -> dict:
  """`evaluate` with the backbone itself (whole images, one compile per image size)."""
  import fmp_jax
  fn = lambda lr: np.asarray(fmp_jax.apply(params, arch, lr[None]))[0]
  return evaluate(fn, pairs, arch.scale, arch.rgb_range)

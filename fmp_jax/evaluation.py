"""Scoring a super-resolution function on LR/HR pairs, with the bicubic baseline beside it.

The protocol of SR papers (see fmp_jax.metrics): the model output is
quantised to 8 bits, `scale` pixels are cropped at each border, and PSNR/SSIM
are computed on BT.601 Y. The baseline is MATLAB bicubic upscaling of the
8-bit LR image (`bicubic_upscale`), scored the same way.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from fmp_jax import metrics
from fmp_jax.data.imresize import bicubic_upscale

KEYS = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")


def evaluate(upscale_fn: Callable[[np.ndarray], np.ndarray], pairs: Sequence, scale: int,
             rgb_range: float = 1.0, y_channel: bool = True,
             on_image: Optional[Callable] = None) -> dict:
  """PSNR/SSIM (border `scale`, 8-bit, Y channel by default) of `upscale_fn` and of bicubic.

  Args:
    upscale_fn: maps one LR image, (h, w, 3) float32 in [0, rgb_range], to
      its (h*s, w*s, 3) HR estimate in [0, rgb_range] (numpy or jax array;
      a leading batch axis of 1 is accepted).
    pairs: `fmp_jax.data.Pair`s (name, lr uint8 (h, w, 3), hr uint8 (h*s, w*s, 3)).
    scale: SR factor s; also the border crop.
    rgb_range: the value range the model works in (1.0 or 255.0).
    y_channel: False scores RGB.
    on_image: optional callback(pair, sr_uint8, bicubic_uint8, row) per
      image, e.g. to save outputs without keeping them all in memory.
  Returns:
    {"images": [{"name", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim"}, ...],
     "summary": {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim" (means over
     images), "images" (count)}}; PSNR in dB.
  """
  if not pairs:
    raise ValueError("evaluate: no image pairs to score.")
  rows = []
  for pair in pairs:
    lr = pair.lr.astype(np.float32) * np.float32(rgb_range / 255.0)
    out = np.asarray(upscale_fn(lr))
    if out.ndim == 4 and out.shape[0] == 1:
      out = out[0]
    if out.shape != pair.hr.shape:
      raise ValueError(f"{pair.name}: the model maps LR {pair.lr.shape} to {out.shape}, but the "
                       f"HR is {pair.hr.shape}; is the model's scale x{scale}?")
    sr = metrics.quantize(out, rgb_range).astype(np.uint8)
    bic = bicubic_upscale(pair.lr, scale)
    row = {"name": pair.name,
           "psnr": metrics.psnr(sr, pair.hr, crop=scale, y_channel=y_channel),
           "ssim": metrics.ssim(sr, pair.hr, crop=scale, y_channel=y_channel),
           "bicubic_psnr": metrics.psnr(bic, pair.hr, crop=scale, y_channel=y_channel),
           "bicubic_ssim": metrics.ssim(bic, pair.hr, crop=scale, y_channel=y_channel)}
    rows.append(row)
    if on_image is not None:
      on_image(pair, sr, bic, row)
  summary = {k: float(np.mean([r[k] for r in rows])) for k in KEYS}
  summary["images"] = len(rows)
  return {"images": rows, "summary": summary}


def model_upscaler(params: Mapping, arch, masks: Optional[Mapping] = None):
  """upscale_fn for `evaluate`: the backbone on the whole image (one compile per LR size).

  Raises ValueError for LR images below the model's minimum side (ESRB: 15 px).
  """
  import fmp_jax
  from fmp_jax.models import MIN_LR_SIDE

  def upscale(lr):
    if min(lr.shape[:2]) < MIN_LR_SIDE:
      raise ValueError(f"LR image {lr.shape[1]}x{lr.shape[0]} px is below the model's minimum "
                       f"{MIN_LR_SIDE}x{MIN_LR_SIDE}; remove it from the set.")
    return np.asarray(fmp_jax.apply(params, arch, lr[None], masks))[0]

  return upscale


def evaluate_model(params: Mapping, arch, pairs: Sequence, masks: Optional[Mapping] = None,
                   **kwargs) -> dict:
  """`evaluate` of the backbone (`fmp_jax.apply(params, arch, lr, masks)`) at arch.scale.

  Pass the export's masks for a masked (not yet baked) model. kwargs go to `evaluate`.
  """
  return evaluate(model_upscaler(params, arch, masks), pairs, arch.scale, arch.rgb_range,
                  **kwargs)


def evaluate_sets(params: Mapping, arch, masks: Optional[Mapping], data_cfg,
                  on_set: Optional[Callable[[str, dict], None]] = None) -> dict:
  """{set name: `evaluate_model` result} over the config's eval sets (`data.eval_set_names`),
  each cut to data_cfg.eval_max_images when that is set; on_set(name, summary) after each."""
  from fmp_jax import data as data_lib
  results = {}
  for name in data_lib.eval_set_names(data_cfg):
    pairs = data_lib.eval_pairs(data_cfg, name, arch.scale)
    if data_cfg.eval_max_images:
      pairs = pairs[:int(data_cfg.eval_max_images)]
    results[name] = evaluate_model(params, arch, pairs, masks=masks)
    if on_set is not None:
      on_set(name, results[name]["summary"])
  return results

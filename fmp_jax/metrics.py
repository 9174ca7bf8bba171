"""PSNR and SSIM as SR papers report them (MATLAB conventions).

* Images are 8-bit: model outputs are rounded to integers in [0, 255] first.
* Scores are on the Y channel of ITU-R BT.601 (MATLAB ``rgb2ycbcr``):
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for R, G, B in [0, 255].
* ``crop`` pixels (the scale) are removed at every border.
* SSIM: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, mean
  over the 'valid' region of the filtered maps (Wang et al.'s ssim.m).
RGB variants (``y_channel=False``) average over the three channels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def rgb_to_y(img: np.ndarray) -> np.ndarray:
  """(H, W, 3) RGB in [0, 255] -> (H, W) BT.601 luma Y in [16, 235], float64."""
  img = np.asarray(img, np.float64)
  return 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def quantize(img: np.ndarray, rgb_range: float = 1.0) -> np.ndarray:
  """Model output in [0, rgb_range] -> 8-bit values in [0, 255] (float64)."""
  return np.clip(np.round(np.asarray(img, np.float64) * (255.0 / rgb_range)), 0, 255)


def _prepare(sr, hr, crop, y_channel):
  sr, hr = np.asarray(sr, np.float64), np.asarray(hr, np.float64)
  if sr.shape != hr.shape:
    raise ValueError(f"SR {sr.shape} and HR {hr.shape} shapes differ.")
  if crop:
    sr, hr = sr[crop:-crop, crop:-crop], hr[crop:-crop, crop:-crop]
  if y_channel and sr.ndim == 3:
    sr, hr = rgb_to_y(sr), rgb_to_y(hr)
  return sr, hr


def psnr(sr: np.ndarray, hr: np.ndarray, crop: int = 0, y_channel: bool = True) -> float:
  """PSNR in dB of 8-bit images (values in [0, 255])."""
  sr, hr = _prepare(sr, hr, crop, y_channel)
  mse = np.mean((sr - hr) ** 2)
  return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  x = np.arange(size) - (size - 1) / 2.0
  g = np.exp(-(x ** 2) / (2 * sigma ** 2))
  return g / g.sum()


def _ssim_single(a: np.ndarray, b: np.ndarray) -> float:
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  g = _gaussian_window()
  r = (len(g) - 1) // 2

  def filt(x):  # separable Gaussian, then keep the 'valid' region
    x = ndimage.correlate1d(x, g, axis=0, mode="reflect")
    x = ndimage.correlate1d(x, g, axis=1, mode="reflect")
    return x[r:-r, r:-r]

  mu_a, mu_b = filt(a), filt(b)
  var_a = filt(a * a) - mu_a ** 2
  var_b = filt(b * b) - mu_b ** 2
  cov = filt(a * b) - mu_a * mu_b
  ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
      (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
  return float(np.mean(ssim_map))


def ssim(sr: np.ndarray, hr: np.ndarray, crop: int = 0, y_channel: bool = True) -> float:
  """SSIM of 8-bit images (values in [0, 255]), MATLAB convention."""
  sr, hr = _prepare(sr, hr, crop, y_channel)
  if min(sr.shape[:2]) < 11:
    raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {sr.shape[:2]}.")
  if sr.ndim == 2:
    return _ssim_single(sr, hr)
  return float(np.mean([_ssim_single(sr[..., c], hr[..., c]) for c in range(sr.shape[-1])]))

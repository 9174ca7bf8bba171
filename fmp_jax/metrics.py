"""PSNR and SSIM as SR papers report them (MATLAB conventions), in numpy.

* Inputs are 8-bit images: uint8, or float holding values in [0, 255].
  Model outputs in [0, rgb_range] go through `quantize` first (round to
  integers), as papers score saved 8-bit PNGs.
* Scores are on the luma Y of ITU-R BT.601 (MATLAB ``rgb2ycbcr``):
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` with R, G, B in [0, 1],
  i.e. ``16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for 8-bit values.
  Y is kept in float; MATLAB scripts that call rgb2ycbcr on uint8 images
  round Y to integers first, which moves PSNR by about +-0.01 dB.
* ``crop`` pixels (by convention the scale) are removed at every border
  before scoring.
* SSIM (Wang et al., ssim_index.m): 11x11 Gaussian window, sigma 1.5,
  K1 = 0.01, K2 = 0.03, L = 255, the mean of the SSIM map over the 'valid'
  region (windows lying fully inside the image: 5 px less at each border).
* ``y_channel=False`` scores RGB instead: PSNR over all three channels'
  pixels, SSIM averaged over the three channels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def rgb_to_y(img: np.ndarray) -> np.ndarray:
  """(..., 3) RGB with values in [0, 255] -> (...) BT.601 luma Y in [16, 235], float64."""
  img = np.asarray(img, np.float64)
  if img.shape[-1] != 3:
    raise ValueError(f"rgb_to_y expects RGB (..., 3), got shape {img.shape}.")
  return 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def quantize(img: np.ndarray, rgb_range: float = 1.0) -> np.ndarray:
  """Model output in [0, rgb_range] -> 8-bit values (integers in [0, 255], float64).

  Rounds half to even after scaling by 255 / rgb_range and clips, as saving
  the output to an 8-bit PNG would.
  """
  return np.clip(np.round(np.asarray(img, np.float64) * (255.0 / rgb_range)), 0, 255)


def _prepare(sr, hr, crop: int, y_channel: bool):
  sr, hr = np.asarray(sr, np.float64), np.asarray(hr, np.float64)
  if sr.shape != hr.shape:
    raise ValueError(f"SR {sr.shape} and HR {hr.shape} shapes differ.")
  if sr.ndim not in (2, 3):
    raise ValueError(f"expected (H, W) or (H, W, C) images, got shape {sr.shape}.")
  crop = int(crop)
  if crop < 0 or 2 * crop >= min(sr.shape[:2]):
    raise ValueError(f"crop={crop} leaves nothing of a {sr.shape[1]}x{sr.shape[0]} image.")
  if crop:
    sr, hr = sr[crop:-crop, crop:-crop], hr[crop:-crop, crop:-crop]
  if y_channel and sr.ndim == 3:
    sr, hr = rgb_to_y(sr), rgb_to_y(hr)
  return sr, hr


def psnr(sr: np.ndarray, hr: np.ndarray, crop: int = 0, y_channel: bool = True) -> float:
  """PSNR in dB (peak 255) of two 8-bit images.

  Args:
    sr, hr: (H, W, 3) RGB (or (H, W) gray, scored as is), uint8 or float in [0, 255].
    crop: border pixels removed on each side (use the scale).
    y_channel: score BT.601 Y (default) instead of RGB.
  Returns:
    10 log10(255^2 / MSE); inf for identical images.
  """
  sr, hr = _prepare(sr, hr, crop, y_channel)
  mse = np.mean((sr - hr) ** 2)
  return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
  x = np.arange(size) - (size - 1) / 2.0
  g = np.exp(-(x ** 2) / (2 * sigma ** 2))
  return g / g.sum()   # the 2-D window is the outer product: separable filtering


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  g = _gaussian_window()
  r = (len(g) - 1) // 2

  def filt(x):
    # Separable Gaussian, then keep the 'valid' region: there the border mode
    # never matters, so this equals MATLAB's filter2(w, x, 'valid').
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
  """SSIM (MATLAB convention, see module doc) of two 8-bit images.

  Args:
    sr, hr: (H, W, 3) RGB (or (H, W) gray), uint8 or float in [0, 255].
    crop: border pixels removed on each side (use the scale).
    y_channel: score BT.601 Y (default); False averages over R, G, B.
  Returns:
    mean SSIM in [-1, 1]; 1 for identical images.
  """
  sr, hr = _prepare(sr, hr, crop, y_channel)
  if min(sr.shape[:2]) < SSIM_WINDOW:
    raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} px after cropping, got "
                     f"{sr.shape[1]}x{sr.shape[0]}.")
  if sr.ndim == 2:
    return _ssim_2d(sr, hr)
  return float(np.mean([_ssim_2d(sr[..., c], hr[..., c]) for c in range(sr.shape[-1])]))

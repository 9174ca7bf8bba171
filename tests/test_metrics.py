"""PSNR/SSIM/Y against hand computations, a brute-force SSIM and scikit-image."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from fmp_jax import metrics


def test_rgb_to_y_known_pixels():
  px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], float)
  y = metrics.rgb_to_y(px)[0]
  # BT.601 with R, G, B in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B.
  np.testing.assert_allclose(y, [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-9)
  assert metrics.rgb_to_y(np.array([10, 20, 30], np.uint8)) == pytest.approx(
      16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255)


def test_psnr_by_hand():
  hr = np.zeros((6, 6))
  sr = hr.copy()
  sr[2, 3] = 10.0   # inside the crop
  sr[0, 0] = 99.0   # in the cropped border: ignored
  # crop 1 leaves 4x4 = 16 pixels; MSE = 100 / 16.
  assert metrics.psnr(sr, hr, crop=1, y_channel=False) == pytest.approx(
      10 * np.log10(255.0**2 / (100 / 16)))
  assert metrics.psnr(hr, hr) == float("inf")


def test_psnr_rgb_and_y_by_hand():
  hr = np.full((4, 4, 3), 100, np.uint8)
  sr = hr.copy()
  sr[..., 1] += 3   # G off by 3 everywhere
  # RGB: MSE over all channels' pixels = 9 / 3. Y: off by 3 * 128.553 / 255.
  assert metrics.psnr(sr, hr, y_channel=False) == pytest.approx(10 * np.log10(255.0**2 / 3))
  assert metrics.psnr(sr, hr) == pytest.approx(
      10 * np.log10(255.0**2 / (3 * 128.553 / 255) ** 2))


def test_quantize_rounds_to_8_bit():
  np.testing.assert_array_equal(metrics.quantize(np.array([-0.1, 0.5, 0.50197, 1.2])),
                                [0, 128, 128, 255])
  np.testing.assert_array_equal(metrics.quantize(np.array([12.4, 300.0]), rgb_range=255.0),
                                [12, 255])


def brute_force_ssim(a, b):
  """Mean SSIM over every 11x11 window lying fully inside the image (ssim_index.m), by loops."""
  x = np.arange(11) - 5.0
  g = np.exp(-x**2 / (2 * 1.5**2))
  w = np.outer(g, g) / np.outer(g, g).sum()
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  vals = []
  for i in range(a.shape[0] - 10):
    for j in range(a.shape[1] - 10):
      pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
      ma, mb = (w * pa).sum(), (w * pb).sum()
      va, vb = (w * pa * pa).sum() - ma**2, (w * pb * pb).sum() - mb**2
      cov = (w * pa * pb).sum() - ma * mb
      vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
  return float(np.mean(vals))


def noisy_pair(seed, shape=(40, 46, 3), sigma=12):
  rng = np.random.default_rng(seed)
  hr = rng.integers(0, 256, shape).astype(np.uint8)
  sr = np.clip(hr + rng.normal(0, sigma, hr.shape), 0, 255).round().astype(np.uint8)
  return sr, hr


def test_ssim_matches_brute_force_valid_windows():
  sr, hr = noisy_pair(0)
  y_sr, y_hr = metrics.rgb_to_y(sr)[2:-2, 2:-2], metrics.rgb_to_y(hr)[2:-2, 2:-2]
  assert metrics.ssim(sr, hr, crop=2) == pytest.approx(brute_force_ssim(y_sr, y_hr), abs=1e-10)


@pytest.mark.parametrize("crop", [0, 2, 4])
def test_ssim_matches_skimage_on_y(crop):
  sr, hr = noisy_pair(1, shape=(64, 72, 3))
  ours = metrics.ssim(sr, hr, crop=crop)
  # Apples to apples: the same cropped Y images go to skimage. skimage
  # filters the whole image (reflect padding at the borders) with the same
  # 11x11, sigma-1.5 Gaussian (truncate=3.5 gives radius 5) and then averages
  # the SSIM map after dropping (11 - 1) / 2 = 5 px at every border, i.e.
  # exactly the windows lying inside the image: MATLAB's 'valid' region that
  # we filter. Its padded border values never enter the mean.
  y_sr, y_hr = metrics.rgb_to_y(sr), metrics.rgb_to_y(hr)
  if crop:
    y_sr, y_hr = y_sr[crop:-crop, crop:-crop], y_hr[crop:-crop, crop:-crop]
  ref = structural_similarity(y_sr, y_hr, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=255)
  assert ours == pytest.approx(ref, abs=1e-6)


def test_ssim_rgb_is_the_channel_mean():
  sr, hr = noisy_pair(2)
  per_channel = [metrics.ssim(sr[..., c], hr[..., c], crop=3) for c in range(3)]
  assert metrics.ssim(sr, hr, crop=3, y_channel=False) == pytest.approx(np.mean(per_channel))


def test_identical_images_score_perfectly():
  img = np.random.default_rng(3).integers(0, 256, (32, 32, 3)).astype(np.uint8)
  assert metrics.ssim(img, img) == pytest.approx(1.0)
  assert metrics.ssim(img, img, y_channel=False) == pytest.approx(1.0)
  assert metrics.psnr(img, img, crop=2) == float("inf")


def test_bad_inputs():
  a = np.zeros((20, 20, 3))
  with pytest.raises(ValueError, match="shapes differ"):
    metrics.psnr(a, np.zeros((20, 21, 3)))
  with pytest.raises(ValueError, match="crop=10"):
    metrics.psnr(a, a, crop=10)
  with pytest.raises(ValueError, match="11x11"):
    metrics.ssim(a, a, crop=5)

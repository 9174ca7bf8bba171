"""PSNR/SSIM/Y against hand computations and scikit-image."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from fmp_jax import metrics


def test_rgb_to_y_known_pixels():
  px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], float)
  y = metrics.rgb_to_y(px)[0]
  np.testing.assert_allclose(y, [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-9)


def test_psnr_by_hand():
  hr = np.zeros((6, 6))
  sr = hr.copy()
  sr[2, 3] = 10.0  # one pixel off by 10 inside the crop
  # Crop 1 leaves 4x4 = 16 pixels; MSE = 100 / 16.
  assert metrics.psnr(sr, hr, crop=1, y_channel=False) == pytest.approx(
      10 * np.log10(255.0**2 / (100 / 16)))
  assert metrics.psnr(hr, hr) == float("inf")


def test_quantize_rounds_to_8_bit():
  np.testing.assert_array_equal(metrics.quantize(np.array([-0.1, 0.5, 0.50197, 1.2])),
                                [0, 128, 128, 255])


@pytest.mark.parametrize("crop", [0, 2, 4])
def test_ssim_matches_skimage_on_y(crop):
  rng = np.random.default_rng(0)
  hr = rng.integers(0, 256, (64, 72, 3)).astype(float)
  sr = np.clip(hr + rng.normal(0, 12, hr.shape), 0, 255).round()
  ours = metrics.ssim(sr, hr, crop=crop)
  y_sr, y_hr = metrics.rgb_to_y(sr), metrics.rgb_to_y(hr)
  if crop:
    y_sr, y_hr = y_sr[crop:-crop, crop:-crop], y_hr[crop:-crop, crop:-crop]
  # skimage filters the whole (cropped) image with the same 11x11 sigma-1.5
  # window and averages the map after removing 5 border pixels, i.e. the
  # 'valid' region that MATLAB's ssim.m averages.
  ref = structural_similarity(y_sr, y_hr, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=255)
  assert ours == pytest.approx(ref, abs=1e-6)


def test_identical_images_have_ssim_one_and_rgb_variant():
  img = np.random.default_rng(1).integers(0, 256, (32, 32, 3)).astype(float)
  assert metrics.ssim(img, img) == pytest.approx(1.0)
  assert metrics.ssim(img, img, y_channel=False) == pytest.approx(1.0)

"""MATLAB-style bicubic imresize against closed-form expectations."""

import math

import numpy as np
import pytest

from fmp_jax.data import imresize, modcrop


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0, 3.0, 4.0])
def test_constant_image_is_exact(scale):
  img = np.full((13, 17, 3), 77.25)
  out = imresize(img, scale)
  np.testing.assert_allclose(out, 77.25, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape, scale", [((7, 9), 1 / 3), ((15, 11), 0.5), ((5, 3), 3.0),
                                          ((9, 13), 0.25)])
def test_output_size_follows_matlab(shape, scale):
  out = imresize(np.zeros(shape), scale)
  assert out.shape == (math.ceil(shape[0] * scale), math.ceil(shape[1] * scale))


@pytest.mark.parametrize("scale", [2.0, 3.0, 4.0, 0.5, 1 / 3, 0.25])
def test_linear_ramp_samples_matlab_coordinates(scale):
  """A ramp f(x) = x (1-based) maps to f(u), u = x/scale + 0.5(1 - 1/scale), away from borders."""
  n = 48
  ramp = np.tile(np.arange(1.0, n + 1), (6, 1))
  out = imresize(ramp, output_shape=(6, round(n * scale)))
  x = np.arange(1, out.shape[1] + 1)
  u = x / scale + 0.5 * (1 - 1 / scale)
  # Border taps are mirrored; stay a kernel half-width (2 input px, x1/scale
  # when shrinking) plus one away from them, converted to output pixels.
  margin = int(math.ceil((2 * max(1.0, 1 / scale) + 1) * scale)) + 1
  inner = slice(margin, -margin)
  np.testing.assert_allclose(out[3, inner], u[inner], rtol=0, atol=1e-9)


def test_downscale_then_known_values_by_hand():
  """x2 downscale of a step edge: weights of the stretched cubic kernel, by hand."""
  # For scale 1/2 the antialiased kernel is 0.5*cubic(0.5*d) at distances
  # d = +-0.5, +-1.5, +-2.5, +-3.5 from u: 0.4375*.5... normalised below.
  d = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5])
  ad = np.abs(0.5 * d)
  k = np.where(ad <= 1, 1.5 * ad**3 - 2.5 * ad**2 + 1, -0.5 * ad**3 + 2.5 * ad**2 - 4 * ad + 2)
  k = k / k.sum()
  row = np.r_[np.zeros(8), np.ones(8)]
  out = imresize(np.tile(row, (4, 1)), output_shape=(4, 8))
  # Output pixel 4 (1-based) samples u = 7.5: taps at inputs 4..11 (1-based).
  expected = np.dot(k, row[3:11])
  assert out[0, 3] == pytest.approx(expected, abs=1e-12)


def test_modcrop():
  assert modcrop(np.zeros((101, 64, 3)), 4).shape == (100, 64, 3)
  assert modcrop(np.zeros((9, 10)), 3).shape == (9, 9)

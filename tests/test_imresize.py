"""MATLAB-style bicubic imresize against closed-form and brute-force expectations."""

import math
import time

import numpy as np
import pytest

from fmp_jax.data import bicubic_downscale, bicubic_upscale, imresize, modcrop
from fmp_jax.data.imresize import _round_uint8

SCALES = [0.5, 1 / 3, 0.25, 2.0, 3.0, 4.0]


def keys_cubic(d):
  """Keys' cubic (a = -0.5), written out piecewise for one scalar distance."""
  d = abs(d)
  if d <= 1:
    return 1.5 * d**3 - 2.5 * d**2 + 1
  if d <= 2:
    return -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2
  return 0.0


def reference_resize_1d(signal, scale, out_len, antialias=True):
  """Brute force, one output sample at a time, over an explicitly mirror-padded signal.

  Independent of the module's vectorised index arithmetic: np.pad's 'symmetric'
  mode is MATLAB's border rule, and the taps are every integer position the
  (possibly stretched) kernel can reach.
  """
  shrink = scale < 1 and antialias
  width = 4.0 / scale if shrink else 4.0
  pad = int(math.ceil(width)) + 4
  padded = np.pad(np.asarray(signal, float), pad, mode="symmetric")   # padded[pad] = signal[0]
  out = np.empty(out_len)
  for x in range(1, out_len + 1):
    u = x / scale + 0.5 * (1 - 1 / scale)
    first = math.floor(u - width / 2)
    taps = range(first, first + int(math.ceil(width)) + 2)              # 1-based positions
    w = np.array([scale * keys_cubic(scale * (u - j)) if shrink else keys_cubic(u - j)
                  for j in taps])
    vals = np.array([padded[j - 1 + pad] for j in taps])
    out[x - 1] = np.dot(w / w.sum(), vals)
  return out


def reference_resize(img, scale):
  """Float 2-D resize by the 1-D reference: rows first on ties, smaller scale first (same here)."""
  h, w = img.shape
  oh, ow = math.ceil(h * scale), math.ceil(w * scale)
  tmp = np.stack([reference_resize_1d(img[:, c], scale, oh) for c in range(w)], axis=1)
  return np.stack([reference_resize_1d(tmp[r], scale, ow) for r in range(oh)], axis=0)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("antialias", [True, False])
def test_constant_image_is_exact(scale, antialias):
  out = imresize(np.full((13, 17, 3), 77.25), scale, antialias=antialias)
  np.testing.assert_allclose(out, 77.25, rtol=0, atol=1e-12)
  out8 = imresize(np.full((13, 17), 200, np.uint8), scale, antialias=antialias)
  assert out8.dtype == np.uint8 and np.all(out8 == 200)


@pytest.mark.parametrize("shape, scale", [((7, 9), 1 / 3), ((15, 11), 0.5), ((5, 3), 3.0),
                                          ((9, 13), 0.25), ((31, 17), 0.5), ((3, 1), 2.0)])
def test_output_size_is_ceil(shape, scale):
  out = imresize(np.zeros(shape), scale)
  assert out.shape == (math.ceil(shape[0] * scale), math.ceil(shape[1] * scale))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("antialias", [True, False])
def test_linear_ramp_samples_matlab_coordinates(scale, antialias):
  """f(y, x) = 2y + 3x (1-based) maps to f(u_y, u_x), u = x/scale + 0.5(1 - 1/scale).

  Away from the borders the normalised kernel reproduces linear functions
  (Keys' cubic does on integer-spaced taps, and a 1/k-stretched one is k
  interleaved integer-spaced sets), so this is exact up to rounding.
  """
  h, w = 41, 53   # odd sizes: the output is ceil(size * scale)
  yy, xx = np.meshgrid(np.arange(1.0, h + 1), np.arange(1.0, w + 1), indexing="ij")
  out = imresize(2 * yy + 3 * xx, scale, antialias=antialias)
  assert out.shape == (math.ceil(h * scale), math.ceil(w * scale))
  half = (4.0 / scale if scale < 1 and antialias else 4.0) / 2

  def coords(n_out, n_in):
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)
    inner = (u - half - 1 >= 1) & (u + half + 1 <= n_in)   # no tap reaches a mirrored pixel
    return u, inner

  uy, iy = coords(out.shape[0], h)
  ux, ix = coords(out.shape[1], w)
  assert iy.sum() >= 3 and ix.sum() >= 3
  expected = 2 * uy[:, None] + 3 * ux[None, :]
  np.testing.assert_allclose(out[np.ix_(iy, ix)], expected[np.ix_(iy, ix)], rtol=0, atol=1e-9)


@pytest.mark.parametrize("scale", SCALES)
def test_matches_brute_force_reference_including_borders(scale):
  img = np.random.default_rng(0).random((9, 14)) * 255   # small: mirroring wraps for x1/4
  np.testing.assert_allclose(imresize(img, scale), reference_resize(img, scale),
                             rtol=0, atol=1e-9)


def test_downscale_value_by_hand():
  """x2 downscale of a step edge: the stretched cubic's weights, by hand."""
  # For scale 1/2 the antialiased kernel is 0.5*cubic(0.5*d) at distances
  # d = +-0.5, +-1.5, +-2.5, +-3.5 from u, normalised.
  d = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5])
  k = np.array([keys_cubic(0.5 * v) for v in d])
  k = k / k.sum()
  row = np.r_[np.zeros(8), np.ones(8)]
  out = imresize(np.tile(row, (4, 1)), output_shape=(4, 8))
  # Output pixel 4 (1-based) samples u = 7.5: taps at inputs 4..11 (1-based).
  assert out[0, 3] == pytest.approx(np.dot(k, row[3:11]), abs=1e-12)


def test_uint8_rounds_after_each_pass_like_matlab():
  """uint8 in -> uint8 out, rounded after the row pass and again after the column pass."""
  img = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
  out = imresize(img, 0.5)
  assert out.dtype == np.uint8 and out.shape == (20, 25, 3)
  # Equal scales: rows first. A pass over one axis only (the other at scale 1
  # is an exact identity) rounds as well, so two calls give the two passes.
  rows_only = imresize(img, output_shape=(20, 50))
  np.testing.assert_array_equal(out, imresize(rows_only, output_shape=(20, 25)))
  # ... which is not the same as rounding (and saturating) once at the end, as
  # MATLAB does for double input: close, but not equal.
  once = _round_uint8(imresize(img.astype(np.float64), 0.5))
  diff = np.abs(out.astype(int) - once)
  assert np.any(diff) and diff.mean() < 0.5


def test_matlab_rounding_is_half_away_from_zero_and_saturates():
  np.testing.assert_array_equal(_round_uint8(np.array([0.5, 1.5, 2.5, -0.4, -3.0, 254.5, 300.0])),
                                [1, 2, 3, 0, 0, 255, 255])


def test_antialias_false_differs_when_shrinking_only():
  img = np.random.default_rng(2).random((24, 24))
  assert not np.allclose(imresize(img, 0.5), imresize(img, 0.5, antialias=False))
  np.testing.assert_array_equal(imresize(img, 2.0), imresize(img, 2.0, antialias=False))


def test_bicubic_helpers_and_modcrop():
  hr = np.random.default_rng(3).integers(0, 256, (30, 24, 3), dtype=np.uint8)
  lr = bicubic_downscale(hr, 3)
  assert lr.dtype == np.uint8 and lr.shape == (10, 8, 3)
  np.testing.assert_array_equal(lr, imresize(hr, 1 / 3))
  up = bicubic_upscale(lr, 3)
  assert up.dtype == np.uint8 and up.shape == hr.shape
  assert modcrop(np.zeros((101, 64, 3)), 4).shape == (100, 64, 3)
  assert modcrop(np.zeros((9, 10)), 3).shape == (9, 9)


def test_bad_arguments():
  with pytest.raises(ValueError, match="scale or output_shape"):
    imresize(np.zeros((4, 4)))
  with pytest.raises(ValueError, match="positive"):
    imresize(np.zeros((4, 4)), -2)
  with pytest.raises(ValueError, match=r"\(H, W\)"):
    imresize(np.zeros(4), 2)


def test_2k_downscale_is_fast():
  img = np.random.default_rng(4).integers(0, 256, (1356, 2040, 3), dtype=np.uint8)
  t = time.perf_counter()
  lr = bicubic_downscale(img, 2)
  assert lr.shape == (678, 1020, 3)
  assert time.perf_counter() - t < 4.0   # ~0.3 s on 2 CPU cores; generous for slow CI

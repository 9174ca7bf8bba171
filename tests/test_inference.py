"""Compact-model inference: equality with fmp_jax.apply, tiling, channel padding, the upscale tool."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fmp_jax
from fmp_jax import inference
from fmp_jax.arch import Arch

# A physically pruned ESRB (odd widths, as a search leaves them) and a tiny EDSR.
PRUNED = Arch(blocks=2, channels=16, esa_channels=8, scale=2,
              widths={"stream": 11, "block_0.inner": 5, "block_1.inner": 13})
EDSR = Arch(model="edsr", blocks=2, channels=8, scale=2)


def random_masks(params, seed=0, keep=0.7):
  """Random 0/1 weight masks for every kernel, in the ``masks`` collection layout."""
  rng = np.random.default_rng(seed)

  def walk(node):
    if "kernel" in node:
      return {"weight": (rng.random(np.shape(node["kernel"])) < keep).astype(np.float32)}
    return {k: walk(v) for k, v in node.items()}
  return walk(params)


def lr_image(h, w, seed=0):
  """A smooth-ish float LR image in [0, 1]: smoothness keeps ESA's pooled branch realistic."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w] / 7.0
  base = 0.5 + 0.25 * np.sin(yy[..., None] + np.array([0.0, 1.0, 2.0])) * np.cos(xx[..., None])
  return np.clip(base + 0.1 * rng.random((h, w, 3)), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def pruned_params():
  return fmp_jax.init_params(PRUNED, seed=3)


# --- the compiled forward pass ---------------------------------------------------

def test_forward_equals_apply_without_masks(pruned_params):
  up = inference.Upscaler(pruned_params, PRUNED, tile=None)
  x = np.stack([lr_image(19, 23, seed=1), lr_image(19, 23, seed=2)])
  got = np.asarray(up.forward(x))
  want = np.asarray(fmp_jax.apply(pruned_params, PRUNED, x))
  assert got.shape == (2, 38, 46, 3)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
  assert list(up.compiled) == [(2, 19, 23, 3)]


def test_fast_paths_replace_convolutions_with_the_same_output(pruned_params):
  # PRUNED at the default padding (widths 16, 8, 16) has 19 convs: head, per
  # block conv_a, conv_b, conv_1x1 and ESA's reduce, cross, down, mid, expand,
  # then body_end and upsample. The four 1x1 per block become matmuls and the
  # 3->16 head runs as multiply-adds; 2 * 4 (conv_a, conv_b, down, mid) +
  # body_end + upsample = 10 remain XLA convolutions.
  fast = inference.Upscaler(pruned_params, PRUNED, tile=None, channel_multiple=8)
  plain = inference.Upscaler(pruned_params, PRUNED, tile=None, fast_paths=False,
                             channel_multiple=1)  # the plain path: what fmp_jax.apply runs
  count = lambda up: up.lowered((1, 20, 20, 3)).as_text().count("stablehlo.convolution")
  assert count(plain) == 19 and count(fast) == 10
  x = lr_image(20, 20)[None]
  np.testing.assert_allclose(np.asarray(fast.forward(x)), np.asarray(plain.forward(x)),
                             rtol=0, atol=2e-6)


def test_narrow_blocks_run_without_convolutions_and_stay_unpadded():
  # Inner widths 1 and 3 (as an FMP search leaves nearly removed blocks): conv_a
  # (11->1, 11->3) takes the shifted-outputs matmul, conv_b (1->11, 3->11) the
  # multiply-adds, and neither group is padded to 8; the stream 11 is (16).
  arch = Arch(blocks=2, channels=16, esa_channels=8, scale=3,
              widths={"stream": 11, "block_0.inner": 1, "block_1.inner": 3})
  params = fmp_jax.init_params(arch, seed=4)
  up = inference.Upscaler(params, arch, tile=None, channel_multiple=8)
  assert dict(up.arch.widths) == {"stream": 16, "block_0.inner": 1, "block_1.inner": 3}
  # left as convolutions: ESA down and mid per block, body_end, upsample
  assert up.lowered((1, 20, 20, 3)).as_text().count("stablehlo.convolution") == 2 * 2 + 2
  x = lr_image(20, 22)[None]
  np.testing.assert_allclose(np.asarray(up.forward(x)),
                             np.asarray(fmp_jax.apply(params, arch, x)), rtol=0, atol=2e-6)


@pytest.mark.parametrize("k,c_in,c_out,path", [
    (3, 1, 16, "taps"), (3, 3, 7, "taps"), (3, 9, 1, "shifted_outputs"), (3, 16, 4, "shifted_outputs"),
    (5, 6, 2, "shifted_outputs"), (3, 4, 5, "conv"), (1, 16, 16, "matmul"), (1, 2, 3, "matmul")])
def test_conv_paths_equal_xla_convolution(k, c_in, c_out, path):
  import jax
  assert inference.conv_path((k, k, c_in, c_out), 1, "SAME") == path
  rng = np.random.default_rng(k * 100 + c_in * 10 + c_out)
  x = rng.standard_normal((2, 9, 13, c_in)).astype(np.float32)
  kernel = rng.standard_normal((k, k, c_in, c_out)).astype(np.float32)
  want = np.asarray(jax.lax.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST))
  # Direct sum over taps in float64, independent of both implementations.
  xp = np.pad(x.astype(np.float64), ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
  direct = sum(xp[:, i:i + 9, j:j + 13] @ kernel[i, j].astype(np.float64)
               for i in range(k) for j in range(k))
  np.testing.assert_allclose(want, direct, rtol=0, atol=1e-4)
  for fn in (inference.conv_by_taps, inference.conv_by_shifted_outputs):
    np.testing.assert_allclose(np.asarray(fn(x, kernel)), direct, rtol=0, atol=1e-4)
  assert inference.conv_path((3, 3, 2, 2), 2, "SAME") == "conv"   # strided
  assert inference.conv_path((3, 3, 2, 2), 1, "VALID") == "conv"  # unpadded


def test_loaded_export_bakes_masks_and_matches_the_masked_model(tmp_path, pruned_params):
  # Kernels saved *without* their zeros: load_upscaler must apply the masks once,
  # giving what the masked model (masks applied inside every conv) computes.
  masks = random_masks(pruned_params)
  path = fmp_jax.save_export(str(tmp_path / "m.msgpack"), pruned_params, PRUNED, masks)
  up = inference.load_upscaler(path, tile=None)
  x = lr_image(21, 17)[None]
  want = np.asarray(fmp_jax.apply(pruned_params, PRUNED, x, masks=masks))
  np.testing.assert_allclose(np.asarray(up.forward(x)), want, rtol=0, atol=1e-6)
  assert np.abs(want - np.asarray(fmp_jax.apply(pruned_params, PRUNED, x))).max() > 1e-3


def test_uint8_and_float_images(pruned_params):
  up = inference.Upscaler(pruned_params, PRUNED, tile=None)
  img = (lr_image(16, 20) * 255).round().astype(np.uint8)
  sr8 = up.upscale(img)
  assert sr8.dtype == np.uint8 and sr8.shape == (32, 40, 3)
  raw = np.asarray(fmp_jax.apply(pruned_params, PRUNED, img[None].astype(np.float32) / 255))[0]
  np.testing.assert_array_equal(sr8, np.clip(np.round(raw * 255), 0, 255).astype(np.uint8))
  srf = up.upscale(img.astype(np.float32) / 255)
  assert srf.dtype == np.float32 and srf.min() >= 0 and srf.max() <= 1
  with pytest.raises(ValueError, match="RGB"):
    up.upscale(img[..., 0])
  with pytest.raises(ValueError, match="minimum"):
    up.upscale(img[:10])


# --- tiling --------------------------------------------------------------------------

@pytest.mark.parametrize("size,tile,overlap", [(100, 40, 8), (41, 40, 8), (40, 40, 8),
                                                (257, 128, 16), (500, 64, 24), (30, 17, 0)])
def test_tile_windows_partition_with_context(size, tile, overlap):
  windows = inference.tile_windows(size, tile, overlap)
  length = min(tile, size)
  assert windows[0][1] == 0 and windows[-1][2] == size
  for i, (start, c0, c1) in enumerate(windows):
    assert 0 <= start and start + length <= size and c0 < c1
    if i:
      assert windows[i - 1][2] == c0           # cores partition the axis
    assert c0 - start >= overlap or start == 0  # context above, or the true border
    assert start + length - c1 >= overlap or start + length == size


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_tiling_is_exact_at_the_receptive_radius(scale):
  arch = Arch(model="edsr", blocks=2, channels=8, scale=scale)
  params = fmp_jax.init_params(arch, seed=1)
  img = lr_image(53, 71)
  radius = inference.receptive_radius(arch)
  up = inference.Upscaler(params, arch, tile=2 * radius + 12, overlap=radius)
  whole = up.upscale_float(img, None)
  tiled = up.upscale_float(img, up.tile)
  assert len(inference.tile_windows(53, up.tile, radius)) >= 3
  np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
  # Every window has the same shape: one compile for all tiles (+ one for the whole image).
  assert len(up.compiled) == 2
  if scale == 2:
    # One pixel less context is visibly wrong: the radius is tight, not just sufficient.
    short = inference.Upscaler(params, arch, tile=up.tile, overlap=radius - 1)
    assert np.abs(short.upscale_float(img, up.tile) - whole).max() > 2e-5  # > the 1e-5 tolerance


def test_esrb_tiling_is_close(pruned_params):
  # ESA's pooled attention branch sees the window, not the image: not exact.
  # Measured on this model: max |diff| ~ 1e-3, PSNR ~ 80 dB; on ESRB-6-256
  # (dense random and FMP-pruned) at 360x640, tile 128: see bench/RESULTS.md.
  up = inference.Upscaler(pruned_params, PRUNED, tile=48)
  assert up.overlap == inference.default_overlap(PRUNED) == 8
  err = inference.measure_tiling_error(up, lr_image(90, 110), tile=48)
  assert err["max_abs"] < 1e-2 and err["psnr_db"] > 60, err
  assert err["max_abs"] > 0  # documents that it is not bit-identical


@pytest.mark.parametrize("h,w", [(17, 23), (37, 150), (150, 37), (61, 61)])
def test_odd_sizes_and_images_smaller_than_a_tile(h, w):
  params = fmp_jax.init_params(EDSR, seed=2)
  up = inference.Upscaler(params, EDSR, tile=40, overlap=inference.receptive_radius(EDSR))
  img = lr_image(h, w, seed=h)
  tiled = up.upscale(img, clip=False)
  assert tiled.shape == (2 * h, 2 * w, 3)
  whole = np.asarray(fmp_jax.apply(params, EDSR, img[None]))[0]
  np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


def test_tile_batch_pads_the_last_batch():
  params = fmp_jax.init_params(EDSR, seed=2)
  up = inference.Upscaler(params, EDSR, tile=32, overlap=8, tile_batch=4)
  img = lr_image(45, 70)   # 2 x 4 windows? whatever the count, one shape per call
  out = up.upscale(img, clip=False)
  np.testing.assert_allclose(out, np.asarray(fmp_jax.apply(params, EDSR, img[None]))[0],
                             rtol=0, atol=1e-5)
  assert list(up.compiled) == [(4, 32, 32, 3)]


def test_channel_padding_is_exact(pruned_params):
  padded, arch8 = inference.pad_channels(pruned_params, PRUNED, 8)
  assert dict(arch8.widths) == {"stream": 16, "block_0.inner": 8, "block_1.inner": 16}
  _, arch_min = inference.pad_channels(pruned_params, PRUNED, 8, min_width=6)
  assert dict(arch_min.widths) == {"stream": 16, "block_0.inner": 5, "block_1.inner": 16}
  x = lr_image(20, 24)[None]
  np.testing.assert_allclose(np.asarray(fmp_jax.apply(padded, arch8, x)),
                             np.asarray(fmp_jax.apply(pruned_params, PRUNED, x)),
                             rtol=0, atol=1e-5)


def test_bad_tile_settings(pruned_params):
  with pytest.raises(ValueError, match="2\\*overlap"):
    inference.Upscaler(pruned_params, PRUNED, tile=32, overlap=16)
  with pytest.raises(ValueError, match="minimum|smallest"):
    inference.Upscaler(pruned_params, PRUNED, tile=8, overlap=0)


# --- tools/upscale.py end to end -------------------------------------------------------

def run_tool(repo_root, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, str(repo_root / "tools" / "upscale.py"), *args],
                        capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
  arch = Arch(blocks=1, channels=8, scale=2)
  path = tmp_path_factory.mktemp("export") / "tiny.msgpack"
  fmp_jax.save_export(str(path), fmp_jax.init_params(arch, seed=0), arch)
  return path


def test_upscale_tool_writes_png(repo_root, tiny_export, tmp_path):
  from PIL import Image
  rng = np.random.default_rng(0)
  src = tmp_path / "in.png"
  Image.fromarray(rng.integers(0, 256, (37, 50, 4), dtype=np.uint8), "RGBA").save(src)
  out = tmp_path / "sub" / "out.png"
  r = run_tool(repo_root, "--model", str(tiny_export), str(src), str(out), "--tile", "24",
               "--overlap", "4")
  assert r.returncode == 0, r.stderr
  assert "RGBA" in r.stderr and "alpha dropped" in r.stderr
  with Image.open(out) as im:
    assert im.mode == "RGB" and im.size == (100, 74)
    got = np.asarray(im)
  # The tool's output is the library's output on the RGB channels.
  up = inference.load_upscaler(str(tiny_export), tile=24, overlap=4)
  np.testing.assert_array_equal(got, up.upscale(np.asarray(Image.open(src).convert("RGB"))))


def test_upscale_tool_grayscale(repo_root, tiny_export, tmp_path):
  from PIL import Image
  src = tmp_path / "gray.png"
  Image.fromarray(np.full((20, 16), 128, np.uint8), "L").save(src)
  r = run_tool(repo_root, "--model", str(tiny_export), str(src), str(tmp_path / "o.png"))
  assert r.returncode == 0, r.stderr
  assert "grayscale" in r.stderr
  with Image.open(tmp_path / "o.png") as im:
    assert im.size == (32, 40)


@pytest.mark.parametrize("case", ["missing_model", "corrupt_model", "missing_image",
                                  "corrupt_image", "tiny_image"])
def test_upscale_tool_errors_are_one_line(repo_root, tiny_export, tmp_path, case):
  from PIL import Image
  good_img = tmp_path / "ok.png"
  Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(good_img)
  bad = tmp_path / "bad.bin"
  bad.write_bytes(b"\x00\x01not msgpack nor png\xff" * 10)
  tiny = tmp_path / "tiny.png"
  Image.fromarray(np.zeros((8, 40, 3), np.uint8)).save(tiny)
  model, img, needle = {
      "missing_model": (tmp_path / "nope.msgpack", good_img, "nope.msgpack"),
      "corrupt_model": (bad, good_img, "bad.bin"),
      "missing_image": (tiny_export, tmp_path / "nope.png", "nope.png"),
      "corrupt_image": (tiny_export, bad, "bad.bin"),
      "tiny_image": (tiny_export, tiny, "8x40"),
  }[case]
  r = run_tool(repo_root, "--model", str(model), str(img), str(tmp_path / "o.png"))
  assert r.returncode == 1
  assert "Traceback" not in r.stderr
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("upscale.py: error:") and needle in lines[0], \
      r.stderr
  assert not (tmp_path / "o.png").exists()


# --- tools/compare.py ------------------------------------------------------------------

def test_compare_tool_writes_one_png(repo_root, tiny_export, tmp_path):
  from PIL import Image
  pruned = Arch(blocks=1, channels=8, scale=2, widths={"stream": 5, "block_0.inner": 3})
  ppath = tmp_path / "pruned.msgpack"
  fmp_jax.save_export(str(ppath), fmp_jax.init_params(pruned, seed=1), pruned)
  out = tmp_path / "cmp.png"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  r = subprocess.run([sys.executable, str(repo_root / "tools" / "compare.py"), "--export",
                      str(ppath), "--dense-export", str(tiny_export), "--bundled", "coins",
                      "--crop", "10,20,64", "--out", str(out)],
                     capture_output=True, text=True, env=env, timeout=120)
  assert r.returncode == 0, r.stderr
  assert "Bicubic" in r.stdout and "Dense" in r.stdout and "FMP" in r.stdout
  with Image.open(out) as im:
    assert im.size[0] > 2 * im.size[1]  # one row of four panels
  r = subprocess.run([sys.executable, str(repo_root / "tools" / "compare.py"), "--export",
                      str(ppath), "--bundled", "coins", "--scale", "3", "--out", str(out)],
                     capture_output=True, text=True, env=env, timeout=120)
  assert r.returncode == 1 and "Traceback" not in r.stderr and "x2" in r.stderr


def test_large_batches_are_split_into_whole_image_calls(pruned_params):
  x = np.stack([lr_image(20, 24, seed=s) for s in range(5)])
  want = np.asarray(inference.Upscaler(pruned_params, PRUNED, tile=None,
                                       max_call_pixels=None).forward(x))
  # 2 images of 20x24 = 960 px fit in 1000: calls of 2, 2, 1.
  up = inference.Upscaler(pruned_params, PRUNED, tile=None, max_call_pixels=1000)
  assert up.call_shapes(x.shape) == [(2, 20, 24, 3), (2, 20, 24, 3), (1, 20, 24, 3)]
  np.testing.assert_allclose(np.asarray(up.forward(x)), want, rtol=0, atol=1e-6)
  assert sorted(up.compiled) == [(1, 20, 24, 3), (2, 20, 24, 3)]
  # An image larger than the threshold still runs, alone.
  assert up.call_shapes((3, 40, 40, 3)) == [(1, 40, 40, 3)] * 3
  assert inference.default_max_call_pixels("gpu") is None


@pytest.mark.parametrize("scale", [2, 4])
def test_padding_an_edsr_whose_upsampler_follows_the_stream(scale):
  arch = Arch(model="edsr", blocks=1, channels=16, scale=scale, prune_upsampler=True,
              widths={"stream": 5, "block_0.inner": 7})
  params = fmp_jax.init_params(arch, seed=2)
  padded, arch8 = inference.pad_channels(params, arch, 8)
  assert arch8.width("upsample_0") == 4 * 8
  x = lr_image(16, 15)[None]
  np.testing.assert_allclose(np.asarray(fmp_jax.apply(padded, arch8, x)),
                             np.asarray(fmp_jax.apply(params, arch, x)), rtol=0, atol=1e-5)
  up = inference.Upscaler(params, arch)
  np.testing.assert_allclose(up(x[0]), np.asarray(fmp_jax.apply(params, arch, x))[0],
                             rtol=0, atol=1e-4)


def test_run_widths_pad_each_group_to_its_own_width_exactly(pruned_params, tmp_path):
  plan = {"stream": 16, "block_0.inner": 8, "block_1.inner": 13}
  up = inference.Upscaler(pruned_params, PRUNED, tile=None, run_widths=plan)
  assert dict(up.arch.widths) == plan
  x = lr_image(20, 24)[None]
  np.testing.assert_allclose(np.asarray(up.forward(x)),
                             np.asarray(fmp_jax.apply(pruned_params, PRUNED, x)),
                             rtol=0, atol=1e-5)
  # An export written with a plan runs at it; explicit padding settings win over it.
  path = str(tmp_path / "m.msgpack")
  fmp_jax.save_export(path, pruned_params, PRUNED, meta={"run_widths": plan})
  assert dict(inference.load_upscaler(path, tile=None).arch.widths) == plan
  assert dict(inference.load_upscaler(path, tile=None, channel_multiple=1).arch.widths) == \
      dict(PRUNED.widths)
  with pytest.raises(ValueError, match="block_0.inner at 4 must lie between its width 5"):
    inference.Upscaler(pruned_params, PRUNED, run_widths={"block_0.inner": 4})
  with pytest.raises(ValueError, match="not a channel group"):
    inference.Upscaler(pruned_params, PRUNED, run_widths={"block_9.inner": 8})
  with pytest.raises(ValueError, match="not both"):
    inference.Upscaler(pruned_params, PRUNED, run_widths=plan, channel_multiple=8)

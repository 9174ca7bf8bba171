"""Folders, bundled photos and the patch sampler: alignment, determinism, bad input."""

import os

import numpy as np
import pytest
from PIL import Image

from fmp_jax.data import (DataError, PatchSampler, bicubic_downscale, bundled_images,
                          bundled_patches, div2k_pairs, find_benchmark, load_pairs, modcrop)
from fmp_jax.data.bundled import EVAL, LICENSES, TRAIN


def blocky_pair(rng, h, w, s):
  """A random LR image and its x`s` nearest-neighbour HR: hr[::s, ::s] == lr exactly."""
  lr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  return lr, np.kron(lr, np.ones((s, s, 1), np.uint8))


# --- sampler ------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, 3, 4])
def test_crops_are_aligned_and_augmented_together(scale):
  rng = np.random.default_rng(0)
  pairs = [blocky_pair(rng, 30 + i, 41 - i, scale) for i in range(3)]   # non-square
  sampler = PatchSampler([p[1] for p in pairs], scale, 12, 16, seed=5,
                         lr_images=[p[0] for p in pairs], rgb_range=255.0)
  for step in range(3):
    lr, hr = sampler.batch(step)
    assert lr.shape == (16, 12, 12, 3) and hr.shape == (16, 12 * scale, 12 * scale, 3)
    assert lr.dtype == hr.dtype == np.float32
    # Any flip/transpose applied to one but not the other breaks this.
    np.testing.assert_array_equal(hr[:, ::scale, ::scale], lr)


def coordinate_image(h, w):
  """LR whose pixels spell their own position: R = row, G = column, B = 7."""
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  return np.stack([yy, xx, np.full_like(yy, 7)], -1).astype(np.uint8)


def test_patches_are_real_crops_in_all_eight_views():
  lr_img = coordinate_image(40, 50)
  hr_img = np.kron(lr_img, np.ones((2, 2, 1), np.uint8))
  sampler = PatchSampler([hr_img], 2, 6, 64, seed=1, lr_images=[lr_img], rgb_range=255.0)
  lr, hr = sampler.batch(0)
  views = set()
  for patch in lr.astype(int):
    rows, cols = patch[..., 0], patch[..., 1]
    # Undo the view: the patch must be a contiguous 6x6 window of the image.
    corner_y, corner_x = rows.min(), cols.min()
    window = lr_img[corner_y:corner_y + 6, corner_x:corner_x + 6].astype(int)
    candidates = [np.rot90(v, k) for v in (window, window[:, ::-1]) for k in range(4)]
    assert any(np.array_equal(patch, c) for c in candidates)
    views.add((patch[1, 0, 0] - patch[0, 0, 0], patch[1, 0, 1] - patch[0, 0, 1],
               patch[0, 1, 0] - patch[0, 0, 0], patch[0, 1, 1] - patch[0, 0, 1]))
  assert len(views) == 8                       # every dihedral view occurs
  np.testing.assert_array_equal(hr[:, ::2, ::2], lr)
  plain = PatchSampler([hr_img], 2, 6, 64, seed=1, lr_images=[lr_img], augment=False).batch(0)[0]
  assert np.all(np.diff(plain[..., 0], axis=1) > 0)   # rows increase down the patch: no views


def test_lr_made_from_hr_is_matlab_bicubic_of_the_modcropped_hr():
  rng = np.random.default_rng(1)
  hr = rng.integers(0, 256, (41, 37, 3), dtype=np.uint8)
  sampler = PatchSampler([hr], 2, 16, 1, seed=0, augment=False, rgb_range=255.0)
  np.testing.assert_array_equal(sampler.lr[0], bicubic_downscale(hr[:40, :36], 2))
  np.testing.assert_array_equal(sampler.hr[0], hr[:40, :36])


def test_values_scale_with_rgb_range():
  rng = np.random.default_rng(2)
  lr_img, hr_img = blocky_pair(rng, 20, 20, 2)
  lr1, _ = PatchSampler([hr_img], 2, 20, 1, lr_images=[lr_img], augment=False).batch(0)
  lr255, _ = PatchSampler([hr_img], 2, 20, 1, lr_images=[lr_img], augment=False,
                          rgb_range=255.0).batch(0)
  np.testing.assert_array_equal(lr255[0], lr_img.astype(np.float32))
  np.testing.assert_allclose(lr1[0], lr_img / 255.0, rtol=1e-6)
  assert lr1.max() <= 1.0 and lr1.min() >= 0.0


def test_batches_are_a_pure_function_of_seed_and_step():
  rng = np.random.default_rng(2)
  hrs = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(4)]
  a = PatchSampler(hrs, 2, 8, 8, seed=3)
  b = PatchSampler(hrs, 2, 8, 8, seed=3)
  for step in (0, 7, 123456):
    np.testing.assert_array_equal(a.batch(step)[0], b.batch(step)[0])
    np.testing.assert_array_equal(a.batch(step)[1], b.batch(step)[1])
  assert not np.array_equal(a.batch(7)[0], a.batch(8)[0])
  assert not np.array_equal(a.batch(7)[0], PatchSampler(hrs, 2, 8, 8, seed=4).batch(7)[0])
  # Resuming: order of calls does not matter; iteration is batch(0), batch(1), ...
  it = iter(a)
  np.testing.assert_array_equal(next(it)[0], b.batch(0)[0])
  np.testing.assert_array_equal(next(it)[0], b.batch(1)[0])
  np.testing.assert_array_equal(next(a.iter_from(42))[1], b.batch(42)[1])


def test_process_slices_concatenate_to_the_global_batch():
  rng = np.random.default_rng(3)
  hrs = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(4)]
  whole = PatchSampler(hrs, 2, 8, 8, seed=3).batch(7)
  for count in (2, 4, 8):
    parts = [PatchSampler(hrs, 2, 8, 8, seed=3, process_index=i, process_count=count).batch(7)
             for i in range(count)]
    assert parts[0][0].shape[0] == 8 // count
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[1])
  with pytest.raises(DataError, match="multiple of the 3 hosts"):
    PatchSampler(hrs, 2, 8, 8, process_count=3)
  with pytest.raises(DataError, match="process_index=4"):
    PatchSampler(hrs, 2, 8, 8, process_index=4, process_count=4)


def test_small_images_are_named_or_skipped():
  rng = np.random.default_rng(4)
  big = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
  small = rng.integers(0, 256, (30, 64, 3), dtype=np.uint8)
  with pytest.raises(DataError, match="tiny.png: HR 64x30 px is smaller than the 32x32"):
    PatchSampler([big, small], 2, 16, 4, names=["big.png", "tiny.png"])
  with pytest.warns(UserWarning, match="tiny.png"):
    sampler = PatchSampler([big, small], 2, 16, 4, names=["big.png", "tiny.png"],
                           skip_small=True)
  assert sampler.names == ["big.png"]
  with pytest.raises(DataError, match="must be \\(H, W, 3\\) uint8"):
    PatchSampler([big.astype(np.float32)], 2, 16, 4)


def test_bundled_photos_split_licences_and_patches():
  train, held_out = bundled_images("train"), bundled_images("eval")
  assert set(train) == set(TRAIN) and set(held_out) == set(EVAL)
  assert not set(train) & set(held_out) and len(held_out) >= 3
  assert set(LICENSES) == set(TRAIN) | set(EVAL)
  for img in list(train.values()) + list(held_out.values()):
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3
    assert not img.flags.writeable   # shared, cached arrays
  camera = held_out["camera"]        # grayscale photo: three equal channels
  assert np.array_equal(camera[..., 0], camera[..., 2])
  lr, hr = bundled_patches(3, 16, 4, seed=1).batch(0)
  assert lr.shape == (4, 16, 16, 3) and hr.shape == (4, 48, 48, 3)
  assert 0.0 <= lr.min() and hr.max() <= 1.0


# --- folders ------------------------------------------------------------------------------

def save(path, arr):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(arr).save(path)


def make_benchmark(root, name="Set5", scale=2, n=2, size=(24, 30), seed=4):
  rng = np.random.default_rng(seed)
  hrs = []
  for i in range(n):
    hr = rng.integers(0, 256, size + (3,), dtype=np.uint8)
    save(root / name / "HR" / f"img{i}.png", hr)
    save(root / name / "LR_bicubic" / f"X{scale}" / f"img{i}x{scale}.png",
         bicubic_downscale(modcrop(hr, scale), scale))
    hrs.append(hr)
  return root, hrs


def test_benchmark_layout_from_any_entry_point(tmp_path):
  _, hrs = make_benchmark(tmp_path)
  # Overwrite one LR file with a recognisable image: it must be read, not regenerated.
  marker = np.full((12, 15, 3), 7, np.uint8)
  save(tmp_path / "Set5" / "LR_bicubic" / "X2" / "img1x2.png", marker)
  for pairs in (find_benchmark(str(tmp_path), "Set5", 2),
                load_pairs(str(tmp_path / "Set5"), 2),
                load_pairs(str(tmp_path / "Set5" / "HR"), 2)):
    assert [p.name for p in pairs] == ["img0", "img1"]
    assert pairs[0].lr.shape == (12, 15, 3) and pairs[0].hr.shape == (24, 30, 3)
    np.testing.assert_array_equal(pairs[0].hr, hrs[0])
    np.testing.assert_array_equal(pairs[1].lr, marker)
    assert pairs[1].lr_path.endswith("img1x2.png") and pairs[1].hr_path.endswith("img1.png")


def test_benchmark_aliases_subfolder_and_bundled(tmp_path):
  make_benchmark(tmp_path / "benchmark", name="BSD100", n=1)
  (pair,) = find_benchmark(str(tmp_path), "B100", 2)
  assert pair.name == "img0"
  bundled = find_benchmark("", "bundled", 4)
  assert [p.name for p in bundled] == list(EVAL)
  for p in bundled:
    assert p.hr.shape[0] == 4 * p.lr.shape[0] and p.hr.shape[1] == 4 * p.lr.shape[1]
    np.testing.assert_array_equal(p.lr, bicubic_downscale(p.hr, 4))


def test_div2k_layout(tmp_path):
  rng = np.random.default_rng(5)
  hr = rng.integers(0, 256, (20, 22, 3), dtype=np.uint8)
  save(tmp_path / "DIV2K" / "DIV2K_train_HR" / "0001.png", hr)
  lr = rng.integers(0, 256, (10, 11, 3), dtype=np.uint8)   # official LR: read as is
  save(tmp_path / "DIV2K" / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png", lr)
  for pairs in (div2k_pairs(str(tmp_path), 2), load_pairs(str(tmp_path), 2),
                load_pairs(str(tmp_path / "DIV2K" / "DIV2K_train_HR"), 2)):
    (pair,) = pairs
    assert pair.name == "0001"
    np.testing.assert_array_equal(pair.lr, lr)
  # No X3 folder: x3 LR is generated from the mod-cropped HR.
  (pair,) = div2k_pairs(str(tmp_path), 3)
  assert pair.lr_path is None
  np.testing.assert_array_equal(pair.lr, bicubic_downscale(hr[:18, :21], 3))
  with pytest.raises(DataError, match="DIV2K_valid_HR"):
    div2k_pairs(str(tmp_path), 2, split="valid")


def test_hr_only_folder_makes_lr_and_cache_round_trips(tmp_path):
  hr = np.random.default_rng(6).integers(0, 256, (31, 26, 3), dtype=np.uint8)
  save(tmp_path / "imgs" / "a.png", hr)
  (pair,) = load_pairs(str(tmp_path / "imgs"), 3)
  assert pair.hr.shape == (30, 24, 3) and pair.lr_path is None  # mod-cropped
  np.testing.assert_array_equal(pair.lr, bicubic_downscale(hr[:30, :24], 3))
  cache = tmp_path / "cache"
  (first,) = load_pairs(str(tmp_path / "imgs"), 3, cache_dir=str(cache))
  assert len(list(cache.glob("*.npy"))) == 2          # HR and generated LR
  (again,) = load_pairs(str(tmp_path / "imgs"), 3, cache_dir=str(cache))
  np.testing.assert_array_equal(again.lr, pair.lr)
  np.testing.assert_array_equal(again.hr, pair.hr)
  # A changed file gets new cache entries (key: path, size, mtime), not stale data.
  save(tmp_path / "imgs" / "a.png", 255 - hr)
  os.utime(tmp_path / "imgs" / "a.png", ns=(1, 10**18))
  (changed,) = load_pairs(str(tmp_path / "imgs"), 3, cache_dir=str(cache))
  np.testing.assert_array_equal(changed.hr, 255 - hr[:30, :24])


def test_grayscale_rgba_palette_and_16_bit_are_converted(tmp_path):
  rng = np.random.default_rng(7)
  gray = rng.integers(0, 256, (16, 16), dtype=np.uint8)
  save(tmp_path / "g.png", gray)
  rgba = np.dstack([np.full((16, 16, 3), 9, np.uint8), np.full((16, 16), 128, np.uint8)])
  save(tmp_path / "r.png", rgba)
  Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(tmp_path / "w.png")
  Image.fromarray(np.full((16, 16), 257 * 40, np.uint16)).save(tmp_path / "v.png")
  palette = Image.fromarray(np.full((16, 16, 3), 33, np.uint8)).convert(
      "P", palette=Image.Palette.ADAPTIVE)
  palette.save(tmp_path / "p.png")
  pairs = {p.name: p for p in load_pairs(str(tmp_path), 2)}
  np.testing.assert_array_equal(pairs["g"].hr, np.repeat(gray[..., None], 3, -1))
  assert np.all(pairs["r"].hr == 9)                    # alpha dropped, not composited
  assert np.all(pairs["w"].hr == 255) and np.all(pairs["v"].hr == 40)   # 16-bit: v / 257
  assert np.all(pairs["p"].hr == 33)
  for p in pairs.values():
    assert p.hr.dtype == np.uint8 and p.hr.shape == (16, 16, 3)


BAD_CASES = ["missing", "empty", "count", "extra", "unmatched", "size", "corrupt", "truncated",
             "small", "no_set", "lr_dir"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_names_the_file(tmp_path, case):
  root, _ = make_benchmark(tmp_path / "data")
  hr_dir, lr_dir = root / "Set5" / "HR", root / "Set5" / "LR_bicubic" / "X2"
  call = lambda: find_benchmark(str(root), "Set5", 2)
  if case == "missing":
    call, needles = lambda: load_pairs(str(tmp_path / "nope"), 2), ["nope", "no such folder"]
  elif case == "empty":
    (tmp_path / "empty").mkdir()
    call, needles = lambda: load_pairs(str(tmp_path / "empty"), 2), ["empty", "no images"]
  elif case == "count":
    (lr_dir / "img1x2.png").unlink()
    needles = ["HR files without LR", "img1.png", "2 HR images", "1 LR images"]
  elif case == "extra":
    save(lr_dir / "img9x2.png", np.zeros((12, 15, 3), np.uint8))
    needles = ["LR files without HR", "img9x2.png"]
  elif case == "unmatched":
    (lr_dir / "img1x2.png").rename(lr_dir / "otherx2.png")
    needles = ["img1.png", "otherx2.png"]
  elif case == "size":
    save(lr_dir / "img1x2.png", np.zeros((5, 5, 3), np.uint8))
    needles = ["img1x2.png", "img1.png", "5x5"]
  elif case == "corrupt":
    (hr_dir / "img0.png").write_bytes(b"not a png at all")
    needles = ["img0.png", "cannot decode"]
  elif case == "truncated":
    data = (hr_dir / "img1.png").read_bytes()
    (hr_dir / "img1.png").write_bytes(data[: len(data) // 2])
    needles = ["img1.png", "truncated"]
  elif case == "small":
    call = lambda: find_benchmark(str(root), "Set5", 2, min_lr_size=15)
    needles = ["img0.png", "too small", "30x30"]
  elif case == "no_set":
    call, needles = lambda: find_benchmark(str(root), "Urban100", 2), ["Urban100", str(root)]
  elif case == "lr_dir":
    call = lambda: load_pairs(str(hr_dir), 2, lr_dir=str(tmp_path / "nolr"))
    needles = ["nolr"]
  with pytest.raises(DataError) as info:
    call()
  for needle in needles:
    assert needle in str(info.value)
  assert isinstance(info.value, ValueError)   # DataError is a ValueError

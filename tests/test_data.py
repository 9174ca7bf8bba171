"""Folders, bundled photos and the patch sampler: alignment, determinism, bad input."""

import numpy as np
import pytest
from PIL import Image

from fmp_jax.data import (DataError, PatchSampler, benchmark_pairs, bicubic_downscale,
                          bundled_images, div2k_pairs, load_pairs)


def blocky_pair(rng, h, w, s):
  """An LR image and its exact x`s` nearest-neighbour HR, so alignment is checkable exactly."""
  lr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  return lr, np.kron(lr, np.ones((s, s, 1), np.uint8))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_crops_are_aligned_and_augmented_together(scale):
  rng = np.random.default_rng(0)
  pairs = [blocky_pair(rng, 30 + i, 41 - i, scale) for i in range(3)]
  sampler = PatchSampler([p[1] for p in pairs], scale, 12, 16, seed=5,
                         lr_images=[p[0] for p in pairs], rgb_range=255.0)
  for step in range(3):
    lr, hr = sampler.batch(step)
    assert lr.shape == (16, 12, 12, 3) and hr.shape == (16, 12 * scale, 12 * scale, 3)
    np.testing.assert_array_equal(hr[:, ::scale, ::scale], lr)


def test_lr_made_from_hr_matches_bicubic_downscale():
  rng = np.random.default_rng(1)
  hr = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
  sampler = PatchSampler([hr], 2, 16, 1, seed=0, augment=False, rgb_range=255.0)
  np.testing.assert_array_equal(sampler.lr[0], bicubic_downscale(hr, 2))


def test_same_seed_same_batches_and_process_slices():
  rng = np.random.default_rng(2)
  hrs = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(4)]
  a = PatchSampler(hrs, 2, 8, 8, seed=3)
  b = PatchSampler(hrs, 2, 8, 8, seed=3)
  np.testing.assert_array_equal(a.batch(7)[0], b.batch(7)[0])
  assert not np.array_equal(a.batch(7)[0], a.batch(8)[0])
  assert not np.array_equal(a.batch(7)[0], PatchSampler(hrs, 2, 8, 8, seed=4).batch(7)[0])
  parts = [PatchSampler(hrs, 2, 8, 8, seed=3, process_index=i, process_count=4).batch(7)
           for i in range(4)]
  np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), a.batch(7)[1])
  with pytest.raises(DataError, match="multiple of the 3 hosts"):
    PatchSampler(hrs, 2, 8, 8, process_count=3)


def test_augmentation_changes_views():
  rng = np.random.default_rng(3)
  hr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
  plain = PatchSampler([hr], 2, 16, 32, seed=1, augment=False).batch(0)[0]
  aug = PatchSampler([hr], 2, 16, 32, seed=1, augment=True).batch(0)[0]
  assert not np.array_equal(plain, aug)


def test_bundled_photos_split_and_values():
  train, held_out = bundled_images("train"), bundled_images("eval")
  assert not set(train) & set(held_out) and len(held_out) >= 3
  for img in list(train.values()) + list(held_out.values()):
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3


# --- folders ------------------------------------------------------------------------------

def save(path, arr):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(arr).save(path)


def make_benchmark(root, name="Set5", scale=2, n=2, size=(24, 30)):
  rng = np.random.default_rng(4)
  for i in range(n):
    hr = rng.integers(0, 256, size + (3,), dtype=np.uint8)
    save(root / name / "HR" / f"img{i}.png", hr)
    save(root / name / "LR_bicubic" / f"X{scale}" / f"img{i}x{scale}.png",
         bicubic_downscale(hr, scale))
  return root


def test_benchmark_and_div2k_layouts(tmp_path):
  make_benchmark(tmp_path)
  pairs = benchmark_pairs(str(tmp_path), "Set5", 2)
  assert [p.name for p in pairs] == ["img0", "img1"]
  assert pairs[0].lr.shape == (12, 15, 3) and pairs[0].hr.shape == (24, 30, 3)
  rng = np.random.default_rng(5)
  hr = rng.integers(0, 256, (20, 22, 3), dtype=np.uint8)
  save(tmp_path / "DIV2K_train_HR" / "0001.png", hr)
  save(tmp_path / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png", bicubic_downscale(hr, 2))
  (pair,) = div2k_pairs(str(tmp_path), 2)
  assert pair.name == "0001" and pair.lr.shape == (10, 11, 3)


def test_hr_only_folder_makes_lr(tmp_path):
  hr = np.random.default_rng(6).integers(0, 256, (31, 26, 3), dtype=np.uint8)
  save(tmp_path / "a.png", hr)
  (pair,) = load_pairs(str(tmp_path), 3)
  assert pair.hr.shape == (30, 24, 3)  # mod-cropped
  np.testing.assert_array_equal(pair.lr, bicubic_downscale(hr[:30, :24], 3))


def test_grayscale_rgba_and_16_bit_are_converted(tmp_path):
  gray = np.random.default_rng(7).integers(0, 256, (16, 16), dtype=np.uint8)
  save(tmp_path / "g.png", gray)
  rgba = np.dstack([np.full((16, 16, 3), 9, np.uint8), np.full((16, 16), 128, np.uint8)])
  save(tmp_path / "r.png", rgba)
  Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(tmp_path / "w.png")
  pairs = {p.name: p for p in load_pairs(str(tmp_path), 2)}
  np.testing.assert_array_equal(pairs["g"].hr, np.repeat(gray[..., None], 3, -1))
  assert np.all(pairs["r"].hr == 9) and np.all(pairs["w"].hr == 255)


@pytest.mark.parametrize("case", ["missing", "empty", "count", "size", "corrupt", "truncated",
                                  "unmatched", "small"])
def test_bad_input_names_the_file(tmp_path, case):
  root = make_benchmark(tmp_path / "data")
  hr_dir, lr_dir = root / "Set5" / "HR", root / "Set5" / "LR_bicubic" / "X2"
  needle = None
  if case == "missing":
    target, needle = str(tmp_path / "nope"), "nope"
  elif case == "empty":
    (tmp_path / "empty").mkdir()
    target, needle = str(tmp_path / "empty"), "no images"
  elif case == "count":
    (lr_dir / "img1x2.png").unlink()
    needle = "has 1 images"
  elif case == "size":
    save(lr_dir / "img1x2.png", np.zeros((5, 5, 3), np.uint8))
    needle = "img1x2.png"
  elif case == "corrupt":
    (hr_dir / "img0.png").write_bytes(b"not a png at all")
    needle = "img0.png"
  elif case == "truncated":
    data = (hr_dir / "img1.png").read_bytes()
    (hr_dir / "img1.png").write_bytes(data[: len(data) // 2])
    needle = "img1.png"
  elif case == "unmatched":
    (lr_dir / "img1x2.png").rename(lr_dir / "otherx2.png")
    needle = "img1"
  if case in ("missing", "empty"):
    with pytest.raises(DataError, match=needle):
      load_pairs(target, 2)
    return
  if case == "small":
    pairs = benchmark_pairs(str(root), "Set5", 2)
    with pytest.raises(DataError, match="smaller than the 48x48 patch"):
      PatchSampler([p.hr for p in pairs], 2, 48, 2, lr_images=[p.lr for p in pairs],
                   names=[p.name for p in pairs])
    return
  with pytest.raises(DataError, match=needle):
    benchmark_pairs(str(root), "Set5", 2)

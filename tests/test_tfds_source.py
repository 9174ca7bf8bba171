"""The TF-free TFDS route: build array_record from folders, read back, refuse to download."""

import numpy as np
import pytest
from PIL import Image

from fmp_jax.data import DataError, bicubic_downscale, load_pairs
from fmp_jax.data import tfds_source


def test_build_and_read_back(tmp_path):
  rng = np.random.default_rng(0)
  hr_dir = tmp_path / "hr"
  hr_dir.mkdir()
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(hr_dir / f"{i}.png")
  pairs = load_pairs(str(hr_dir), 2)
  path = tfds_source.build_paired_dataset(lambda: pairs, str(tmp_path / "tfds"), "x2")
  hr, lr, names = tfds_source.read_pairs(path)
  assert sorted(names) == ["0", "1", "2"]
  by_name = {p.name: p for p in pairs}
  for h, l, n in zip(hr, lr, names):
    np.testing.assert_array_equal(h, by_name[n].hr)
    np.testing.assert_array_equal(l, bicubic_downscale(by_name[n].hr, 2))


def test_unprepared_dataset_is_a_clear_offline_error(tmp_path):
  with pytest.raises(DataError, match="not available offline"):
    tfds_source.read_pairs("div2k/bicubic_x2", str(tmp_path))

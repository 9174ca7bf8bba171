"""The TF-free TFDS route: build array_record from folders, read back, never touch the network."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fmp_jax.data import DataError, PatchSampler, bicubic_downscale, iter_pairs, load_pairs
from fmp_jax.data import tfds_source


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  """Any attempt to resolve or connect fails the test loudly."""
  def refuse(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args[:2]}")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "getaddrinfo", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)


def write_hr_folder(folder, n=3, size=(20, 24), seed=0):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(folder / f"im{i}.png")
  return folder


def test_build_and_read_back(tmp_path):
  hr_dir = write_hr_folder(tmp_path / "hr")
  pairs = load_pairs(str(hr_dir), 2)
  # A lazy generator, as tools/prepare_data.py passes it.
  path = tfds_source.build_paired_dataset(lambda: iter_pairs(str(hr_dir), 2),
                                          str(tmp_path / "tfds"), 2)
  assert path.endswith("fmp_paired_sr/x2/1.0.0")
  assert any(p.name.startswith("fmp_paired_sr-train.array_record")
             for p in (tmp_path / "tfds" / "fmp_paired_sr" / "x2" / "1.0.0").iterdir())
  hr, lr, names = tfds_source.read_pairs(path)
  assert names == ["im0", "im1", "im2"]   # sorted, like the folder loader
  for h, l, p in zip(hr, lr, pairs):
    np.testing.assert_array_equal(h, p.hr)
    np.testing.assert_array_equal(l, bicubic_downscale(p.hr, 2))
  # The registered name through tfds.data_source reads the same data.
  hr2, _, names2 = tfds_source.read_pairs("fmp_paired_sr/x2", str(tmp_path / "tfds"))
  assert names2 == names and all(np.array_equal(a, b) for a, b in zip(hr, hr2))
  # Same images, same order -> the same training batches as from the folder.
  from_folder = PatchSampler([p.hr for p in pairs], 2, 8, 4, seed=9,
                             lr_images=[p.lr for p in pairs]).batch(3)
  from_tfds = PatchSampler(hr, 2, 8, 4, seed=9, lr_images=lr).batch(3)
  np.testing.assert_array_equal(from_folder[1], from_tfds[1])


# Run in a fresh interpreter where `import tensorflow` fails as if it were not installed,
# so the TF-free route is tested whether or not this environment has TensorFlow.
NO_TF_SCRIPT = """
import json, socket, sys

class HideTensorFlow:
  # Every finder answers "not found" for tensorflow[.*], so both find_spec() (etils' test)
  # and import behave as without TF. Not sys.modules["tensorflow"] = None: TFDS reads any
  # key there as "TF is loaded".
  def __init__(self, finder):
    self.finder = finder

  def find_spec(self, name, path=None, target=None):
    if name == "tensorflow" or name.startswith("tensorflow."):
      return None
    find = getattr(self.finder, "find_spec", None)
    return find(name, path, target) if find else None

  def __getattr__(self, attr):   # find_distributions, invalidate_caches, ...
    return getattr(self.finder, attr)

sys.meta_path[:] = [HideTensorFlow(f) for f in sys.meta_path]

def refuse(*args, **kwargs):
  raise AssertionError(f"network access attempted: {args[:2]}")
socket.socket.connect = socket.getaddrinfo = socket.create_connection = refuse

import numpy as np
from fmp_jax.data import bicubic_downscale, iter_pairs, load_pairs, tfds_source

hr_dir, data_dir = sys.argv[1:3]
path = tfds_source.build_paired_dataset(lambda: iter_pairs(hr_dir, 2), data_dir, 2)
hr, lr, names = tfds_source.read_pairs("fmp_paired_sr/x2", data_dir)
for h, l, p in zip(hr, lr, load_pairs(hr_dir, 2), strict=True):
  np.testing.assert_array_equal(h, p.hr)
  np.testing.assert_array_equal(l, bicubic_downscale(p.hr, 2))
print(json.dumps({"path": path, "names": names, "tf_loaded": "tensorflow" in sys.modules}))
"""


def test_build_and_read_back_without_tensorflow(repo_root, tmp_path):
  hr_dir = write_hr_folder(tmp_path / "hr")
  out = subprocess.run([sys.executable, "-c", NO_TF_SCRIPT, str(hr_dir), str(tmp_path / "tfds")],
                       capture_output=True, text=True, timeout=300, cwd=repo_root,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["path"].endswith("fmp_paired_sr/x2/1.0.0")
  assert result["names"] == ["im0", "im1", "im2"] and not result["tf_loaded"]


def test_existing_dataset_is_reused_or_overwritten(tmp_path):
  hr_dir = write_hr_folder(tmp_path / "hr", n=2)
  data_dir = str(tmp_path / "tfds")
  tfds_source.build_paired_dataset(lambda: iter_pairs(str(hr_dir), 2), data_dir, 2)
  write_hr_folder(tmp_path / "hr3", n=3, seed=1)
  path = tfds_source.build_paired_dataset(lambda: iter_pairs(str(tmp_path / "hr3"), 2),
                                          data_dir, 2)
  assert len(tfds_source.read_pairs(path)[0]) == 2      # reused as is
  path = tfds_source.build_paired_dataset(lambda: iter_pairs(str(tmp_path / "hr3"), 2),
                                          data_dir, 2, overwrite=True)
  assert len(tfds_source.read_pairs(path)[0]) == 3


def make_prepared_div2k(tmp_path):
  """A tiny div2k/bicubic_x2 prepared in array_record by TFDS's own div2k builder.

  Only the download step is replaced (a subclass reads local files instead), so
  the dataset_info, features and file layout are those a user would have.
  """
  from etils import epath
  from tensorflow_datasets.datasets.div2k import div2k_dataset_builder as div2k
  import tensorflow_datasets as tfds

  src = tmp_path / "div2k_src"
  rng = np.random.default_rng(3)
  files = []
  for i in range(1, 4):
    hr = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    (src / "hr").mkdir(parents=True, exist_ok=True)
    (src / "lr").mkdir(parents=True, exist_ok=True)
    Image.fromarray(hr).save(src / "hr" / f"{i:04d}.png")
    Image.fromarray(bicubic_downscale(hr, 2)).save(src / "lr" / f"{i:04d}x2.png")
    files.append((hr, bicubic_downscale(hr, 2)))

  class LocalDiv2k(div2k.Builder, skip_registration=True):
    name = "div2k"

    @classmethod
    def _get_pkg_dir_path(cls):   # metadata (citation, ...) of the real builder
      return epath.Path(div2k.__file__).parent

    def _split_generators(self, dl_manager):
      return {"train": self._local(), "validation": self._local()}

    def _local(self):
      for f in sorted((src / "lr").iterdir()):
        yield f.name, {"lr": str(f), "hr": str(src / "hr" / (f.name[:4] + ".png"))}

  data_dir = tmp_path / "tfds"
  LocalDiv2k(config="bicubic_x2", data_dir=str(data_dir), file_format="array_record"
             ).download_and_prepare(
                 download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return data_dir, files


def test_reads_a_prepared_div2k_from_a_data_dir(tmp_path):
  data_dir, files = make_prepared_div2k(tmp_path)
  for split in ("train", "validation"):
    hr, lr, names = tfds_source.read_pairs("div2k/bicubic_x2", str(data_dir), split=split)
    assert len(hr) == 3 and names == ["00000", "00001", "00002"]
    got = sorted((h.tobytes(), l.tobytes()) for h, l in zip(hr, lr))
    assert got == sorted((h.tobytes(), l.tobytes()) for h, l in files)
  with pytest.raises(DataError, match="no split 'test'.*train, validation"):
    tfds_source.read_pairs("div2k/bicubic_x2", str(data_dir), split="test")


def test_tfrecord_div2k_is_a_clear_error(tmp_path):
  data_dir, _ = make_prepared_div2k(tmp_path)
  version = data_dir / "div2k" / "bicubic_x2" / "2.0.0"
  other = tmp_path / "tfrecord_dir" / "div2k" / "bicubic_x2" / "2.0.0"
  shutil.copytree(version, other)
  info = json.loads((other / "dataset_info.json").read_text())
  info["fileFormat"] = "tfrecord"   # what TFDS writes by default
  (other / "dataset_info.json").write_text(json.dumps(info))
  with pytest.raises(DataError, match="stored as tfrecord.*array_record"):
    tfds_source.read_pairs("div2k/bicubic_x2", str(tmp_path / "tfrecord_dir"))


@pytest.mark.parametrize("name", ["div2k/bicubic_x2", "no_such_dataset_xyz/x2"])
def test_unprepared_or_unknown_dataset_is_an_offline_error(tmp_path, name):
  with pytest.raises(DataError, match="nothing is downloaded"):
    tfds_source.read_pairs(name, str(tmp_path))
  with pytest.raises(DataError, match="scale=5"):
    tfds_source.build_paired_dataset(lambda: [], str(tmp_path), 5)

"""The TFDS route: paired folders -> an array_record TFDS dataset, read back with `data_source`.

No TensorFlow is needed, for building or for reading:

* `FmpPairedSr` is a `GeneratorBasedBuilder` written with
  ``file_format="array_record"``. Its ``lr``/``hr`` features are
  `tfds.features.Image` (the same as TFDS's own ``div2k``); we hand TFDS PNG
  bytes encoded by Pillow, because TFDS encodes numpy images with
  TensorFlow. ``name`` keeps the image name.
* Reading uses `tfds.data_source` / `builder_from_directory(...).as_data_source`,
  random access over array_record, decoded by Pillow.
* An already-prepared ``div2k/bicubic_x{s}`` (TFDS's builder) is read the
  same way from a user-given data_dir, but only if it was prepared with
  ``file_format="array_record"``: TFDS's default, tfrecord, cannot be read
  without TensorFlow and gives a DataError that says so.

Nothing is ever downloaded: reads pass ``download=False, try_gcs=False`` and
TFDS's GCS access is switched off when this module is imported.
"""

from __future__ import annotations

import io
import os
import shutil
from typing import Callable, Iterable, Mapping, Optional, Union

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import file_adapters

from fmp_jax.data.errors import DataError

try:  # tfds 4.9.x keeps this private flag (True by default); pin it for safety.
  from tensorflow_datasets.core.utils import gcs_utils as _gcs_utils
  _gcs_utils._is_gcs_disabled = True  # pylint: disable=protected-access
except ImportError:  # pragma: no cover - other tfds versions
  pass

BUILDER_NAME = "fmp_paired_sr"
SCALES = (2, 3, 4, 8)
PNG_COMPRESS_LEVEL = 1   # 3-25x faster to write than level 9, files 5-30 % larger


def _png_bytes(img: np.ndarray) -> bytes:
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(np.asarray(img, np.uint8)).save(buf, format="png",
                                                  compress_level=PNG_COMPRESS_LEVEL)
  return buf.getvalue()


class FmpPairedSr(tfds.core.GeneratorBasedBuilder):
  """LR/HR pairs of one scale (configs x2, x3, x4, x8); splits as given when building.

  Build with `build_paired_dataset`; the builder is registered as
  ``fmp_paired_sr`` once this module is imported, so
  ``tfds.data_source("fmp_paired_sr/x2", data_dir=...)`` finds it too.
  """
  name = BUILDER_NAME
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f"x{s}", description=f"x{s} LR/HR pairs")
                     for s in SCALES]
  url_infos = None   # nothing to download: skip TFDS's checksums lookup

  def __init__(self, *, pairs_by_split: Optional[Mapping[str, Callable[[], Iterable]]] = None,
               **kwargs):
    self._pairs_by_split = pairs_by_split
    super().__init__(**kwargs)

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="LR/HR super-resolution pairs (8-bit RGB PNG), written by fmp_jax.",
        features=tfds.features.FeaturesDict({
            "lr": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "hr": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "name": tfds.features.Tensor(shape=(), dtype=np.str_)}),
        supervised_keys=("lr", "hr"))

  def _split_generators(self, dl_manager):
    del dl_manager
    if not self._pairs_by_split:
      raise DataError(f"{BUILDER_NAME}: nothing to build; use build_paired_dataset(...).")
    return {split: self._generate_examples(fn) for split, fn in self._pairs_by_split.items()}

  def _generate_examples(self, pairs_fn):
    for pair in pairs_fn():
      yield pair.name, {"lr": _png_bytes(pair.lr), "hr": _png_bytes(pair.hr), "name": pair.name}


def build_paired_dataset(pairs: Union[Callable[[], Iterable], Mapping[str, Callable[[], Iterable]]],
                         data_dir: str, scale: int, overwrite: bool = False) -> str:
  """Writes pairs as an array_record TFDS dataset; returns its directory.

  Args:
    pairs: a callable returning an iterable of `Pair` (uint8 lr, hr) for the
      split "train", or {split name: such a callable}. Called once, lazily,
      so a generator keeps memory flat.
    data_dir: the TFDS data_dir; the dataset lands in
      ``<data_dir>/fmp_paired_sr/x{scale}/1.0.0``.
    scale: SR factor (config x{scale}; one of 2, 3, 4, 8).
    overwrite: replace an existing dataset (otherwise it is reused as is).
  """
  if scale not in SCALES:
    raise DataError(f"scale={scale}: the TFDS dataset has configs x{', x'.join(map(str, SCALES))}.")
  splits = pairs if isinstance(pairs, Mapping) else {"train": pairs}
  builder = FmpPairedSr(pairs_by_split=splits, config=f"x{scale}",
                        data_dir=os.path.abspath(data_dir), file_format="array_record")
  path = os.fspath(builder.data_path)
  if overwrite and os.path.isdir(path):
    shutil.rmtree(path)
    builder = FmpPairedSr(pairs_by_split=splits, config=f"x{scale}",
                          data_dir=os.path.abspath(data_dir), file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return path


def _first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return (text[0] if text else "")[:300]


def open_source(source: str, data_dir: str = "", split: str = "train"):
  """Random-access TFDS data source of a prepared dataset (no download, no TensorFlow).

  Args:
    source: a prepared dataset's version directory (e.g. the path returned
      by `build_paired_dataset`), or a dataset name such as
      ``div2k/bicubic_x2`` or ``fmp_paired_sr/x2`` found under `data_dir`.
    data_dir: TFDS data_dir for names (default: TFDS's default, ~/tensorflow_datasets).
    split: "train", "validation", ...
  Returns:
    a sequence-like source: len(), and [i] -> {"lr": (h, w, 3) uint8,
    "hr": (H, W, 3) uint8, maybe "name": str}.
  """
  if not os.path.isdir(source) and (os.path.isabs(source) or source.startswith(".")
                                    or source.count("/") > 1):
    raise DataError(f"{source}: no such TFDS dataset directory (give a prepared version "
                    f"directory such as <data_dir>/fmp_paired_sr/x2/1.0.0, or a name such as "
                    f"div2k/bicubic_x2 with data_dir).")
  where = (source if os.path.isdir(source)
           else f"{source} under {data_dir or 'the default data_dir'}")
  try:
    if os.path.isdir(source):
      builder = tfds.builder_from_directory(source)
    else:
      builder = tfds.builder(source, data_dir=data_dir or None, try_gcs=False)
    if not builder.is_prepared():
      raise DataError(f"TFDS dataset {where} is not prepared, and nothing is downloaded. "
                      f"Prepare it first (tools/prepare_data.py --tfds, or TFDS's "
                      f"download_and_prepare(file_format='array_record') on a machine with "
                      f"network) or fix the path.")
    fmt = builder.info.file_format
    if fmt is not None and fmt not in file_adapters.FileFormat.with_random_access():
      raise DataError(f"TFDS dataset {where} is stored as {fmt.value}, which "
                      f"needs TensorFlow to read. Re-prepare it with "
                      f"file_format='array_record' (tools/prepare_data.py --tfds from the "
                      f"image folders), or train from the folders directly.")
    if split not in builder.info.splits:
      raise DataError(f"TFDS dataset {where} has no split {split!r}; it has "
                      f"{', '.join(sorted(builder.info.splits))}.")
    if os.path.isdir(source):
      return builder.as_data_source(split=split)
    return tfds.data_source(source, split=split, data_dir=data_dir or None, download=False,
                            try_gcs=False)
  except DataError:
    raise
  except Exception as e:  # TFDS raises many types for a missing, unknown or unreadable dataset
    raise DataError(f"TFDS dataset {where} is not available offline "
                    f"({type(e).__name__}: {_first_line(e)}). Prepare it first "
                    f"(tools/prepare_data.py --tfds) or check the name/path; nothing is "
                    f"downloaded.") from e


def read_pairs(source: str, data_dir: str = "", split: str = "train"):
  """All examples of a prepared dataset as (hr list, lr list, names), sorted by name.

  Sorting by name makes the image order (and so the PatchSampler's batches
  for a seed) the same as reading the same images from folders. Datasets
  without a name feature (TFDS's div2k) are named by their index.
  Images are (H, W, 3) uint8; see `open_source` for `source`/`data_dir`.
  """
  ds = open_source(source, data_dir, split)
  items = []
  for i in range(len(ds)):
    ex = ds[i]
    name = ex.get("name", f"{i:05d}")
    name = name.decode() if isinstance(name, bytes) else str(name)
    items.append((name, np.asarray(ex["hr"], np.uint8), np.asarray(ex["lr"], np.uint8)))
  if not items:
    raise DataError(f"TFDS dataset {source}: split {split!r} is empty.")
  items.sort(key=lambda t: t[0])
  return [t[1] for t in items], [t[2] for t in items], [t[0] for t in items]


def read_as_pairs(source: str, data_dir: str = "", split: str = "train") -> list:
  """`read_pairs` as a list of `fmp_jax.data.Pair` (for evaluation)."""
  from fmp_jax.data.folders import Pair
  hr, lr, names = read_pairs(source, data_dir, split)
  return [Pair(n, l, h) for n, l, h in zip(names, lr, hr)]

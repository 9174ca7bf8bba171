"""The TFDS route: paired folders -> an array_record TFDS dataset, read back with `data_source`.

Building needs no TensorFlow: images are stored as zlib-compressed uint8
tensors (TFDS's `Image` feature would need TensorFlow to PNG-encode). Reading
uses `tfds.data_source`/`builder_from_directory`, which are random-access and
TF-free. An already-prepared ``div2k/bicubic_x{s}`` in array_record format
(its `lr`/`hr` features) is read the same way. Nothing is ever downloaded:
GCS lookups and downloads are switched off on every call.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import tensorflow_datasets as tfds

from fmp_jax.data.errors import DataError

BUILDER_NAME = "fmp_paired_sr"


class FmpPairedSr(tfds.core.GeneratorBasedBuilder):
  """LR/HR pairs of one scale, one split "train"."""
  name = BUILDER_NAME
  VERSION = tfds.core.Version("1.0.0")
  # Nothing to download: skip TFDS's lookup of a checksums file next to the code.
  url_infos = None

  def __init__(self, *, pairs_fn: Callable = None, **kwargs):
    self._pairs_fn = pairs_fn
    super().__init__(**kwargs)

  def _info(self):
    image = lambda: tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8,
                                         encoding=tfds.features.Encoding.ZLIB)
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "lr": image(), "hr": image(), "name": tfds.features.Tensor(shape=(), dtype=np.str_)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for pair in self._pairs_fn():
      yield pair.name, {"lr": pair.lr, "hr": pair.hr, "name": pair.name}


def build_paired_dataset(pairs_fn: Callable[[], Sequence], data_dir: str, config_name: str) -> str:
  """Writes the pairs from `pairs_fn()` as array_record under data_dir; returns the dataset dir."""
  builder = FmpPairedSr(pairs_fn=pairs_fn, data_dir=os.path.join(data_dir, config_name),
                             file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      try_download_gcs=False))
  return builder.data_path.as_posix() if hasattr(builder.data_path, "as_posix") else str(builder.data_path)


def read_pairs(source: str, data_dir: str = "", split: str = "train"):
  """(hr list, lr list, names) from a prepared dataset.

  `source` is a dataset directory written by `build_paired_dataset` (or any
  prepared TFDS version directory), or a registered name such as
  ``div2k/bicubic_x2`` found under `data_dir`.
  """
  try:
    if os.path.isdir(source):
      ds = tfds.builder_from_directory(source).as_data_source(split=split)
    else:
      ds = tfds.data_source(source, split=split, data_dir=data_dir or None, download=False,
                            try_gcs=False)
  except Exception as e:  # TFDS raises several types for a missing/unprepared dataset
    raise DataError(f"TFDS dataset {source!r} (data_dir={data_dir or 'default'}) is not "
                    f"available offline: {type(e).__name__}: {str(e).splitlines()[0][:200]}. "
                    f"Prepare it first (tools/prepare_data.py --tfds) or check the path; "
                    f"nothing is downloaded.") from e
  hr, lr, names = [], [], []
  for i in range(len(ds)):
    ex = ds[i]
    hr.append(np.asarray(ex["hr"], np.uint8))
    lr.append(np.asarray(ex["lr"], np.uint8))
    name = ex.get("name", str(i))
    names.append(name.decode() if isinstance(name, bytes) else str(name))
  return hr, lr, names

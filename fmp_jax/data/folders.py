"""Paired LR/HR images from local folders in the layouts SR users already have.

* DIV2K: ``<root>/DIV2K_train_HR/0001.png`` with
  ``<root>/DIV2K_train_LR_bicubic/X2/0001x2.png`` (``valid`` likewise).
* Benchmarks (BasicSR layout): ``<root>/Set5/HR/baby.png`` with
  ``<root>/Set5/LR_bicubic/X2/babyx2.png``; also found under
  ``<root>/benchmark/Set5``.
* An HR-only folder: LR is made with MATLAB-style bicubic (`imresize`).

HR images are mod-cropped to the scale. Nothing is downloaded.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

import numpy as np

from fmp_jax.data.errors import DataError
from fmp_jax.data.images import list_images, read_image
from fmp_jax.data.imresize import bicubic_downscale, modcrop

BENCHMARKS = ("Set5", "Set14", "B100", "Urban100", "Manga109")


class Pair(NamedTuple):
  name: str
  lr: np.ndarray   # (h, w, 3) uint8
  hr: np.ndarray   # (h*s, w*s, 3) uint8


def load_pairs(hr_dir: str, scale: int, lr_dir: Optional[str] = None) -> list[Pair]:
  """Pairs from an HR folder and (optionally) its LR folder of ``NAMEx{scale}.ext`` files."""
  hr_files = list_images(hr_dir)
  lr_files = {}
  if lr_dir is not None:
    for path in list_images(lr_dir):
      lr_files[os.path.splitext(os.path.basename(path))[0]] = path
    if len(lr_files) != len(hr_files):
      raise DataError(f"{lr_dir} has {len(lr_files)} images but {hr_dir} has {len(hr_files)}; "
                      f"every HR image needs its LR counterpart NAMEx{scale}.png.")
  pairs = []
  for hr_path in hr_files:
    name = os.path.splitext(os.path.basename(hr_path))[0]
    hr = modcrop(read_image(hr_path), scale)
    if lr_dir is None:
      lr = bicubic_downscale(hr, scale)
    else:
      lr_path = lr_files.get(f"{name}x{scale}") or lr_files.get(name)
      if lr_path is None:
        raise DataError(f"{hr_path}: no LR image {name}x{scale}.* in {lr_dir}.")
      lr = read_image(lr_path)
      if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
        raise DataError(f"{lr_path} is {lr.shape[1]}x{lr.shape[0]} but {hr_path} (mod-cropped) "
                        f"is {hr.shape[1]}x{hr.shape[0]}: not a x{scale} pair.")
    pairs.append(Pair(name, lr, hr))
  return pairs


def div2k_pairs(data_dir: str, scale: int, split: str = "train") -> list[Pair]:
  """DIV2K's 800 training (or 100 validation) pairs under `data_dir` (or data_dir/DIV2K)."""
  for root in (data_dir, os.path.join(data_dir, "DIV2K")):
    hr_dir = os.path.join(root, f"DIV2K_{split}_HR")
    if os.path.isdir(hr_dir):
      lr_dir = os.path.join(root, f"DIV2K_{split}_LR_bicubic", f"X{scale}")
      return load_pairs(hr_dir, scale, lr_dir if os.path.isdir(lr_dir) else None)
  raise DataError(f"{data_dir}: no DIV2K_{split}_HR folder here or in {data_dir}/DIV2K; point "
                  f"data.data_dir at the folder that holds DIV2K.")


def benchmark_pairs(data_dir: str, name: str, scale: int) -> list[Pair]:
  """A benchmark set (Set5, ..., Manga109, or any folder name) in the BasicSR layout."""
  for root in (os.path.join(data_dir, name), os.path.join(data_dir, "benchmark", name)):
    if os.path.isdir(root):
      hr_dir = os.path.join(root, "HR")
      if not os.path.isdir(hr_dir):
        hr_dir = root  # a plain folder of HR images
      lr_dir = os.path.join(root, "LR_bicubic", f"X{scale}")
      return load_pairs(hr_dir, scale, lr_dir if os.path.isdir(lr_dir) else None)
  raise DataError(f"{data_dir}: no benchmark folder {name!r} (looked for {name}/HR and "
                  f"benchmark/{name}/HR).")

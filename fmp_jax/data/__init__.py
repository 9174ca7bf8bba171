"""SR data: MATLAB bicubic, image folders, the bundled photos and training patches."""

from __future__ import annotations

import os

from fmp_jax.data.bundled import bundled_images
from fmp_jax.data.errors import DataError
from fmp_jax.data.folders import BENCHMARKS, Pair, benchmark_pairs, div2k_pairs, load_pairs
from fmp_jax.data.imresize import bicubic_downscale, imresize, modcrop
from fmp_jax.data.sampler import PatchSampler


def bundled_patches(scale: int, patch_size: int, batch_size: int, seed: int = 0,
                    rgb_range: float = 1.0) -> PatchSampler:
  """Training patches from the bundled TRAIN photos (LR by MATLAB bicubic)."""
  images = bundled_images("train")
  return PatchSampler(list(images.values()), scale, patch_size, batch_size, seed=seed,
                      rgb_range=rgb_range, names=list(images))


def training_images(data_cfg, scale: int):
  """(hr_images, lr_images or None, names) for config.data.train.

  "bundled": the bundled TRAIN photos; "div2k": DIV2K under data.data_dir;
  "tfds": a prepared TFDS dataset (data.tfds_name); anything else: a folder
  (DIV2K-style root, benchmark-style, or HR-only).
  """
  source = data_cfg.train
  if source == "tfds":
    from fmp_jax.data import tfds_source
    if not data_cfg.tfds_name:
      raise DataError("data.train='tfds' needs data.tfds_name: a prepared dataset directory or "
                      "a name like 'div2k/bicubic_x2' under data.data_dir.")
    return tfds_source.read_pairs(data_cfg.tfds_name, data_cfg.data_dir)
  if source == "bundled":
    images = bundled_images("train")
    return list(images.values()), None, list(images)
  if source == "div2k":
    if not data_cfg.data_dir:
      raise DataError("data.train='div2k' needs data.data_dir: the folder holding "
                      "DIV2K_train_HR/ (set --config.data.data_dir=...).")
    pairs = div2k_pairs(data_cfg.data_dir, scale)
  elif not os.path.isdir(source):
    raise DataError(f"data.train={source!r}: no such folder (use 'bundled', 'div2k', 'tfds' or "
                    f"a folder of training images).")
  elif os.path.isdir(os.path.join(source, "DIV2K_train_HR")):
    pairs = div2k_pairs(source, scale)
  elif os.path.isdir(os.path.join(source, "HR")):
    pairs = benchmark_pairs(os.path.dirname(source.rstrip("/")) or ".",
                            os.path.basename(source.rstrip("/")), scale)
  else:
    pairs = load_pairs(source, scale)
  return [p.hr for p in pairs], [p.lr for p in pairs], [p.name for p in pairs]


def eval_pairs(data_cfg, name: str, scale: int) -> list[Pair]:
  """The pairs of evaluation set `name` ("bundled" or a benchmark under data.data_dir)."""
  if name == "bundled":
    return [Pair(n, bicubic_downscale(modcrop(hr, scale), scale), modcrop(hr, scale))
            for n, hr in bundled_images("eval").items()]
  if not data_cfg.data_dir:
    raise DataError(f"eval set {name!r} needs data.data_dir (the folder holding {name}/HR).")
  return benchmark_pairs(data_cfg.data_dir, name, scale)


__all__ = ["BENCHMARKS", "DataError", "Pair", "PatchSampler", "benchmark_pairs",
           "bicubic_downscale", "bundled_images", "bundled_patches", "div2k_pairs",
           "eval_pairs", "imresize", "load_pairs", "modcrop", "training_images"]

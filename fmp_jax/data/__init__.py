"""SR data: MATLAB bicubic, image folders, the bundled photos, TFDS and training patches.

    from fmp_jax import data
    pairs = data.find_benchmark("/data", "Set5", scale=2)        # [Pair(name, lr, hr), ...]
    sampler = data.PatchSampler([p.hr for p in pairs], 2, 48, 16, lr_images=[p.lr for p in pairs])
    lr, hr = sampler.batch(step)                                  # float32 NHWC in [0, rgb_range]

All images are 8-bit RGB (H, W, 3) uint8 until the sampler/evaluator turns
them into float32 in [0, rgb_range]. Errors are `DataError` (a ValueError)
naming the file or folder and the fix. `tfds_source` (TensorFlow Datasets,
no TensorFlow needed) is imported on demand.
"""

from __future__ import annotations

import os

from fmp_jax.data.bundled import bundled_images
from fmp_jax.data.errors import DataError
from fmp_jax.data.folders import (BENCHMARKS, Pair, benchmark_pairs, bundled_pairs, div2k_pairs,
                                  find_benchmark, iter_pairs, load_pairs, locate_benchmark,
                                  resolve_layout)
from fmp_jax.data.images import list_images
from fmp_jax.data.imresize import bicubic_downscale, bicubic_upscale, imresize, modcrop
from fmp_jax.data.sampler import PatchSampler, bundled_patches


def _require_fields(data_cfg) -> None:
  """The config fields data.train's source needs (tfds: tfds_name; div2k: data_dir)."""
  if data_cfg.train == "tfds" and not getattr(data_cfg, "tfds_name", ""):
    raise DataError("data.train='tfds' needs data.tfds_name: a prepared dataset directory or "
                    "a name like 'div2k/bicubic_x2' under data.data_dir.")
  if data_cfg.train == "div2k" and not data_cfg.data_dir:
    raise DataError("data.train='div2k' needs data.data_dir: the folder holding "
                    "DIV2K_train_HR/ (set --config.data.data_dir=...).")


def training_images(data_cfg, scale: int):
  """(hr_images, lr_images or None, names) for the driver's config.data.

  data_cfg.train: "bundled" (the bundled TRAIN photos, LR made by the
  sampler); "div2k" (DIV2K under data_cfg.data_dir); "tfds" (a prepared
  TFDS dataset: data_cfg.tfds_name, a dataset directory or a name such as
  "div2k/bicubic_x2" under data_cfg.data_dir); anything else is a folder
  (DIV2K root, benchmark-style set folder, or HR-only folder).
  """
  source = data_cfg.train
  if source == "tfds":
    from fmp_jax.data import tfds_source
    _require_fields(data_cfg)
    return tfds_source.read_pairs(data_cfg.tfds_name, data_cfg.data_dir)
  if source == "bundled":
    images = bundled_images("train")
    return list(images.values()), None, list(images)
  if source == "div2k":
    _require_fields(data_cfg)
    pairs = div2k_pairs(data_cfg.data_dir, scale)
  elif not os.path.isdir(source):
    raise DataError(f"data.train={source!r}: no such folder (use 'bundled', 'div2k', 'tfds' or "
                    f"a folder of training images).")
  else:
    pairs = load_pairs(source, scale)
  return [p.hr for p in pairs], [p.lr for p in pairs], [p.name for p in pairs]


def eval_set_names(data_cfg) -> tuple[str, ...]:
  """data.eval_sets as a tuple of names: ("Set5", "Set14") from the tuple form or from the
  command line's `--config.data.eval_sets=Set5,Set14` (which arrives as one string)."""
  value = data_cfg.eval_sets
  items = [value] if isinstance(value, str) else list(value)
  return tuple(name.strip() for item in items for name in str(item).split(",") if name.strip())


def check_sources(data_cfg, scale: int) -> None:
  """Checks, without decoding images, that the training data and every eval set can be found.

  The driver calls this before training so that a wrong path fails in
  seconds. Raises DataError naming the field and the path.
  """
  source = data_cfg.train
  _require_fields(data_cfg)
  if source == "div2k":
    for root in (data_cfg.data_dir, os.path.join(data_cfg.data_dir, "DIV2K")):
      if os.path.isdir(os.path.join(root, "DIV2K_train_HR")):
        list_images(os.path.join(root, "DIV2K_train_HR"))
        break
    else:
      raise DataError(f"data.data_dir={data_cfg.data_dir!r}: no DIV2K_train_HR folder here or in "
                      f"{data_cfg.data_dir}/DIV2K; point it at the folder that holds DIV2K.")
  elif source not in ("bundled", "tfds"):
    if not os.path.isdir(source):
      raise DataError(f"data.train={source!r}: no such folder (use 'bundled', 'div2k', 'tfds' or "
                      f"a folder of training images).")
    list_images(resolve_layout(source, scale)[0])
  names, problems = eval_set_names(data_cfg), []
  for name in names:
    try:
      locate_benchmark(getattr(data_cfg, "data_dir", ""), name, scale)
    except DataError as e:
      problems.append(e)
  if len(problems) == 1:
    raise DataError(f"data.eval_sets: {problems[0]}")
  if problems:   # every missing set at once, not one per run
    raise DataError(f"data.eval_sets: {len(problems)} of {len(names)} set(s) cannot be "
                    f"read:\n  " + "\n  ".join(str(e) for e in problems))


def eval_pairs(data_cfg, name: str, scale: int) -> list[Pair]:
  """The pairs of evaluation set `name` ("bundled" or a benchmark under data_cfg.data_dir)."""
  return find_benchmark(getattr(data_cfg, "data_dir", ""), name, scale)


__all__ = ["BENCHMARKS", "DataError", "Pair", "PatchSampler", "benchmark_pairs",
           "bicubic_downscale", "bicubic_upscale", "bundled_images", "bundled_pairs",
           "bundled_patches", "check_sources", "div2k_pairs", "eval_pairs", "eval_set_names",
           "find_benchmark", "imresize", "iter_pairs", "load_pairs", "locate_benchmark", "modcrop",
           "resolve_layout", "training_images"]

"""The photos that ship inside scikit-image's wheel, as a tiny offline SR dataset.

They are CC0 or public domain (see skimage.data's documentation), need no
download, and serve the demo config, the tests and the "bundled" benchmark.
Grayscale photos are repeated to RGB. The split is fixed: the EVAL photos
are never used for training.
"""

from __future__ import annotations

import functools

import numpy as np

from fmp_jax.data.images import to_rgb_uint8

TRAIN = ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
         "brick", "grass", "gravel", "moon")
EVAL = ("chelsea", "coffee", "camera", "coins")


@functools.lru_cache(maxsize=None)
def _load(name: str) -> np.ndarray:
  import skimage.data
  return to_rgb_uint8(getattr(skimage.data, name)(), f"skimage.data.{name}")


def bundled_images(split: str = "train") -> dict[str, np.ndarray]:
  """name -> (H, W, 3) uint8 HR photo, for split "train" or "eval"."""
  names = {"train": TRAIN, "eval": EVAL}.get(split)
  if names is None:
    raise ValueError(f"bundled_images: split={split!r} must be 'train' or 'eval'.")
  return {name: _load(name) for name in names}

"""The photos inside scikit-image's wheel, as a tiny offline SR dataset.

They need no download (they are files in ``skimage/data/``), are CC0 or
public domain per their scikit-image docstrings, and serve the demo config,
the tests and the "bundled" benchmark. The split is fixed: the EVAL photos
are never used for training. Grayscale images are repeated to three equal
RGB channels.

Left out: ``moon`` (no licence statement), ``horse``/``text``/``page``/
``logo``/``clock`` (binary, synthetic or motion-blurred), microscopy stacks
and every image scikit-image fetches from the network (``kidney``, ``lily``,
``skin``, ``brain``, ...).
"""

from __future__ import annotations

import functools

import numpy as np

from fmp_jax.data.images import to_rgb_uint8

# name -> (licence per skimage.data's docstring, RGB or gray, HxW)
LICENSES = {
    "astronaut": "public domain (NASA)",                      # RGB 512x512
    "rocket": "public domain (SpaceX)",                       # RGB 427x640
    "hubble_deep_field": "public domain (NASA)",              # RGB 872x1000
    "immunohistochemistry": "no known copyright restrictions",  # RGB 512x512
    "retina": "CC0 1.0",                                      # RGB 1411x1411
    "brick": "CC0 (cc0textures.com)",                         # gray 512x512
    "grass": "CC0 (cc0textures.com)",                         # gray 512x512
    "gravel": "CC0 (cc0textures.com)",                        # gray 512x512
    "chelsea": "CC0 (Stefan van der Walt)",                   # RGB 300x451
    "coffee": "CC0 (Rachel Michetti)",                        # RGB 400x600
    "camera": "CC0 (Lav Varshney)",                           # gray 512x512
    "coins": "no known copyright restrictions (Walters Art Museum)",  # gray 303x384
}

TRAIN = ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
         "brick", "grass", "gravel")
EVAL = ("chelsea", "coffee", "camera", "coins")


@functools.lru_cache(maxsize=None)
def load(name: str) -> np.ndarray:
  """One bundled photo as a read-only (H, W, 3) uint8 array (decoded once, cached)."""
  if name not in LICENSES:
    raise ValueError(f"bundled photo {name!r} unknown; choose from {', '.join(TRAIN + EVAL)}.")
  import skimage.data
  img = to_rgb_uint8(getattr(skimage.data, name)(), f"skimage.data.{name}")
  img.flags.writeable = False  # shared by every caller through the cache
  return img


_load = load  # older name, used by tools/compare.py


def bundled_images(split: str = "train") -> dict[str, np.ndarray]:
  """name -> read-only (H, W, 3) uint8 HR photo, for split "train" or "eval".

  The "eval" split is the "bundled" benchmark (see `find_benchmark`).
  """
  names = {"train": TRAIN, "eval": EVAL}.get(split)
  if names is None:
    raise ValueError(f"bundled_images: split={split!r} must be 'train' or 'eval'.")
  return {name: load(name) for name in names}

"""Test-wide setup: 8 forced CPU devices (for sharding tests) and quiet JAX logs."""

import os

# Must happen before JAX initialises its backends (conftest is imported first).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO


def photo_batches(scale=2, patch=24, batch=4, seed=0):
  """Endless (lr, hr) batches cut from three scikit-image photos, LR by bicubic resize.

  A test-local source, independent of fmp_jax.data, so pruning tests do not
  depend on the data pipeline.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np
  import skimage.data

  photos = [np.asarray(f(), np.float32) / 255.0
            for f in (skimage.data.astronaut, skimage.data.coffee, skimage.data.chelsea)]
  rng = np.random.default_rng(seed)
  size = patch * scale
  while True:
    crops = []
    for _ in range(batch):
      im = photos[rng.integers(len(photos))]
      y, x = rng.integers(0, im.shape[0] - size), rng.integers(0, im.shape[1] - size)
      crops.append(im[y:y + size, x:x + size])
    hr = jnp.asarray(np.stack(crops))
    yield jax.image.resize(hr, (batch, patch, patch, 3), "bicubic"), hr

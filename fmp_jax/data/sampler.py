"""Random aligned LR/HR training patches, a pure function of (seed, step).

`PatchSampler.batch(step)` returns the same patches for the same (seed, step)
on any machine and any host count, so a resumed run continues exactly where
it stopped (the data position is the step) and a pod's hosts agree on the
global batch while each decodes only its own rows.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np

from fmp_jax.data.errors import DataError
from fmp_jax.data.imresize import bicubic_downscale, modcrop


class PatchSampler:
  """Batches of (lr, hr) patches from paired images.

  Args:
    hr_images: (H, W, 3) uint8 HR images (mod-cropped to `scale` here).
    scale: upscaling factor s.
    patch_size: LR patch side p; HR patches are p*s.
    batch_size: the GLOBAL batch size (all hosts together).
    seed: the data seed.
    lr_images: matching (H/s, W/s, 3) uint8 LR images; made with MATLAB
      bicubic from the HR when omitted.
    augment: random horizontal/vertical flips and 90-degree rotations,
      applied identically to LR and HR.
    rgb_range: output values lie in [0, rgb_range].
    process_index, process_count: this host's rows of the global batch.
    names: optional image names for error messages.
  """

  def __init__(self, hr_images: Sequence[np.ndarray], scale: int, patch_size: int,
               batch_size: int, seed: int = 0, lr_images: Optional[Sequence[np.ndarray]] = None,
               augment: bool = True, rgb_range: float = 1.0, process_index: int = 0,
               process_count: int = 1, names: Optional[Sequence[str]] = None):
    if not hr_images:
      raise DataError("PatchSampler: no training images.")
    if batch_size % process_count:
      raise DataError(f"batch_size={batch_size} must be a multiple of the {process_count} hosts.")
    names = list(names) if names is not None else [f"image {i}" for i in range(len(hr_images))]
    self.scale, self.patch, self.batch_size = scale, patch_size, batch_size
    self.seed, self.augment, self.rgb_range = seed, augment, rgb_range
    self.rows = slice(process_index * batch_size // process_count,
                      (process_index + 1) * batch_size // process_count)
    self.hr = [modcrop(np.asarray(h, np.uint8), scale) for h in hr_images]
    if lr_images is None:
      self.lr = [bicubic_downscale(h, scale) for h in self.hr]
    else:
      self.lr = [np.asarray(l, np.uint8) for l in lr_images]
      if len(self.lr) != len(self.hr):
        raise DataError(f"{len(self.lr)} LR images for {len(self.hr)} HR images.")
    for name, lr, hr in zip(names, self.lr, self.hr):
      if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
        raise DataError(f"{name}: LR {lr.shape[1]}x{lr.shape[0]} is not the HR "
                        f"{hr.shape[1]}x{hr.shape[0]} divided by {scale}.")
      if min(lr.shape[:2]) < patch_size:
        raise DataError(f"{name}: LR size {lr.shape[1]}x{lr.shape[0]} is smaller than the "
                        f"{patch_size}x{patch_size} patch; lower the patch size or drop it.")

  def _draw(self, step: int):
    rng = np.random.default_rng([self.seed, step])
    n = self.batch_size
    which = rng.integers(len(self.hr), size=n)
    fy, fx = rng.random(n), rng.random(n)
    flips = rng.integers(2, size=(n, 3)) if self.augment else np.zeros((n, 3), np.int64)
    return which, fy, fx, flips

  def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """This host's rows of global batch `step`: lr (b, p, p, 3), hr (b, p*s, p*s, 3), float32."""
    which, fy, fx, flips = self._draw(step)
    p, s = self.patch, self.scale
    lrs, hrs = [], []
    for i in range(self.rows.start, self.rows.stop):
      lr_img, hr_img = self.lr[which[i]], self.hr[which[i]]
      y = int(fy[i] * (lr_img.shape[0] - p + 1))
      x = int(fx[i] * (lr_img.shape[1] - p + 1))
      lr = lr_img[y:y + p, x:x + p]
      hr = hr_img[y * s:(y + p) * s, x * s:(x + p) * s]
      lr, hr = augment_pair(lr, hr, flips[i])
      lrs.append(lr)
      hrs.append(hr)
    k = self.rgb_range / 255.0
    return (np.stack(lrs).astype(np.float32) * np.float32(k),
            np.stack(hrs).astype(np.float32) * np.float32(k))

  def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    step = 0
    while True:
      yield self.batch(step)
      step += 1


def augment_pair(lr: np.ndarray, hr: np.ndarray, flips) -> tuple[np.ndarray, np.ndarray]:
  """Horizontal flip, vertical flip, transpose (with the flips: all 8 dihedral views)."""
  hflip, vflip, transpose = (bool(f) for f in flips)
  if hflip:
    lr, hr = lr[:, ::-1], hr[:, ::-1]
  if vflip:
    lr, hr = lr[::-1], hr[::-1]
  if transpose:
    lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
  return lr, hr

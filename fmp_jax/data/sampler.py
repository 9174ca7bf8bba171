"""Random aligned LR/HR training patches, a pure function of (seed, step).

`PatchSampler.batch(step)` returns the same patches for the same (seed, step)
on any machine and any host count, so a resumed run continues exactly where
it stopped (the data position is the step) and a pod's hosts agree on the
global batch while each cuts only its own rows.

Memory: all images are held decoded in memory as uint8 (DIV2K's 800 HR
images plus their x2 LR take about 8 GB).
"""

from __future__ import annotations

import warnings
from typing import Iterator, Optional, Sequence

import numpy as np

from fmp_jax.data.errors import DataError
from fmp_jax.data.imresize import bicubic_downscale, modcrop


class PatchSampler:
  """Batches of aligned (lr, hr) patches from paired images.

  Args:
    hr_images: (H, W, 3) uint8 HR images (mod-cropped to `scale` here).
    scale: integer upscaling factor s.
    patch_size: LR patch side p (px); HR patches are p*s.
    batch_size: the GLOBAL batch size (all hosts together); must be a
      multiple of `process_count`.
    seed: the data seed; batch(step) depends only on (seed, step).
    lr_images: matching (H/s, W/s, 3) uint8 LR images (paired data, e.g.
      DIV2K's official LR); made once with MATLAB bicubic from the HR and
      kept in memory when omitted.
    augment: random horizontal flip, vertical flip and transpose (together
      the 8 flips/90-degree rotations), applied identically to LR and HR.
    rgb_range: output values lie in [0, rgb_range] (1.0 or 255.0).
    process_index, process_count: this host's contiguous rows of the
      global batch (jax.process_index(), jax.process_count()).
    names: image names for error messages (default "image <i>").
    skip_small: images whose LR side is below `patch_size` raise a DataError
      naming them (default); True drops them with a warning instead.
  """

  def __init__(self, hr_images: Sequence[np.ndarray], scale: int, patch_size: int,
               batch_size: int, seed: int = 0, lr_images: Optional[Sequence[np.ndarray]] = None,
               augment: bool = True, rgb_range: float = 1.0, process_index: int = 0,
               process_count: int = 1, names: Optional[Sequence[str]] = None,
               skip_small: bool = False):
    if len(hr_images) == 0:
      raise DataError("PatchSampler: no training images.")
    for label, v in (("scale", scale), ("patch_size", patch_size), ("batch_size", batch_size),
                     ("process_count", process_count)):
      if int(v) != v or v < 1:
        raise DataError(f"PatchSampler: {label}={v} must be a positive integer.")
    if not 0 <= process_index < process_count:
      raise DataError(f"PatchSampler: process_index={process_index} must be in "
                      f"[0, {process_count}).")
    if batch_size % process_count:
      raise DataError(f"PatchSampler: batch_size={batch_size} must be a multiple of the "
                      f"{process_count} hosts (process_count); each host takes an equal slice.")
    if lr_images is not None and len(lr_images) != len(hr_images):
      raise DataError(f"PatchSampler: {len(lr_images)} LR images for {len(hr_images)} HR images.")
    if not rgb_range > 0:
      raise DataError(f"PatchSampler: rgb_range={rgb_range} must be positive.")
    names = list(names) if names is not None else [f"image {i}" for i in range(len(hr_images))]
    self.scale, self.patch, self.batch_size = int(scale), int(patch_size), int(batch_size)
    self.seed, self.augment, self.rgb_range = int(seed), bool(augment), float(rgb_range)
    per_host = self.batch_size // process_count
    self.rows = slice(process_index * per_host, (process_index + 1) * per_host)

    self.hr, self.lr, self.names = [], [], []
    for i, hr in enumerate(hr_images):
      name = names[i]
      hr = modcrop(_as_rgb_uint8(hr, name, "HR"), self.scale)
      if lr_images is None:
        if min(hr.shape[:2]) < self.patch * self.scale:
          lr = None   # too small: reported below, before spending a resize on it
        else:
          lr = bicubic_downscale(hr, self.scale)
      else:
        lr = _as_rgb_uint8(lr_images[i], name, "LR")
        if lr.shape[0] * self.scale != hr.shape[0] or lr.shape[1] * self.scale != hr.shape[1]:
          raise DataError(f"{name}: LR {lr.shape[1]}x{lr.shape[0]} px is not the mod-cropped HR "
                          f"{hr.shape[1]}x{hr.shape[0]} px divided by {self.scale}.")
      if lr is None or min(lr.shape[:2]) < self.patch:
        msg = (f"{name}: HR {hr.shape[1]}x{hr.shape[0]} px is smaller than the "
               f"{self.patch * self.scale}x{self.patch * self.scale} HR patch (LR patch "
               f"{self.patch}x{self.patch} at x{self.scale})")
        if not skip_small:
          raise DataError(msg + "; use larger images or a smaller patch_size, or skip such "
                          "images: --config.data.skip_small=True for the driver, "
                          "skip_small=True for PatchSampler.")
        warnings.warn(msg + "; skipped.")
        continue
      self.hr.append(hr)
      self.lr.append(lr)
      self.names.append(name)
    if not self.hr:
      raise DataError(f"PatchSampler: every image is smaller than the {self.patch}x{self.patch} "
                      f"LR patch; use larger images or a smaller patch_size.")

  def _draw(self, step: int):
    """The whole global batch's random choices for `step` (cheap; every host draws all)."""
    rng = np.random.default_rng([self.seed, int(step)])
    n = self.batch_size
    which = rng.integers(len(self.hr), size=n)
    fy, fx = rng.random(n), rng.random(n)
    views = rng.integers(2, size=(n, 3))
    if not self.augment:
      views[:] = 0
    return which, fy, fx, views

  def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """This host's rows of global batch `step`.

    Returns:
      lr: (b, p, p, 3) float32 in [0, rgb_range]; hr: (b, p*s, p*s, 3)
      float32 in [0, rgb_range]; b = batch_size / process_count.
    """
    if int(step) != step or step < 0:
      raise ValueError(f"step={step} must be a non-negative integer.")
    which, fy, fx, views = self._draw(step)
    p, s = self.patch, self.scale
    n = self.rows.stop - self.rows.start
    lr_out = np.empty((n, p, p, 3), np.uint8)
    hr_out = np.empty((n, p * s, p * s, 3), np.uint8)
    for j, i in enumerate(range(self.rows.start, self.rows.stop)):
      lr_img, hr_img = self.lr[which[i]], self.hr[which[i]]
      # Top-left corner on the LR grid; the HR crop is the same region x s.
      y = int(fy[i] * (lr_img.shape[0] - p + 1))
      x = int(fx[i] * (lr_img.shape[1] - p + 1))
      lr, hr = augment_pair(lr_img[y:y + p, x:x + p],
                            hr_img[y * s:(y + p) * s, x * s:(x + p) * s], views[i])
      lr_out[j], hr_out[j] = lr, hr
    k = np.float32(self.rgb_range / 255.0)
    return lr_out.astype(np.float32) * k, hr_out.astype(np.float32) * k

  def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """batch(0), batch(1), ... forever."""
    return self.iter_from(0)

  def iter_from(self, step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """batch(step), batch(step + 1), ... forever (resuming at `step`)."""
    while True:
      yield self.batch(step)
      step += 1


def augment_pair(lr: np.ndarray, hr: np.ndarray, view) -> tuple[np.ndarray, np.ndarray]:
  """One of the 8 dihedral views of an (LR, HR) patch pair, the same for both.

  view = (hflip, vflip, transpose) as 0/1: flip columns, flip rows, then swap
  H and W (transpose + a flip is a 90-degree rotation). Arrays are (H, W, C).
  """
  hflip, vflip, transpose = (bool(f) for f in view)
  if hflip:
    lr, hr = lr[:, ::-1], hr[:, ::-1]
  if vflip:
    lr, hr = lr[::-1], hr[::-1]
  if transpose:
    lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
  return lr, hr


def _as_rgb_uint8(img, name: str, kind: str) -> np.ndarray:
  img = np.asarray(img)
  if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
    raise DataError(f"{name}: {kind} image must be (H, W, 3) uint8, got {img.dtype} "
                    f"{img.shape}; load files with fmp_jax.data.load_pairs (it converts).")
  return img


def bundled_patches(scale: int, patch_size: int, batch_size: int, seed: int = 0,
                    rgb_range: float = 1.0, **kwargs) -> PatchSampler:
  """A PatchSampler over the bundled TRAIN photos (LR by MATLAB bicubic).

  kwargs go to PatchSampler (augment, process_index, process_count, ...).
  """
  from fmp_jax.data.bundled import bundled_images
  images = bundled_images("train")
  return PatchSampler(list(images.values()), scale, patch_size, batch_size, seed=seed,
                      rgb_range=rgb_range, names=list(images), **kwargs)

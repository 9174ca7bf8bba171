"""Reading images into 8-bit RGB, with clear errors for files that cannot be used."""

from __future__ import annotations

import os

import numpy as np

from fmp_jax.data.errors import DataError

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def to_rgb_uint8(img: np.ndarray, name: str = "image") -> np.ndarray:
  """(H, W[, C]) array -> (H, W, 3) uint8.

  Grayscale is repeated to three channels; an alpha channel is dropped;
  16-bit images are scaled to 8 bits (x / 257, rounded); floats must be in [0, 1].
  """
  img = np.asarray(img)
  if img.dtype == np.bool_:
    img = img.astype(np.uint8) * 255
  if img.dtype == np.uint16:
    img = np.round(img.astype(np.float64) / 257.0).astype(np.uint8)
  elif np.issubdtype(img.dtype, np.floating):
    if img.size and (img.min() < 0 or img.max() > 1):
      raise DataError(f"{name}: float image values must be in [0, 1].")
    img = np.round(img * 255.0).astype(np.uint8)
  elif img.dtype != np.uint8:
    raise DataError(f"{name}: unsupported pixel type {img.dtype}; use 8- or 16-bit images.")
  if img.ndim == 2:
    img = np.repeat(img[..., None], 3, axis=-1)
  elif img.ndim == 3 and img.shape[-1] == 1:
    img = np.repeat(img, 3, axis=-1)
  elif img.ndim == 3 and img.shape[-1] == 4:
    img = img[..., :3]
  elif img.ndim != 3 or img.shape[-1] != 3:
    raise DataError(f"{name}: expected a grayscale, RGB or RGBA image, got shape {img.shape}.")
  return np.ascontiguousarray(img)


def read_image(path: str) -> np.ndarray:
  """Decodes `path` to (H, W, 3) uint8; DataError naming the file on any failure."""
  from PIL import Image, UnidentifiedImageError
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such image file.")
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.uint16 if im.mode.startswith("I;16") else np.int64)
        if arr.dtype == np.int64:
          arr = np.clip(arr, 0, 65535).astype(np.uint16)
      elif im.mode in ("RGB", "L", "RGBA", "LA"):
        arr = np.asarray(im)
        if im.mode == "LA":
          arr = arr[..., 0]
      else:
        arr = np.asarray(im.convert("RGB"))
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise DataError(f"{path}: cannot decode the image ({type(e).__name__}: {e}); the file is "
                    f"corrupt, truncated or not an image.") from e
  return to_rgb_uint8(arr, path)


def list_images(folder: str) -> list[str]:
  """Sorted image files of `folder`; DataError if it is missing or has none."""
  if not os.path.isdir(folder):
    raise DataError(f"{folder}: no such folder.")
  files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                 if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
  if not files:
    raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder.")
  return files

"""Reading image files into 8-bit RGB, with clear errors for files that cannot be used.

Conversion policy (every image becomes (H, W, 3) uint8):

* grayscale (L, 1-bit, 16-bit gray): the gray value is repeated to R = G = B;
* an alpha channel (RGBA, LA, PA) is dropped, NOT composited over a background;
* 16-bit grayscale is scaled to 8 bits as round(v / 257) (65535 -> 255);
  16-bit RGB PNGs are reduced to 8 bits by Pillow itself when it decodes them
  (it keeps the high byte), so they arrive here as ordinary RGB;
* palette, CMYK, YCbCr, ... images are converted to RGB by Pillow;
* float images (e.g. 32-bit float TIFF) must hold values in [0, 1].
"""

from __future__ import annotations

import os

import numpy as np

from fmp_jax.data.errors import DataError

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


def to_rgb_uint8(img: np.ndarray, name: str = "image") -> np.ndarray:
  """(H, W[, C]) array -> (H, W, 3) uint8, by the policy in the module docstring.

  Args:
    img: uint8, uint16, bool or float ([0, 1]) pixels; 1, 3 or 4 channels or none.
    name: what to call the image in a DataError (a file path or a label).
  """
  img = np.asarray(img)
  if img.dtype == np.bool_:
    img = img.astype(np.uint8) * 255
  if img.dtype == np.uint16:
    img = np.round(img.astype(np.float64) / 257.0).astype(np.uint8)
  elif np.issubdtype(img.dtype, np.floating):
    if img.size and not (np.isfinite(img).all() and img.min() >= 0 and img.max() <= 1):
      raise DataError(f"{name}: float image values must be finite and in [0, 1]; save it as "
                      f"an 8-bit PNG instead.")
    img = np.round(img * 255.0).astype(np.uint8)
  elif img.dtype != np.uint8:
    raise DataError(f"{name}: unsupported pixel type {img.dtype}; use 8- or 16-bit images.")
  if img.ndim == 2:
    img = np.repeat(img[..., None], 3, axis=-1)
  elif img.ndim == 3 and img.shape[-1] in (1, 2):   # gray, gray + alpha
    img = np.repeat(img[..., :1], 3, axis=-1)
  elif img.ndim == 3 and img.shape[-1] == 4:        # RGBA: drop alpha
    img = img[..., :3]
  elif img.ndim != 3 or img.shape[-1] != 3:
    raise DataError(f"{name}: expected a grayscale, RGB or RGBA image, got shape {img.shape}.")
  if min(img.shape[:2]) < 1:
    raise DataError(f"{name}: the image is empty ({img.shape[1]}x{img.shape[0]} px).")
  return np.ascontiguousarray(img)


def read_image(path: str) -> np.ndarray:
  """Decodes the file at `path` to (H, W, 3) uint8; DataError naming the file on any failure."""
  from PIL import Image, UnidentifiedImageError
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such image file.")
  try:
    with Image.open(path) as im:
      im.load()   # decode now, so truncated data fails here, naming this file
      if im.mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.uint16)
      elif im.mode == "I":   # 32-bit int: how Pillow may hand over 16-bit gray
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
          raise DataError(f"{path}: 32-bit integer pixels outside 0..65535; save it as an "
                          f"8- or 16-bit PNG.")
        arr = arr.astype(np.uint16)
      elif im.mode == "F":
        arr = np.asarray(im)
      elif im.mode in ("RGB", "L", "RGBA", "LA"):
        arr = np.asarray(im)
      else:
        arr = np.asarray(im.convert("RGBA" if "A" in im.mode or "transparency" in im.info
                                    else "RGB"))
  except DataError:
    raise
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
          Image.DecompressionBombError) as e:
    raise DataError(f"{path}: cannot decode the image ({type(e).__name__}: {e}); the file is "
                    f"corrupt, truncated or not an image. Re-export or re-download it.") from e
  return to_rgb_uint8(arr, path)


def list_images(folder: str) -> list[str]:
  """Sorted paths of the image files directly in `folder`.

  Raises DataError if the folder is missing or holds no image files.
  """
  if not os.path.isdir(folder):
    raise DataError(f"{folder}: no such folder.")
  files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                 if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
                 and os.path.isfile(os.path.join(folder, f)))
  if not files:
    raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder.")
  return files

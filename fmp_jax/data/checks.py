"""Checks and conversions of the images and (lr, hr) batches the notebook API takes.

Accepted formats (`fmp_jax.prune`, `fmp_jax.finetune`, `fmp_jax.apply`):

* channels last: batches are NHWC (N, H, W, 3); `apply` also takes one
  (H, W, 3) image. NCHW/CHW arrays are refused with the transpose to use.
* float values in [0, arch.rgb_range], used as given;
* uint8 values in 0..255, converted to float32 x / 255 * arch.rgb_range.
* hr is `arch.scale` times the lr in both sides, with the same N.

Shapes and dtypes are read on the host for every batch (no device sync);
values are looked at once, on the first batch, so the step loops stay fast.
Every problem raises `DataError` (a ValueError) saying what was expected.
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import numpy as np

from fmp_jax.data.errors import DataError

# Float values above this many rgb_ranges are taken for a wrong scale (e.g.
# 0..255 data for a [0, 1] model), not for bicubic overshoot.
MAX_RANGE_FACTOR = 1.5
MIN_RANGE_FACTOR = -0.5


def _as_array(x: Any, name: str):
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return x
  try:
    return np.asarray(x)
  except Exception as e:  # ragged lists and other non-array objects
    raise DataError(f"{name} must be an array, got {type(x).__name__} ({e}).") from None


def _channels_last(shape: tuple, name: str) -> None:
  """Raises unless the last axis holds the 3 RGB channels, naming NCHW input when seen."""
  if shape[-1] == 3:
    return
  if shape[-3] == 3:
    order = "(N, 3, H, W)" if len(shape) == 4 else "(3, H, W)"
    fix = "x.transpose(0, 2, 3, 1)" if len(shape) == 4 else "x.transpose(1, 2, 0)"
    raise DataError(f"{name} has shape {tuple(shape)}, channels first {order}; the API takes "
                    f"channels last (NHWC); convert with {fix}.")
  raise DataError(f"{name} has shape {tuple(shape)}: the last axis must hold the 3 RGB "
                  f"channels (NHWC); grayscale or RGBA images need converting to RGB first.")


def to_model_dtype(x, rgb_range: float, name: str):
  """uint8 (0..255) -> float32 on [0, rgb_range]; floats pass unchanged; others refused."""
  dtype = np.dtype(x.dtype)
  if dtype == np.uint8:
    return x.astype(np.float32) * np.float32(rgb_range / 255.0)
  if jax.numpy.issubdtype(dtype, jax.numpy.floating):
    return x
  raise DataError(f"{name} has dtype {dtype}; pass float32 values in [0, {rgb_range:g}] "
                  f"(arch.rgb_range) or uint8 values in 0..255 (converted).")


def check_values(x, rgb_range: float, name: str) -> None:
  """Raises for non-finite values or a range far off [0, rgb_range] (skipped under jit)."""
  if isinstance(x, jax.core.Tracer) or x.size == 0:
    return
  lo, hi = float(x.min()), float(x.max())
  if not (np.isfinite(lo) and np.isfinite(hi)):
    raise DataError(f"{name} holds NaN or Inf values.")
  if hi > MAX_RANGE_FACTOR * rgb_range or lo < MIN_RANGE_FACTOR * rgb_range:
    hint = (" It looks like 0..255 data: divide it by 255, pass it as uint8 (converted), or "
            "build the Arch with rgb_range=255.0." if rgb_range < 2 and hi <= 255.5 else "")
    raise DataError(f"{name} values span [{lo:g}, {hi:g}], but the model expects [0, "
                    f"{rgb_range:g}] (arch.rgb_range).{hint}")


def model_input(lr, rgb_range: float, name: str = "apply: lr"):
  """`apply`'s input as a float NHWC batch, and whether it was one (H, W, 3) image."""
  lr = _as_array(lr, name)
  if lr.ndim not in (3, 4):
    raise DataError(f"{name} has shape {tuple(lr.shape)}; expected a batch (N, H, W, 3) or one "
                    f"image (H, W, 3), channels last.")
  _channels_last(lr.shape, name)
  lr = to_model_dtype(lr, rgb_range, name)
  check_values(lr, rgb_range, name)
  single = lr.ndim == 3
  return (lr[None] if single else lr), single


def check_batch(lr, hr, scale: int, name: str) -> None:
  """Raises unless lr is (N, h, w, 3) and hr is (N, h*scale, w*scale, 3)."""
  for x, label in ((lr, "lr"), (hr, "hr")):
    if x.ndim != 4:
      hint = f"; add the batch axis with {label}[None]" if x.ndim == 3 else ""
      raise DataError(f"{name}: {label} has shape {tuple(x.shape)}; batches are NHWC (N, H, W, "
                      f"3){hint}.")
    _channels_last(x.shape, f"{name}: {label}")
  n, h, w, _ = lr.shape
  want = (n, h * scale, w * scale, 3)
  if tuple(hr.shape) != want:
    raise DataError(f"{name}: hr has shape {tuple(hr.shape)}, but lr {tuple(lr.shape)} at "
                    f"x{scale} needs hr {want}: lr (N, h, w, 3), hr (N, h*{scale}, w*{scale}, "
                    f"3), the same N.")


class CheckedBatches:
  """An iterator over `data`'s (lr, hr) batches, each checked and converted (module doc).

  Data that can be iterated again (a list, a `PatchSampler`, ...) is restarted
  when a pass ends; a one-pass iterator (a generator) that runs out raises
  DataError saying how many batches it gave and how many were needed.

  Args:
    data: iterable of (lr, hr) batches.
    scale, rgb_range: of the architecture the batches feed.
    needed: the most batches the caller may draw (one per step).
    needs: the caller's demand in words, e.g. "needs 100 (steps)".
    caller: "prune" or "finetune", for messages.
  """

  def __init__(self, data: Iterable, scale: int, rgb_range: float, needed: int, needs: str,
               caller: str):
    if (isinstance(data, tuple) and len(data) == 2
        and all(getattr(x, "ndim", 0) == 4 for x in data)):
      raise DataError(f"{caller}: data looks like one (lr, hr) batch; data is an iterable of "
                      f"batches: pass data=[(lr, hr)] (a list is reused as often as needed).")
    try:
      self._it = iter(data)
    except TypeError:
      raise DataError(f"{caller}: data must be an iterable of (lr, hr) batches, got "
                      f"{type(data).__name__}.") from None
    self._data, self._reusable = data, self._it is not data
    self.scale, self.rgb_range = int(scale), float(rgb_range)
    self.needed, self.needs, self.caller = int(needed), needs, caller
    self.given = 0
    self._in_pass = 0

  def __iter__(self):
    return self

  def __next__(self):
    try:
      batch = next(self._it)
    except StopIteration:
      if not (self._reusable and self._in_pass):
        raise self._ran_out() from None
      # A new pass over reusable data; an empty second pass still ends here.
      self._it, self._in_pass = iter(self._data), 0
      try:
        batch = next(self._it)
      except StopIteration:
        raise self._ran_out() from None
    self.given += 1
    self._in_pass += 1
    return self._convert(batch)

  def _ran_out(self) -> DataError:
    got = f"{self.given} batch" + ("" if self.given == 1 else "es")
    head = f"{self.caller}: data gave {got}, but {self.caller} {self.needs}, one batch per step"
    if not self._reusable:
      return DataError(f"{head}. data is a one-pass iterator (e.g. a generator), which is used "
                       f"up and cannot be reused; pass a list or another iterable that can be "
                       f"iterated again (it is restarted when it runs out), or an iterator that "
                       f"yields at least {self.needed} batches.")
    why = "data is empty" if not self.given else "iterating data again gave no batches"
    return DataError(f"{head}; {why}. Pass at least one (lr, hr) batch, e.g. a list of batches "
                     f"(a list is reused as often as needed).")

  def _convert(self, batch):
    name = f"{self.caller}: data batch {self.given}"
    try:
      lr, hr = batch
    except (TypeError, ValueError):
      raise DataError(f"{name}: expected an (lr, hr) pair of arrays, got "
                      f"{type(batch).__name__}.") from None
    lr, hr = _as_array(lr, f"{name}: lr"), _as_array(hr, f"{name}: hr")
    check_batch(lr, hr, self.scale, name)
    lr = to_model_dtype(lr, self.rgb_range, f"{name}: lr")
    hr = to_model_dtype(hr, self.rgb_range, f"{name}: hr")
    if self.given == 1:  # values: the first batch only, to keep the step loop fast
      check_values(lr, self.rgb_range, f"{name}: lr")
      check_values(hr, self.rgb_range, f"{name}: hr")
    return lr, hr


def out_of_batches(step: int, max_steps: int) -> DataError:
  """The error of a step loop whose batch iterator ended early."""
  return DataError(f"the batches ran out at step {step} of at most {max_steps}; pass an "
                   f"iterator that yields a batch for every step.")


__all__ = ["CheckedBatches", "check_batch", "check_values", "model_input", "out_of_batches",
           "to_model_dtype"]

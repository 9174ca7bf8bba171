"""Inference of a compact (exported, physically pruned) model: jitted, cached, tiled.

    from fmp_jax.inference import load_upscaler
    up = load_upscaler("model.msgpack")          # tile=128, overlap=auto
    hr = up.upscale(lr_uint8)                     # (H, W, 3) uint8 -> (H*s, W*s, 3) uint8

What runs
---------
An export's kernels already carry its weight masks as exact zeros, so the hot
path is the plain backbone at the pruned widths: ``model.apply({"params": p}, x)``
with no ``masks`` collection (no per-call mask multiply). `load_upscaler`
re-applies the stored masks once at load time, so a file whose kernels were
edited after masking still runs the model it claims to be.

One XLA executable is compiled per input shape (N, H, W, 3) and kept in
``Upscaler.compiled``; params are passed as arguments, not baked in as
constants, so compiling stays fast even for the dense 8M-param ESRB.

Speed
-----
Counted FLOPs fall ~12x under FMP, but a narrow model does not run at the
dense model's MAC rate by itself. With ``fast_paths`` (default) the forward
pass is rewritten, with the same weights and math, where XLA:CPU is slow:

* channel groups are zero-padded to a multiple of 8 on CPU, 32 on GPU
  (`pad_channels`; exact), except groups of at most `NARROW_OUT` channels;
* 1x1 convs run as matmuls; 3x3 convs with at most `NARROW_IN` inputs as
  unrolled multiply-adds that fuse with the residual add; 3x3 convs with at
  most `NARROW_OUT` outputs as one matmul plus shifted adds (`conv_path`);
* in each ESRB block, the 1x1 conv and ESA's first 1x1 share one matmul
  and the 1x1's bias moves into ESA's gate (`models.esrb.FastBlockOps`, run
  by the block's one definition, `models.esrb.block_forward`), saving two
  passes over the full-resolution stream.

For the process, ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (Linux, set
before Python starts) lets glibc back XLA's large per-call buffers with
transparent huge pages; without it a 360x640 call of a pruned ESRB-6 spends
~0.25 s of ~2.8 s in page faults on first touch of fresh memory. The
measured effect of each step is in bench/RESULTS.md (bench/inference.py).

Tiling
------
Whole-image inference of a large image needs memory proportional to
H*W*channels per activation (the dense ESRB-6-256 at 1000x1000 LR holds 1 GB
per feature map), so `upscale` cuts the LR image into ``tile x tile`` windows.
Each window contributes only its *core*; the rest of the window (at least
``overlap`` LR pixels on every side that is not the image border) is context
that is computed and thrown away. Windows are spread evenly and the last one
is shifted inward so it ends on the border, so **every window has the same
shape (one compile) and no window is padded**: padding the input would not
reproduce the zeros that every 'SAME' convolution inserts at the true image
border, and would change the border pixels. An image smaller than a tile in
some dimension is processed at its own size in that dimension (one compile
per such size). Windows are run ``tile_batch`` at a time; the last batch is
completed with zero windows (independent samples, so harmless) to keep the
batch shape fixed.

Exactness. A stack of convolutions is exactly local: an output pixel depends
only on inputs within its receptive-field radius (`receptive_radius`), so
with ``overlap >= receptive_radius(arch)`` tiled output equals whole-image
output up to float summation order. That holds for EDSR (radius 2B+4 LR px:
head, 2 per block, body end, upsampler, and the HR tail conv rounded up).
ESRB is local except for ESA's attention branch (stride-2 conv, 7x7/3 max
pool, 3x3 conv, bilinear resize back to the input size): its pooling grid is
anchored at the window's corner and its bilinear resize maps the window's
size, not the image's, so a tiled ESRB is close to, never bit-equal to,
whole-image output. `measure_tiling_error` quantifies it; the default
overlap for ESRB is its local radius (2B+3) rounded up to a multiple of 8,
16 LR px for ESRB-6 (see bench/RESULTS.md's inference section for measured
differences).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fmp_jax.arch import Arch
from fmp_jax.models import MASKS, MIN_LR_SIDE, MaskedConv, bake_masks, build_model, precision_dtype
from fmp_jax.models.esrb import ESRBBlock, FastBlockOps, block_forward
from fmp_jax.models.layers import (NARROW_OUT, apply_conv, conv_by_shifted_outputs,
                                   conv_by_taps, conv_path)
from fmp_jax.models.widths import (  # noqa: F401  (pad_* re-exported: part of this API)
    default_channel_multiple, pad_channels, pad_to_widths)

DEFAULT_TILE = 128


def receptive_radius(arch: Arch) -> int:
  """LR pixels of context each side an output pixel needs (local layers only): the
  backbone's own count (`Backbone.receptive_radius`; ESRB 2 B + 3, its ESA attention branch
  not counted, see the module docstring)."""
  return arch.backbone.receptive_radius(arch)


def default_overlap(arch: Arch) -> int:
  """The receptive radius rounded up to a multiple of 8 (16 for ESRB-6, 24 for EDSR-8)."""
  return 8 * math.ceil(receptive_radius(arch) / 8)


def tile_windows(size: int, tile: int, overlap: int) -> list[tuple[int, int, int]]:
  """Splits one image axis of `size` LR px into windows of `tile` px.

  Returns [(start, core_start, core_end)]: window i reads [start, start+tile)
  and contributes [core_start, core_end); the cores partition [0, size).
  Every core has >= `overlap` px of context inside its window on each side,
  except where it touches the image border. If size <= tile there is one
  window of the whole axis (callers then use a window of length `size`).
  """
  if tile <= 2 * overlap:
    raise ValueError(f"tile={tile} must exceed 2*overlap={2 * overlap}: a window must keep a "
                     f"core after dropping the overlap on both sides.")
  if size <= tile:
    return [(0, 0, size)]
  core = tile - 2 * overlap
  # First and last windows contribute tile-overlap px (their outer side is the
  # border), middle ones `core` px: n windows cover 2*(tile-overlap)+(n-2)*core.
  n = max(2, math.ceil((size - 2 * overlap) / core))
  starts = [(i * (size - tile)) // (n - 1) for i in range(n)]
  # Consecutive windows overlap by >= 2*overlap (spacing <= core); cut at the middle.
  cuts = [0] + [(starts[i] + starts[i - 1] + tile) // 2 for i in range(1, n)] + [size]
  return [(starts[i], cuts[i], cuts[i + 1]) for i in range(n)]


def _fast_forward(next_fun, args, kwargs, context):
  """Flax interceptor: unmasked ESRB blocks on `FastBlockOps`, other convs via `apply_conv`.

  Same weights, same math; only the float summation order differs (~1e-7
  relative). Modules with masks (search-time models) take the normal path.
  """
  module = context.module
  if context.method_name != "__call__":
    return next_fun(*args, **kwargs)
  if isinstance(module, ESRBBlock):
    channel_masks = args[1] if len(args) > 1 else kwargs.get("channel_masks")
    variables = module.variables
    if channel_masks or MASKS in variables or "params" not in variables:
      return next_fun(*args, **kwargs)
    return block_forward(args[0], FastBlockOps(variables["params"], args[0].dtype))
  if not isinstance(module, MaskedConv):
    return next_fun(*args, **kwargs)
  out_mask = args[1] if len(args) > 1 else kwargs.get("out_mask")
  if out_mask is not None or module.has_variable(MASKS, "weight") or \
      not module.has_variable("params", "kernel"):  # init: let the layer create its params
    return next_fun(*args, **kwargs)
  x = args[0]
  return apply_conv(x, module.get_variable("params", "kernel").astype(x.dtype),
                    module.get_variable("params", "bias").astype(x.dtype),
                    module.strides, module.padding)


# LR pixels per compiled call above which a batch is split into sequential calls.
# On CPU one 360x640 image already fills both cores with large matmuls; a batch
# of 4 ran 16 % (pruned ESRB-6) and 4 % (dense) slower per image than single
# images and needs 4x the memory. Accelerators: no split.
MAX_CALL_PIXELS = {"cpu": 1 << 18}


def default_max_call_pixels(backend: Optional[str] = None) -> Optional[int]:
  """`Upscaler`'s default batch-splitting threshold on `backend` (None: never split)."""
  return MAX_CALL_PIXELS.get(backend or jax.default_backend())


class Upscaler:
  """Jitted super-resolution of a compact model, with shape-keyed compile cache and tiling.

  Args:
    params: backbone params for `arch` (weight masks already baked in).
    arch: the built architecture (pruned widths, if any).
    tile: LR window side for `upscale` (None or 0: always whole-image).
    overlap: LR context px kept on each inner side of a window; default
      `default_overlap(arch)`.
    tile_batch: windows per compiled call.
    max_call_pixels: `forward` runs a batch of more than this many LR pixels
      as consecutive calls of as many whole images as fit (at least one);
      same output. Default "auto": `default_max_call_pixels()`, 2**18 on
      CPU and no split elsewhere; None never splits.
    channel_multiple: zero-pad pruned widths up to this multiple
      (`pad_channels`; exact). Default `default_channel_multiple()`: 8 on
      CPU (stream 162 -> 168 ran 15 % faster, 16 and 32 slower), 32 on GPU
      (on an H200, 0.38 of the dense latency vs 0.47 at 8 and 0.72 at 1);
      1 runs the widths as exported.
      Groups of at most `NARROW_OUT` channels are not padded: they run on
      the narrow paths, which padding would only slow down.
      `self.arch` holds the widths that run.
    run_widths: group -> width to run it at (`pad_to_widths`, exact), in place
      of `channel_multiple`: e.g. a latency table's `plan`, which knows where
      a wider run is faster. An export written with such a plan carries it
      (`meta["run_widths"]`); `from_export` uses it unless told otherwise.
    precision: "float32", or "bfloat16" to run activations and convolutions
      in bf16 on accelerators (the params stay float32; output is float32).
    fast_paths: run each conv on the path `conv_path` picks for its shape
      (1x1 as matmuls, very narrow 3x3 convs without a convolution kernel);
      same result to float rounding, much faster on XLA:CPU. False runs every
      conv as `fmp_jax.apply` does.
  """

  def __init__(self, params: Mapping, arch: Arch, tile: Optional[int] = DEFAULT_TILE,
               overlap: Optional[int] = None, tile_batch: int = 1,
               channel_multiple: Optional[int] = None, fast_paths: bool = True,
               max_call_pixels: Any = "auto", precision: str = "float32",
               run_widths: Optional[Mapping[str, int]] = None):
    if run_widths is not None:
      if channel_multiple is not None:
        raise ValueError("Upscaler: give run_widths or channel_multiple, not both.")
      params, arch = pad_to_widths(params, arch, run_widths)
      channel_multiple = 1
    if channel_multiple is None:
      channel_multiple = default_channel_multiple()
    if channel_multiple > 1:
      params, arch = pad_channels(params, arch, channel_multiple,
                                  min_width=NARROW_OUT + 1 if fast_paths else 1)
    self.arch = arch
    self.scale = arch.scale
    self.params = jax.device_put(jax.tree.map(lambda x: np.asarray(x, np.float32), dict(params)))
    self.tile = int(tile) if tile else None
    self.overlap = default_overlap(arch) if overlap is None else int(overlap)
    if self.overlap < 0:
      raise ValueError(f"overlap={overlap} must be >= 0.")
    if self.tile is not None:
      if self.tile < MIN_LR_SIDE:
        raise ValueError(f"tile={tile} is below the smallest LR side the models accept "
                         f"({MIN_LR_SIDE}).")
      if self.tile <= 2 * self.overlap:
        raise ValueError(f"tile={tile} must exceed 2*overlap={2 * self.overlap}.")
    if tile_batch < 1:
      raise ValueError(f"tile_batch={tile_batch} must be >= 1.")
    self.tile_batch = int(tile_batch)
    self.max_call_pixels = (default_max_call_pixels() if max_call_pixels == "auto"
                            else max_call_pixels)
    self.compiled: dict[tuple, Any] = {}
    model = build_model(arch)
    self.fast_paths = bool(fast_paths)

    compute = precision_dtype(precision)
    self.precision = precision

    def fn(p, x):
      x = x.astype(compute)
      if not self.fast_paths:
        return model.apply({"params": p}, x).astype(jnp.float32)
      with nn.intercept_methods(_fast_forward):
        return model.apply({"params": p}, x).astype(jnp.float32)
    self._fn = jax.jit(fn)

  # --- the compiled core ---------------------------------------------------------
  def lowered(self, shape: tuple[int, ...]):
    """The `jax.stages.Lowered` forward pass for LR batches of `shape` (N, H, W, 3)."""
    return self._fn.lower(self.params, jax.ShapeDtypeStruct(tuple(shape), jnp.float32))

  def executable(self, shape: tuple[int, ...]):
    """The compiled forward pass for LR batches of `shape` (N, H, W, 3), built once."""
    shape = tuple(int(v) for v in shape)
    exe = self.compiled.get(shape)
    if exe is None:
      exe = self.lowered(shape).compile()
      self.compiled[shape] = exe
    return exe

  def forward(self, lr) -> jax.Array:
    """Raw model output, no tiling, clipping or range conversion.

    lr: (N, H, W, 3) float in [0, arch.rgb_range], H, W >= 15 for ESRB.
    Returns (N, H*s, W*s, 3) float32 in the same range (unclipped).
    """
    lr = jnp.asarray(lr, jnp.float32)
    if lr.ndim != 4 or lr.shape[-1] != 3:
      raise ValueError(f"forward expects (N, H, W, 3) LR batches; got shape {tuple(lr.shape)}.")
    if min(lr.shape[1:3]) < MIN_LR_SIDE:
      raise ValueError(f"LR input {lr.shape[1]}x{lr.shape[2]} is below the models' minimum "
                       f"{MIN_LR_SIDE}x{MIN_LR_SIDE} px.")
    outs, start = [], 0
    for shape in self.call_shapes(lr.shape):
      outs.append(self.executable(shape)(self.params, lr[start:start + shape[0]]))
      start += shape[0]
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs)

  def call_shapes(self, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The compiled calls `forward` makes for an LR batch of `shape`, in order (see max_call_pixels)."""
    n, h, w, c = (int(v) for v in shape)
    per_call = n if not self.max_call_pixels else max(1, self.max_call_pixels // (h * w))
    return [(min(per_call, n - i), h, w, c) for i in range(0, n, per_call)]

  # --- images -----------------------------------------------------------------
  def upscale(self, img, tile: Any = "default", clip: bool = True) -> np.ndarray:
    """Super-resolves one image.

    Args:
      img: (H, W, 3) LR image, uint8 in [0, 255] or float in [0, 1].
      tile: override the window side (None: whole image); default `self.tile`.
      clip: clip float output to [0, 1] (uint8 output is always clipped).
    Returns:
      (H*s, W*s, 3) numpy array: uint8 for uint8 input, else float32 in [0, 1].
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3:
      raise ValueError(f"upscale expects an (H, W, 3) RGB image; got shape {img.shape}. "
                       f"Convert grayscale/RGBA to RGB first.")
    is_uint8 = img.dtype == np.uint8
    x = img.astype(np.float32) / (255.0 if is_uint8 else 1.0)
    sr = self.upscale_float(x * self.arch.rgb_range, self.tile if tile == "default" else tile)
    sr = sr / self.arch.rgb_range
    if is_uint8:
      return np.clip(np.round(sr * 255.0), 0, 255).astype(np.uint8)
    return np.clip(sr, 0.0, 1.0) if clip else sr

  def upscale_float(self, lr: np.ndarray, tile: Optional[int]) -> np.ndarray:
    """(H, W, 3) float32 in [0, rgb_range] -> (H*s, W*s, 3) float32, tiled if tile is set."""
    h, w, _ = lr.shape
    if min(h, w) < MIN_LR_SIDE:
      raise ValueError(f"image {h}x{w} is below the models' minimum {MIN_LR_SIDE}x{MIN_LR_SIDE} "
                       f"LR px.")
    if not tile or (h <= tile and w <= tile):
      return np.asarray(self.forward(lr[None]))[0]
    if tile <= 2 * self.overlap or tile < MIN_LR_SIDE:
      raise ValueError(f"tile={tile} must exceed 2*overlap={2 * self.overlap} and be at least "
                       f"{MIN_LR_SIDE}.")
    s = self.scale
    rows, cols = tile_windows(h, tile, self.overlap), tile_windows(w, tile, self.overlap)
    th, tw = min(tile, h), min(tile, w)
    jobs = [(r, c) for r in rows for c in cols]
    out = np.empty((h * s, w * s, 3), np.float32)
    for i in range(0, len(jobs), self.tile_batch):
      chunk = jobs[i:i + self.tile_batch]
      batch = np.zeros((self.tile_batch, th, tw, 3), np.float32)
      for j, ((y0, _, _), (x0, _, _)) in enumerate(chunk):
        batch[j] = lr[y0:y0 + th, x0:x0 + tw]
      sr = np.asarray(self.forward(batch))
      for j, ((y0, cy0, cy1), (x0, cx0, cx1)) in enumerate(chunk):
        out[cy0 * s:cy1 * s, cx0 * s:cx1 * s] = sr[j, (cy0 - y0) * s:(cy1 - y0) * s,
                                                   (cx0 - x0) * s:(cx1 - x0) * s]
    return out

  __call__ = upscale


def from_export(exported, **kwargs) -> Upscaler:
  """An `Upscaler` for an `fmp_jax.export.Exported` (masks baked in once); runs the export's
  own `meta["run_widths"]` (a latency table's plan) unless kwargs set the padding."""
  plan = (exported.meta or {}).get("run_widths")
  if plan and "run_widths" not in kwargs and "channel_multiple" not in kwargs:
    kwargs["run_widths"] = plan
  return Upscaler(bake_masks(exported.params, exported.masks), exported.arch, **kwargs)


def load_upscaler(path: str, **kwargs) -> Upscaler:
  """Loads an export file (`fmp_jax.load`) into an `Upscaler`; kwargs as `Upscaler`.

  Raises `fmp_jax.export.ExportError` naming the path for missing or corrupt files.
  """
  from fmp_jax import export
  return from_export(export.load(path), **kwargs)


def measure_tiling_error(upscaler: Upscaler, lr: np.ndarray, tile: int) -> dict:
  """Tiled vs whole-image output of one float LR image (H, W, 3) in [0, rgb_range].

  Returns {"max_abs", "mean_abs", "psnr_db"} of the tiled output against the
  whole-image output, in units of [0, 1] (PSNR with peak 1, no clipping).
  """
  whole = upscaler.upscale_float(lr, None) / upscaler.arch.rgb_range
  tiled = upscaler.upscale_float(lr, tile) / upscaler.arch.rgb_range
  diff = np.abs(tiled.astype(np.float64) - whole)
  mse = float(np.mean(diff ** 2))
  return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
          "psnr_db": float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))}


__all__ = ["Upscaler", "load_upscaler", "from_export", "receptive_radius", "default_overlap",
           "tile_windows", "pad_channels", "conv_path", "apply_conv",
           "default_channel_multiple", "default_max_call_pixels",
           "conv_by_taps", "conv_by_shifted_outputs", "bake_masks", "measure_tiling_error", "DEFAULT_TILE"]

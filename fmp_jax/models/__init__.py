"""Backbones and the functional entry points `init_params` and `apply`."""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional

import flax
import flax.linen as nn
import numpy as np
import jax
import jax.numpy as jnp

from fmp_jax.arch import BACKBONES, Arch
from fmp_jax.data.checks import model_input
# Importing a backbone's file registers it (`fmp_jax.arch.register_backbone`).
from fmp_jax.models.edsr import EDSR
from fmp_jax.models.esrb import ESRB
from fmp_jax.models.layers import MASKS, PRECISIONS, MaskedConv, pixel_shuffle, precision_dtype

# Smallest LR side every backbone accepts (ESRB's ESA needs 15).
MIN_LR_SIDE = max(b.min_lr_side for b in BACKBONES.values())


def build_model(arch: Arch) -> nn.Module:
  """The Flax module for `arch` (dense or pruned widths)."""
  return arch.backbone.module(arch)


def init_params(arch: Arch, seed: int = 0) -> dict:
  """Fresh backbone params for `arch` (FMP starts from an un-pretrained model).

  Every conv kernel and bias is drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  (the distribution `MaskedConv` declares) with numpy's PCG64 seeded by `seed`,
  layer by layer in param-tree order. Drawing on the host keeps the result
  identical across JAX versions and backends and avoids compiling a large
  random-number program for the full-size models.
  """
  shapes = abstract_params(arch)
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    kernel_shape = shapes_by_layer[path[:-1]]
    bound = 1.0 / np.sqrt(np.prod(kernel_shape[:3]))
    return jnp.asarray(rng.uniform(-bound, bound, leaf.shape).astype(np.float32))

  flat = flax.traverse_util.flatten_dict(shapes)
  shapes_by_layer = {path[:-1]: leaf.shape for path, leaf in flat.items() if path[-1] == "kernel"}
  drawn = {path: draw(path, flat[path]) for path in sorted(flat)}
  return flax.traverse_util.unflatten_dict(drawn)


class ParamsMismatchError(ValueError):
  """Params whose tree or shapes do not match the given Arch."""


def arch_name(arch: Arch) -> str:
  """Short label such as "ESRB-6-256 x2" for messages."""
  return f"{arch.model.upper()}-{arch.blocks}-{arch.channels} x{arch.scale}"


@functools.lru_cache(maxsize=64)
def _param_shapes(arch: Arch) -> dict:
  # Cached: tracing the model costs far more than apply's own check.
  return {path: tuple(leaf.shape) for path, leaf in
          flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract_params(arch))).items()}


def check_params(params: Mapping, arch: Arch) -> None:
  """Raises ParamsMismatchError naming the first layer whose shape differs."""
  expected = _param_shapes(arch)
  if not isinstance(params, Mapping):
    raise ParamsMismatchError(f"params must be the nested dict of arrays of "
                              f"{arch_name(arch)}, got {type(params).__name__}.")
  got = flax.traverse_util.flatten_dict(flax.core.unfreeze(dict(params)))
  missing = sorted(set(expected) - set(got))
  extra = sorted(set(got) - set(expected))
  if missing or extra:
    name = "/".join((missing or extra)[0])
    raise ParamsMismatchError(
        f"params do not match {arch_name(arch)}: {'missing' if missing else 'unexpected'} "
        f"entry {name!r}. Build params with fmp_jax.init_params(arch).")
  for path, shape in expected.items():
    if tuple(np.shape(got[path])) != shape:
      raise ParamsMismatchError(
          f"params do not match {arch_name(arch)}: {'/'.join(path)} has shape "
          f"{tuple(np.shape(got[path]))}, the arch needs {shape}.")


def check_finite_params(params: Mapping, caller: str) -> None:
  """Raises ValueError naming the param arrays that hold NaN or Inf."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(dict(params)))
  # One device round trip for all the counts.
  counts = jax.device_get({p: jnp.sum(~jnp.isfinite(jnp.asarray(x))) for p, x in flat.items()})
  bad = [(p, int(n), int(np.size(flat[p]))) for p, n in sorted(counts.items()) if n]
  if bad:
    listed = ", ".join(f"{'/'.join(p)} ({n} of {size} values)" for p, n, size in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise ValueError(f"{caller}: the given params hold NaN/Inf before any step: {listed}{more}. "
                     f"They come from a diverged run or a broken file; start from "
                     f"fmp_jax.init_params(arch) or a good checkpoint.")


def abstract_params(arch: Arch) -> Any:
  """Param shapes (jax.ShapeDtypeStruct leaves) without materialising weights."""
  model = build_model(arch)
  dummy = jax.ShapeDtypeStruct((1, MIN_LR_SIDE, MIN_LR_SIDE, 3), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), dummy)["params"]


def apply(params: Mapping, arch: Arch, lr: jax.Array,
          masks: Optional[Mapping] = None) -> jax.Array:
  """Upscales `lr` by arch.scale: (N, H, W, 3) -> (N, H*s, W*s, 3).

  `lr` is channels last (NHWC), either a batch (N, H, W, 3) or one image
  (H, W, 3), which gives one (H*s, W*s, 3) image. Float input is taken as
  values in [0, arch.rgb_range]; uint8 input (0..255) is converted to
  float32 x / 255 * arch.rgb_range first. The output is float32 on the
  [0, arch.rgb_range] scale (not clipped). `params` must match `arch`
  (`ParamsMismatchError` names the first layer that does not); input problems
  raise `fmp_jax.data.DataError`.

  `masks` is the ``masks`` collection: ``{"channels": {group: (C,)}}`` for a
  full-width masked model and/or per-layer ``{"<layer>": {"weight": HWIO}}``
  weight masks. Without masks the model runs dense at no extra cost.
  """
  check_params(params, arch)
  x, single = model_input(lr, arch.rgb_range)
  out = _apply_jit(params, arch, jnp.asarray(x), masks or None)
  return out[0] if single else out


def bake_masks(params: Mapping, masks: Optional[Mapping]) -> dict:
  """`params` with every kernel multiplied by its weight mask (host arrays, float32 kept).

  masks: the ``masks`` collection of weight masks, nested
  (``{"block_0": {"conv_a": {"weight": HWIO}}}``) or flat (``{"block_0/conv_a": HWIO}``);
  None or {} returns `params` unchanged. A mask that names no kernel of
  `params` raises ValueError: it belongs to another model.
  """
  if not masks:
    return params
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(dict(params)))
  for path, mask in flax.traverse_util.flatten_dict(flax.core.unfreeze(dict(masks))).items():
    layer = path[:-1] if path[-1] == "weight" else tuple("/".join(path).split("/"))
    key = layer + ("kernel",)
    if key not in flat:
      raise ValueError(f"weight mask {'/'.join(layer)!r} names no kernel in the params.")
    kernel = np.asarray(flat[key])
    flat[key] = kernel * np.asarray(mask, dtype=kernel.dtype)
  return flax.traverse_util.unflatten_dict(flat)


@functools.partial(jax.jit, static_argnums=(1,))
def _apply_jit(params, arch, lr, masks):
  variables = {"params": params}
  if masks:
    variables[MASKS] = masks
  return build_model(arch).apply(variables, lr)


__all__ = ["ESRB", "EDSR", "MaskedConv", "ParamsMismatchError", "pixel_shuffle", "build_model",
           "check_finite_params", "check_params", "init_params", "abstract_params", "apply",
           "MASKS", "MIN_LR_SIDE", "PRECISIONS", "bake_masks", "precision_dtype"]

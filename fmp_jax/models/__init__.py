"""Backbones and the functional entry points `init_params` and `apply`."""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional

import flax
import flax.linen as nn
import numpy as np
import jax
import jax.numpy as jnp

from fmp_jax.arch import Arch
from fmp_jax.models.edsr import EDSR
from fmp_jax.models.esrb import ESRB
from fmp_jax.models.layers import MASKS, MaskedConv, pixel_shuffle

# Smallest LR side every backbone accepts (ESRB's ESA needs 15).
MIN_LR_SIDE = 15


def build_model(arch: Arch) -> nn.Module:
  """The Flax module for `arch` (dense or pruned widths)."""
  return {"esrb": ESRB, "edsr": EDSR}[arch.model](arch)


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


def abstract_params(arch: Arch) -> Any:
  """Param shapes (jax.ShapeDtypeStruct leaves) without materialising weights."""
  model = build_model(arch)
  dummy = jax.ShapeDtypeStruct((1, MIN_LR_SIDE, MIN_LR_SIDE, 3), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), dummy)["params"]


def apply(params: Mapping, arch: Arch, lr: jax.Array,
          masks: Optional[Mapping] = None) -> jax.Array:
  """Upscales `lr` (N,H,W,3 in [0, arch.rgb_range]) to (N, H*s, W*s, 3).

  `masks` is the ``masks`` collection: ``{"channels": {group: (C,)}}`` for a
  full-width masked model and/or per-layer ``{"<layer>": {"weight": HWIO}}``
  weight masks. Without masks the model runs dense at no extra cost.
  """
  return _apply_jit(params, arch, jnp.asarray(lr), masks or None)


@functools.partial(jax.jit, static_argnums=(1,))
def _apply_jit(params, arch, lr, masks):
  variables = {"params": params}
  if masks:
    variables[MASKS] = masks
  return build_model(arch).apply(variables, lr)


__all__ = ["ESRB", "EDSR", "MaskedConv", "pixel_shuffle", "build_model", "init_params",
           "abstract_params", "apply", "MASKS", "MIN_LR_SIDE"]

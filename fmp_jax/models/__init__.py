"""Backbones and the functional entry points `init_params` and `apply`."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
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
  """Fresh backbone params for `arch` (FMP starts from an un-pretrained model)."""
  model = build_model(arch)
  dummy = jnp.zeros((1, MIN_LR_SIDE, MIN_LR_SIDE, 3), jnp.float32)
  return jax.jit(model.init)(jax.random.key(seed), dummy)["params"]


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
  variables = {"params": params}
  if masks:
    variables[MASKS] = masks
  return build_model(arch).apply(variables, lr)


__all__ = ["ESRB", "EDSR", "MaskedConv", "pixel_shuffle", "build_model", "init_params",
           "abstract_params", "apply", "MASKS", "MIN_LR_SIDE"]

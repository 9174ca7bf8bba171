"""The hypernetwork: a pure map from channel vectors and weight indicators to kernels.

For a conv layer with kernel HWIO = (k, k, C_in, C_out), input channel vector
z_in (C_in,), output channel vector z_out (C_out,) and weight indicators u
(HWIO, or (C_in, C_out) with ``indicator="pair"``), DHP's construction lifts
each entry of the outer product Z = z_in z_out^T to an m-dim embedding with a
per-element affine map and maps it with a per-element linear map to a k x k
kernel slice; FMP gates each generated weight by its indicator:

    e[i, o]      = Z[i, o] * w1[i, o] + b1[i, o]                 (m,)
    K[:, :, i, o] = u[:, :, i, o] * Z[i, o] * (w2[:, :, i, o] @ e[i, o])

The extra factor Z makes the map vanish continuously as a latent shrinks and
*exactly* when a channel entry (either side) or an indicator is zero, so a
zero latent is a removed channel or weight, and the masked model equals the
physically sliced one.

Initialisation reproduces given kernels at z = u = 1: with e0 = w1 + b1,
w2 = K e0^T / |e0|^2 gives w2 @ e0 = K. So FMP can start from fresh or from
trained backbone weights alike.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fmp_jax.pruning.complexity import ConvLayer
from fmp_jax.tree_paths import get_at

INDICATORS = ("weight", "pair")


def indicator_shape(layer: ConvLayer, indicator: str) -> tuple[int, ...]:
  kh, kw, ci, co = layer.kernel
  if indicator == "weight":
    return (kh, kw, ci, co)
  if indicator == "pair":
    return (ci, co)
  raise ValueError(f"search.indicator={indicator!r} is unknown; use one of {INDICATORS}.")


def init_layer(kernel: np.ndarray, embed: int, rng: np.random.Generator) -> dict:
  """Hypernetwork params {w1, b1, w2} whose output at z = u = 1 is `kernel` (HWIO)."""
  kh, kw, ci, co = kernel.shape
  scale = 1.0 / np.sqrt(2.0 * embed)  # so |w1 + b1| is about 1
  w1 = rng.normal(0.0, scale, (ci, co, embed)).astype(np.float32)
  b1 = rng.normal(0.0, scale, (ci, co, embed)).astype(np.float32)
  e0 = (w1 + b1).astype(np.float64)
  w2 = (np.asarray(kernel, np.float64)[..., None] * e0[None, None]
        / np.sum(e0 * e0, axis=-1)[None, None, ..., None])
  return {"w1": jnp.asarray(w1), "b1": jnp.asarray(b1), "w2": jnp.asarray(w2, jnp.float32)}


def generate_kernel(h: Mapping[str, jax.Array], z_in: jax.Array, z_out: jax.Array,
                    u: jax.Array) -> jax.Array:
  """One layer's kernel (HWIO) from its hypernetwork params and latents."""
  z = z_in[:, None] * z_out[None, :]                       # (ci, co)
  e = z[..., None] * h["w1"] + h["b1"]                      # (ci, co, m)
  k = jnp.einsum("hwiom,iom->hwio", h["w2"], e)             # (k, k, ci, co)
  gate = z[None, None] * (u if u.ndim == 4 else u[None, None])
  return gate * k


def generate_kernels(layers: Sequence[ConvLayer], hyper: Mapping, channels: Mapping,
                     weights: Mapping, fixed: Mapping) -> dict:
  """Kernels of every layer, keyed by layer path tuple.

  Args:
    layers: the backbone's conv layers (`complexity.layer_table`).
    hyper: nested like the backbone params, {w1, b1, w2} at each layer path.
    channels: prunable group -> channel vector.
    weights: nested like the params, the layer's indicators at each layer path.
    fixed: fixed group -> ones (channel vectors that are never pruned).
  """
  def vec(group):
    return channels[group] if group in channels else fixed[group]
  return {l.path: generate_kernel(get_at(hyper, l.path), vec(l.in_group), vec(l.out_group),
                                  get_at(weights, l.path)) for l in layers}


"""The hypernetwork: a pure map from channel vectors and weight indicators to kernels.

For a conv layer with kernel HWIO = (k, k, C_in, C_out), input channel vector
z_in (C_in,), output channel vector z_out (C_out,) and weight indicators u
(HWIO, or (C_in, C_out) with ``indicator="pair"``), DHP's construction lifts
each entry of the outer product Z = z_in z_out^T to an m-dim embedding with a
per-element affine map and maps it with a per-element linear map (plus a
bias) to a k x k kernel slice; FMP gates each generated weight by its
indicator:

    e[i, o]       = Z[i, o] * w1[i, o] + b1[i, o]                       (m,)
    H[:, :, i, o] = w2[:, :, i, o] @ e[i, o] + b2[:, :, i, o]            (k, k)
    K             = u * H                      (gate="none", DHP's kernel)
    K             = u * Z * H                  (gate="z")

DHP's own kernel (``dhp_base.py``: W2((z_in z_out^T + bias0) w1 + bias1) +
bias2) has no factor Z; its bias0 is absorbed here by b1. Without the Z gate
the kernel is not zero at z = 0, so the search masks every layer's output
with the hard channel mask 1[z != 0]: a zero channel entry then contributes
exactly nothing, and the masked model equals the physically sliced one
either way. With the gate, the kernel itself fades with the latents.

Initialisation reproduces given kernels at the initial latents Z0, u0 = 1:
with e0 = Z0 w1 + b1 and g0 = Z0 (gate) or 1, w2 = K e0^T / (g0 |e0|^2) and
b2 = 0 give K exactly, so FMP can start from fresh or trained backbone
weights alike.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fmp_jax.pruning.complexity import ConvLayer
from fmp_jax.pruning.masks import indicator_as_kernel
from fmp_jax.tree_paths import get_at

# search.indicator -> HWIO kernel shape -> the shape of that layer's weight indicators.
INDICATORS = {
    "weight": lambda kernel: tuple(kernel),              # one per kernel weight
    "pair": lambda kernel: (kernel[2], kernel[3]),       # one per (input, output) channel pair
}


def _no_gate(u, z, k):
  del z
  return u * k


def _z_gate(u, z, k):
  return (u * z[None, None]) * k


# search.gate -> (indicators as HWIO, Z = z_in z_out^T, H) -> kernel (module docstring).
GATES = {"none": _no_gate, "z": _z_gate}


def indicator_shape(layer: ConvLayer, indicator: str) -> tuple[int, ...]:
  if indicator not in INDICATORS:
    raise ValueError(f"search.indicator={indicator!r} is unknown; use one of "
                     f"{tuple(INDICATORS)}.")
  return INDICATORS[indicator](layer.kernel)


def init_layer(kernel: np.ndarray, embed: int, rng: np.random.Generator,
               z_in: np.ndarray | None = None, z_out: np.ndarray | None = None,
               gate: str = "none") -> dict:
  """Hypernetwork params {w1, b1, w2, b2} whose kernel at (z_in, z_out, u = 1) is `kernel`.

  z_in/z_out default to ones. With gate="z" every entry of z_in z_out^T must
  be non-zero (the gate divides by it).
  """
  kh, kw, ci, co = kernel.shape
  z0 = np.ones((ci, co)) if z_in is None else np.outer(z_in, z_out).astype(np.float64)
  scale = 1.0 / np.sqrt(2.0 * embed)  # so |w1 + b1| is about 1
  w1 = rng.normal(0.0, scale, (ci, co, embed)).astype(np.float32)
  b1 = rng.normal(0.0, scale, (ci, co, embed)).astype(np.float32)
  e0 = z0[..., None] * w1.astype(np.float64) + b1
  # The factor the gate multiplies H by at these latents (u = 1): Z0 for "z", 1 for "none".
  ones = np.ones((1, 1, ci, co))
  g0 = GATES[gate](ones, z0, ones)[0, 0]
  if np.any(g0 == 0):
    raise ValueError("hypernetwork init: the Z gate needs non-zero initial latents.")
  w2 = (np.asarray(kernel, np.float64)[..., None] * e0[None, None]
        / (g0 * np.sum(e0 * e0, axis=-1))[None, None, ..., None])
  return {"w1": jnp.asarray(w1), "b1": jnp.asarray(b1), "w2": jnp.asarray(w2, jnp.float32),
          "b2": jnp.zeros(kernel.shape, jnp.float32)}


def generate_kernel(h: Mapping[str, jax.Array], z_in: jax.Array, z_out: jax.Array,
                    u: jax.Array, gate: str = "none") -> jax.Array:
  """One layer's kernel (HWIO) from its hypernetwork params and latents."""
  z = z_in[:, None] * z_out[None, :]                       # (ci, co)
  e = z[..., None] * h["w1"] + h["b1"]                      # (ci, co, m)
  k = jnp.einsum("hwiom,iom->hwio", h["w2"], e) + h["b2"]   # (k, k, ci, co)
  return GATES[gate](indicator_as_kernel(u, k.shape, full=False), z, k)


def generate_kernels(layers: Sequence[ConvLayer], hyper: Mapping, vectors: Mapping,
                     weights: Mapping, gate: str = "none") -> dict:
  """Kernels of every layer, keyed by layer path tuple.

  Args:
    layers: the backbone's conv layers (`complexity.layer_table`).
    hyper: nested like the backbone params, {w1, b1, w2, b2} at each layer path.
    vectors: group -> channel vector at full width, for every group a layer
      reads or writes (fixed groups as ones, tied groups expanded).
    weights: nested like the params, the layer's indicators at each layer path.
    gate: "none" (DHP's kernel) or "z" (faded by z_in z_out^T).
  """
  return {l.path: generate_kernel(get_at(hyper, l.path), vectors[l.in_group],
                                  vectors[l.out_group], get_at(weights, l.path), gate)
          for l in layers}

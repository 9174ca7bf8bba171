"""The latents (channel vectors z, weight indicators u): their start and their optimiser.

Two optimisers, chosen by ``search.latent_optimizer``; both are optax
transformations over ``{"channels": ..., "weights": ...}`` and are followed by
the proximal step (`fmp_jax.pruning.masks`):

* ``"adam"`` (DHP, ``restoration/util/trainer_dhp.py``): the latents are
  Adam parameters like the hypernetwork's; each entry moves by its own
  normalised gradient, so an entry the loss keeps pushing back outlives the
  l1 shrinkage and one the loss does not support drifts to zero.
* ``"rms_sgd"``: an SGD step with each latent kind's gradient divided by that
  kind's running RMS (one scalar per kind, so entries of a kind keep their
  ranking).

Inits (``search.latent_init``): ``"ones"``, or ``"randn"`` (DHP draws channel
vectors from N(0, 1)). Weight indicators always start at 1.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fmp_jax.pruning import hyper
from fmp_jax.tree_paths import set_at



def _ones(sizes: Mapping[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
  del rng
  return {g: np.ones(n, np.float32) for g, n in sizes.items()}


def _randn(sizes: Mapping[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
  # A draw within 1e-3 of zero would start (almost) pruned; redraw it.
  out = {}
  for g, n in sizes.items():
    z = rng.standard_normal(n)
    while np.any(np.abs(z) < 1e-3):
      z = np.where(np.abs(z) < 1e-3, rng.standard_normal(n), z)
    out[g] = z.astype(np.float32)
  return out


# search.latent_init -> (group sizes, rng) -> group -> (entries,) float32 start values.
INITS = {"ones": _ones, "randn": _randn}


def init_channel_vectors(sizes: Mapping[str, int], how: str,
                         rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Group -> (entries,) float32 start values (entries = width / channel_multiple)."""
  if how not in INITS:
    raise ValueError(f"search.latent_init={how!r} is unknown; use one of {tuple(INITS)}.")
  return INITS[how](sizes, rng)


def init_weight_indicators(layers, indicator: str) -> dict:
  """Nested like the params: ones of each layer's indicator shape."""
  weights: dict = {}
  for layer in layers:
    set_at(weights, layer.path, jnp.ones(hyper.indicator_shape(layer, indicator)))
  return weights


class KindRmsState(NamedTuple):
  count: jax.Array
  rms: dict


def scale_by_kind_rms(decay: float) -> optax.GradientTransformation:
  """Divides each top-level kind's gradient by that kind's running RMS (a scalar)."""

  def init(params):
    return KindRmsState(jnp.zeros((), jnp.int32), {k: jnp.zeros(()) for k in params})

  def update(grads, state, params=None):
    del params
    rms, out = {}, {}
    for kind, g in grads.items():
      leaves = jax.tree.leaves(g)
      g2 = sum(jnp.sum(x * x) for x in leaves) / max(1, sum(x.size for x in leaves))
      ms = jnp.where(state.count == 0, g2, decay * state.rms[kind] ** 2 + (1 - decay) * g2)
      rms[kind] = jnp.sqrt(ms)
      out[kind] = jax.tree.map(lambda x, r=rms[kind]: x / (r + 1e-12), g)
    return out, KindRmsState(state.count + 1, rms)

  return optax.GradientTransformation(init, update)


# search.latent_optimizer -> (lr, rms_decay) -> the latents' optax transformation.
OPTIMIZERS = {
    "adam": lambda lr, rms_decay: optax.adam(lr),
    "rms_sgd": lambda lr, rms_decay: optax.chain(scale_by_kind_rms(rms_decay), optax.scale(-lr)),
}


def optimizer(kind: str, lr: float, rms_decay: float = 0.99) -> optax.GradientTransformation:
  """The latents' optimiser (see the module docstring)."""
  if kind not in OPTIMIZERS:
    raise ValueError(f"search.latent_optimizer={kind!r} is unknown; use one of "
                     f"{tuple(OPTIMIZERS)}.")
  return OPTIMIZERS[kind](lr, rms_decay)


def propose(latents, updates):
  """latents + updates, where pruned (zero) entries stay zero: pruning is monotone."""
  return jax.tree.map(lambda x, d: jnp.where(x == 0, 0.0, x + d), latents, updates)

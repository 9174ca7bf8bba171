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

The proposal (`propose`, ``search.zero_crossing``): latents + updates, where an
entry the update carries through zero either stops in the dead zone (``"stop"``)
so the proximal step can take it, or passes (``"pass"``).
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


def _pass_through_zero(x, d, dead_zone):
  del dead_zone
  return x + d


# An entry whose push toward zero does not change between steps (a channel the loss does
# not need, pushed by the budget term alone) moves by a constant ~latent_lr under Adam:
# from 1 by 0.03 it steps from 0.01 to -0.02 and never lands within the dead zone, while a
# needed entry, whose gradient wavers, slows down near zero and is caught first.
_EARLIEST = 2.0 ** -16     # the smallest fraction of a step counted as "reaching zero"
_GOLDEN = 0.6180339887498949


def _stop_at_zero(x, d, dead_zone):
  y = x + d
  reached = y * x <= 0
  # Adam moves every entry with a steady push by the same amount, so such entries arrive
  # together: a fixed factor in (0.999, 1] per position orders them, so a landing can take
  # as many of them as its target allows, not all or none.
  spread = (1.0 - 1e-3 * jnp.mod(jnp.arange(x.size, dtype=jnp.float32) * _GOLDEN, 1.0)
            ).reshape(x.shape)
  # Arriving: stop at dead_zone x the fraction of the step at which the entry reaches zero
  # (the proximal step's threshold alpha * dead_zone takes it at alpha >= that fraction,
  # landing permitting).
  frac = jnp.abs(x) / (jnp.abs(x) + jnp.abs(d) + 1e-30)
  arrive = dead_zone * jnp.maximum(frac, _EARLIEST) * spread
  # Waiting in the dead zone while the push goes on: halve each step, so the longer an
  # entry has waited, the sooner it goes (arrival order kept for 16 steps).
  wait = jnp.maximum(0.5 * jnp.abs(x), dead_zone * _EARLIEST * spread)
  stop = jnp.where(jnp.abs(x) <= dead_zone, wait, arrive)
  return jnp.where(reached, jnp.sign(x) * stop, y)


# search.zero_crossing -> (latent, update, dead zone) -> proposed latent (module docstring).
ZERO_CROSSINGS = {"stop": _stop_at_zero, "pass": _pass_through_zero}


def propose(latents, updates, how: str = "pass", dead_zone: float = 0.0):
  """latents + updates, where pruned (zero) entries stay zero: pruning is monotone.

  how="stop": an entry the update would carry to or through zero stops inside the dead
  zone instead, at dead_zone x the fraction of the step it needed to reach zero, so the
  proximal step removes it (earliest arrivals first) as soon as the landing allows.
  how="pass": plain addition (an entry may overshoot zero and come back).
  """
  step = ZERO_CROSSINGS[how]
  return jax.tree.map(lambda x, d: jnp.where(x == 0, 0.0, step(x, d, dead_zone)),
                      latents, updates)

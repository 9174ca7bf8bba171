"""The search state and what is derived from it: kernels, masks, the masked model.

`SearchState` holds the hypernetwork params and the backbone's biases (trained
by Adam), the latents (channel vectors z per prunable group, weight
indicators u per conv), both optimisers' states and the budget term's duals.
Everything else is derived: the kernels (`hyper.generate_kernels`), the hard
masks 1[z != 0] and 1[u != 0], and the exact host-side masks the counter and
the surgery take.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fmp_jax.arch import Arch
from fmp_jax.models import ParamsMismatchError, check_params
from fmp_jax.pruning import complexity, criteria, hyper, latents as latents_lib, masks as masks_lib
from fmp_jax.pruning.settings import SearchSettings
from fmp_jax.tree_paths import get_at, set_at


@flax.struct.dataclass
class SearchState:
  step: jax.Array
  hyper: Any          # nested like the params: {w1, b1, w2, b2} per conv
  biases: Any         # nested like the params: bias per conv
  latents: Any        # {"channels": {group: z}, "weights": nested u per conv}
  opt_state: Any      # Adam state of {"hyper", "biases"}
  latent_opt_state: Any  # the latents' optimiser state
  duals: Any          # {"total", "channel", "weight"}: budget term strengths mu

  @property
  def trainable(self):
    return {"hyper": self.hyper, "biases": self.biases}


def entries_per_group(arch: Arch, settings: SearchSettings) -> dict[str, int]:
  """Prunable group -> length of its channel vector (width / channel_multiple)."""
  m = settings.channel_multiple
  out = {}
  for g in arch.prunable_groups():
    width = arch.width(g)
    if width % m:
      raise ValueError(f"search.channel_multiple={m} does not divide group {g!r} of width "
                       f"{width}; choose a divisor of every prunable width.")
    out[g] = width // m
  return out


def full_vectors(arch: Arch, channels: Mapping, multiple: int) -> dict:
  """Full-width vectors of every group: prunable (expanded), fixed (ones), tied."""
  vectors = masks_lib.expand(channels, multiple)
  for name, g in arch.groups().items():
    if not g.prunable and g.tied_to is None:
      vectors[name] = jnp.ones(g.size)
  return arch.expand_tied(vectors, jnp)


def make_optimizer(settings: SearchSettings) -> optax.GradientTransformation:
  """Adam of the hypernetwork params and the biases."""
  return optax.adam(settings.lr)


def make_latent_optimizer(settings: SearchSettings) -> optax.GradientTransformation:
  return latents_lib.optimizer(settings.latent_optimizer, settings.latent_lr, settings.rms_decay)


def init_state(arch: Arch, params: Mapping, settings: SearchSettings, seed: int = 0) -> SearchState:
  """Search state whose generated kernels equal `params`' kernels at step 0.

  `params` may be fresh (FMP needs no pretraining) or trained dense weights.
  """
  if arch.is_pruned:
    raise ParamsMismatchError("FMP searches a dense backbone; got an Arch with pruned widths.")
  check_params(params, arch)
  layers = complexity.layer_table(arch)
  rng = np.random.default_rng(seed)
  channels = latents_lib.init_channel_vectors(entries_per_group(arch, settings),
                                              settings.latent_init, rng)
  vectors = {g: np.asarray(v) for g, v in
             full_vectors(arch, {g: jnp.asarray(z) for g, z in channels.items()},
                          settings.channel_multiple).items()}
  hyp, biases = {}, {}
  for layer in layers:
    node = get_at(params, layer.path)
    set_at(hyp, layer.path, hyper.init_layer(
        np.asarray(node["kernel"]), settings.hyper_embed, rng, vectors[layer.in_group],
        vectors[layer.out_group], settings.gate))
    # A copy: the step donates its state, and the caller's params must survive.
    set_at(biases, layer.path, jnp.array(node["bias"], jnp.float32, copy=True))
  latents = {"channels": {g: jnp.asarray(z) for g, z in channels.items()},
             "weights": latents_lib.init_weight_indicators(layers, settings.indicator)}
  trainable = {"hyper": hyp, "biases": biases}
  duals = {q: jnp.asarray(settings.budget_weight, jnp.float32) for q in criteria.QUANTITIES}
  return SearchState(step=jnp.zeros((), jnp.int32), hyper=hyp, biases=biases, latents=latents,
                     opt_state=make_optimizer(settings).init(trainable),
                     latent_opt_state=make_latent_optimizer(settings).init(latents),
                     duals=duals)


def assemble_params(layers, kernels: Mapping, biases: Mapping) -> dict:
  params: dict = {}
  for l in layers:
    set_at(params, l.path, {"kernel": kernels[l.path], "bias": get_at(biases, l.path)})
  return params


def generated_params(arch: Arch, trainable: Mapping, latents: Mapping,
                     settings: SearchSettings) -> dict:
  """Full-width backbone params: the kernels the hypernetwork makes of `latents`, the biases."""
  layers = complexity.layer_table(arch)
  vectors = full_vectors(arch, latents["channels"], settings.channel_multiple)
  kernels = hyper.generate_kernels(layers, trainable["hyper"], vectors, latents["weights"],
                                   settings.gate)
  return assemble_params(layers, kernels, trainable["biases"])


def channel_masks_of(latents: Mapping, multiple: int) -> dict:
  """Full-width 0/1 masks (float32) of the prunable groups."""
  return masks_lib.hard(masks_lib.expand(latents["channels"], multiple))


def masked_model(arch: Arch, state: SearchState, settings: Optional[SearchSettings] = None):
  """Full-width params (generated kernels) and the ``masks`` collection of `state`."""
  settings = settings or SearchSettings()
  params = generated_params(arch, state.trainable, state.latents, settings)
  return params, {"channels": channel_masks_of(state.latents, settings.channel_multiple)}


def exact_masks(arch: Arch, latents: Mapping, settings: SearchSettings):
  """Host-side 0/1 channel masks (group -> (C,)) and weight masks (name -> HWIO)."""
  m = settings.channel_multiple
  channels = {g: np.repeat((np.asarray(z) != 0).astype(np.int64), m)
              for g, z in latents["channels"].items()}
  weights = {l.name: masks_lib.indicator_as_kernel(
                 np.asarray(get_at(latents["weights"], l.path)) != 0, l.kernel)
             for l in complexity.layer_table(arch)}
  return channels, weights


__all__ = ["SearchState", "init_state", "masked_model", "exact_masks",
           "channel_masks_of", "entries_per_group", "full_vectors", "generated_params"]

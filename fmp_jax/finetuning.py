"""Fine-tuning of the physically pruned model with its weight masks held fixed.

The masks enter the forward pass (kernel * mask), so masked weights get zero
gradients and Adam never moves them; the returned params have them baked in.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from fmp_jax import loop, reduction
from fmp_jax.arch import Arch
from fmp_jax.data.checks import CheckedBatches
from fmp_jax.models import (MASKS, bake_masks, build_model, check_finite_params, check_params,
                            init_params, precision_dtype)


@flax.struct.dataclass
class FinetuneState:
  step: jax.Array
  params: Any
  opt_state: Any


# Cached: `make_step` is cached by (arch, tx), so repeated finetune() calls with the
# same settings reuse one compiled step instead of compiling a new one each time.
@functools.lru_cache(maxsize=16)
def make_optimizer(lr: float, halve_every: Optional[int] = None) -> optax.GradientTransformation:
  """Adam with the SR convention: lr halved every `halve_every` steps (stateless, shared)."""
  if halve_every:
    schedule = optax.exponential_decay(lr, transition_steps=int(halve_every), decay_rate=0.5,
                                       staircase=True)
  else:
    schedule = lr
  return optax.adam(schedule)


FINETUNE_INITS = ("search", "scratch")


def starting_params(params: Mapping, arch: Arch, masks: Optional[Mapping], init: str,
                    seed: int) -> Mapping:
  """What fine-tuning starts from: the searched `params` ("search"), or fresh
  `init_params(arch, seed)` with the weight masks baked in ("scratch": the found structure
  trained anew)."""
  if init not in FINETUNE_INITS:
    raise ValueError(f"finetune.init={init!r} is unknown; use one of {FINETUNE_INITS}.")
  if init == "search":
    return params
  return bake_masks(init_params(arch, seed=seed), masks)


def init_state(params: Mapping, tx: optax.GradientTransformation) -> FinetuneState:
  params = jax.tree.map(lambda x: jnp.array(x, jnp.float32, copy=True), dict(params))
  return FinetuneState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


@functools.lru_cache(maxsize=16)
def make_step(arch: Arch, tx: optax.GradientTransformation, reduction_shards: int = 0,
              mesh=None, precision: str = "float32") -> Callable:
  """Pure step `(state, masks, lr, hr) -> (state, metrics)`; L1 loss, masks fixed.

  reduction_shards, mesh: as `SearchSettings.reduction_shards` (fixed-order
  sums over micro-shards of the batch, bit-identical on any device layout).
  precision: "float32" or "bfloat16" (activations and convolutions; params
  and optimiser state stay float32).
  """
  model = build_model(arch)
  compute = precision_dtype(precision)

  def step(state: FinetuneState, masks: Mapping, lr: jax.Array, hr: jax.Array):
    def loss_fn(params, lr, hr):
      variables = {"params": params}
      if masks:
        variables[MASKS] = masks
      sr = model.apply(variables, lr.astype(compute)).astype(jnp.float32)
      return jnp.mean(jnp.abs(sr - hr))
    if reduction_shards:
      vg = reduction.sharded_value_and_grad(
          lambda p, lr_, hr_: (loss_fn(p, lr_, hr_), None), reduction_shards,
          mesh if mesh is not None else reduction.single_device_mesh())
      (loss, _), grads = vg(state.params, lr, hr)
    else:
      loss, grads = jax.value_and_grad(loss_fn)(state.params, lr, hr)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new, {"loss": loss, "finite": jnp.isfinite(loss)}

  return step


def finetune(params: Mapping, arch: Arch, masks: Optional[Mapping], data: Iterable, steps: int,
             lr: float = 2e-4, halve_every: Optional[int] = None,
             on_step: Optional[Callable[[int, dict], None]] = None) -> dict:
  """Trains `params` (pruned widths in `arch`) for `steps` batches of (lr, hr).

  `data` yields (lr, hr) batches as `fmp_jax.prune` takes them: lr (N, h, w, 3),
  hr (N, h*s, w*s, 3), NHWC, float32 in [0, arch.rgb_range] or uint8 in
  0..255 (converted to float32 x / 255 * arch.rgb_range). A list is restarted
  when it runs out; a generator must yield `steps` batches.

  Returns the fine-tuned params with the weight masks baked in. Inputs are not mutated.
  Raises `fmp_jax.data.DataError` for unusable data, `ParamsMismatchError` for
  params that are not of `arch` (e.g. dense params with a pruned arch), and
  ValueError for NaN/Inf in `params`.
  """
  if int(steps) != steps or steps < 0:
    raise ValueError(f"steps={steps} must be a non-negative integer.")
  steps = int(steps)
  check_params(params, arch)
  check_finite_params(params, "finetune")
  tx = make_optimizer(lr, halve_every)
  step_fn = jax.jit(make_step(arch, tx), donate_argnums=0)
  state = init_state(params, tx)
  batches = CheckedBatches(data, arch.scale, arch.rgb_range, steps, f"needs {steps} (steps)",
                           "finetune")
  def callback(step, metrics, _):
    if on_step is not None:
      on_step(step, metrics)   # fine-tuning runs all its steps, whatever it returns
  state, _, _ = loop.run_steps(step_fn, state, batches, 1, steps, args=(masks or {},),
                               what="finetune", hint="lower finetune.lr.", on_step=callback)
  return bake_masks(jax.device_get(state.params), masks)

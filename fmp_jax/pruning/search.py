"""FMP's search stage: state, the pure jitted step, and the stop-at-budget loop.

One step composes named pieces, each chosen by ``config.search``:

1. Kernels from the hypernetwork (`hyper.generate_kernels`, ``gate``); every
   layer's output is masked by its group's hard channel mask 1[z != 0].
2. Loss = L1(SR, HR) + the budget term (`regularizer.budget_term`,
   ``budget_reg``), + the weight indicators' l1 penalty when
   ``weight_update="penalty"``.
3. Adam on the hypernetwork params and the biases; the latents' optimiser
   (`latents.optimizer`, ``latent_optimizer``) proposes new latents.
4. The proximal operator (`masks.prox_channels`, `masks.prox_weights`):
   soft-thresholding by ``latent_lr * l1`` and DHP's pruning threshold,
   keeping ``min_channels`` per group; its step is shortened by the landing
   (`pace.landing_alpha`) so the tested quantity never falls below the
   scheduled target (`pace.scheduled_target`, ``pace_steps``).
5. The budget term's dual variables follow the schedule
   (`regularizer.update_duals`).

The stopping rule (`run_search`): the exact host-side count is checked after
every step; the search stops at the first step where the criterion holds.

The step is a pure function of (state, budget arrays, batch), so it runs
unchanged under `jax.jit` with the batch sharded over a device mesh. The
criterion is static; the metric and targets are arrays, so all budgets of one
criterion share a compiled step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Iterator, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fmp_jax import reduction
from fmp_jax.arch import Arch
from fmp_jax.data.checks import out_of_batches
from fmp_jax.models import MASKS, ParamsMismatchError, build_model, check_params
from fmp_jax.models import arch_name as _arch_name
from fmp_jax.pruning import complexity, hyper, latents as latents_lib, masks as masks_lib, pace
from fmp_jax.pruning import regularizer
from fmp_jax.pruning.budget import Budget, BudgetError, quantities
from fmp_jax.tree_paths import get_at, set_at

QUANTITIES = ("total", "channel", "weight")
WEIGHT_UPDATES = ("proximal", "penalty")


class BudgetNotReachedError(RuntimeError):
  """The search hit its step limit before the budget's criterion held."""


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


@dataclasses.dataclass(frozen=True)
class SearchSettings:
  """The static knobs of the step (config.search holds these plus loop settings).

  Attributes:
    lr: Adam learning rate of the hypernetwork params and the biases.
    latent_optimizer: "adam" (DHP) or "rms_sgd" (see `latents`).
    latent_lr: the latents' learning rate (also the proximal step size).
    latent_init: channel vectors start at "ones" or "randn" (DHP).
    gate: "none" (DHP's kernel; exact zeros by output masking) or "z" (the
      kernel fades with z_in z_out^T), see `hyper`.
    channel_l1, weight_l1: l1 strengths; one step soft-thresholds by
      latent_lr * l1.
    weight_update: "proximal" (soft-threshold u) or "penalty" (FMP's wording:
      the l1 penalty in u's gradient, then only the pruning threshold).
    prune_threshold: |entry| at or below this becomes zero (DHP: 5e-3).
    min_channels: channels every group keeps at least (DHP: 4).
    max_channel_drop: the largest fraction of the channel-vector entries one
      step may remove (at least one entry).
    channel_multiple: one channel-vector entry per this many channels, so
      every pruned width is a multiple of it.
    free_l1_scale: l1 scale of the kind the criterion does not test
      (weights under Channel, channels under Weight).
    budget_reg: "straight_through" or "off" (see `regularizer`).
    budget_weight: the budget term's initial strength mu.
    budget_ascent: rate of mu's multiplicative dual update per step.
    pace_steps: steps over which the allowed remaining fraction falls to the
      budget (cubic schedule, `pace`); 0: no schedule.
    pace_warmup: fraction of pace_steps before pruning starts.
    rms_decay: decay of the running gradient RMS of "rms_sgd".
    hyper_embed: m, the hypernetwork's per-element embedding size.
    indicator: "weight" (one indicator per kernel weight) or "pair" (one per
      input/output channel pair, a coarser option).
    landing_tol: how far below the target one proximal step may land.
    landing_iters: bisection steps of the landing search.
    reduction_shards: 0, or M (a power of two dividing the batch, a multiple
      of the device count): the data term's value and gradient are summed
      over M micro-shards in a fixed order (`fmp_jax.reduction`), so runs on
      1 or N devices/processes take bit-identical steps (slower per step).
  """
  lr: float = 2e-4
  latent_optimizer: str = "adam"
  latent_lr: float = 0.01
  latent_init: str = "ones"
  gate: str = "z"
  channel_l1: float = 0.0
  weight_l1: float = 0.0
  weight_update: str = "proximal"
  prune_threshold: float = 5e-3
  min_channels: int = 4
  max_channel_drop: float = 0.02
  channel_multiple: int = 1
  free_l1_scale: float = 0.5
  budget_reg: str = "straight_through"
  budget_weight: float = 0.1
  budget_ascent: float = 0.05
  pace_steps: int = 400
  pace_warmup: float = 0.1
  rms_decay: float = 0.99
  hyper_embed: int = 8
  indicator: str = "weight"
  landing_tol: float = 0.0
  landing_iters: int = 30
  reduction_shards: int = 0

  def __post_init__(self):
    choices = {"latent_optimizer": latents_lib.OPTIMIZERS, "latent_init": latents_lib.INITS,
               "gate": hyper.GATES, "weight_update": WEIGHT_UPDATES,
               "budget_reg": regularizer.BUDGET_REGS, "indicator": hyper.INDICATORS}
    for name, allowed in choices.items():
      if getattr(self, name) not in allowed:
        raise ValueError(f"search.{name}={getattr(self, name)!r} is unknown; use one of "
                         f"{allowed}.")
    if self.gate == "z" and self.latent_init == "randn":
      raise ValueError("search.gate='z' needs search.latent_init='ones': the Z gate scales "
                       "each kernel by its initial z_in z_out, which randn can put near 0.")
    if self.reduction_shards < 0 or self.reduction_shards & (self.reduction_shards - 1):
      raise ValueError(f"search.reduction_shards={self.reduction_shards} must be 0 (off) or a "
                       "power of two.")
    if self.channel_multiple < 1 or self.min_channels < 1:
      raise ValueError(f"search.channel_multiple={self.channel_multiple} and "
                       f"search.min_channels={self.min_channels} must be >= 1.")

  @classmethod
  def from_config(cls, cfg) -> "SearchSettings":
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


# --- set-up ------------------------------------------------------------------

def check_budget_needs_pruning(arch: Arch, budget: Budget) -> None:
  """Raises BudgetError when the dense model already satisfies `budget`."""
  dense = complexity.count(arch)
  value = dense.params if budget.metric == "params" else dense.flops
  if budget.met(quantities(value, value, value)):
    raise BudgetError(f"the budget ({budget.describe()}) is already met by the unpruned "
                      f"{_arch_name(arch)}; nothing to prune. Use a keep below 1.")


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


def min_entries(arch: Arch, settings: SearchSettings) -> dict[str, int]:
  """Group -> entries its vector keeps at least: ceil(min_channels / multiple), capped."""
  m = settings.channel_multiple
  return {g: min(n, math.ceil(settings.min_channels / m))
          for g, n in entries_per_group(arch, settings).items()}


def full_vectors(arch: Arch, channels: Mapping, multiple: int) -> dict:
  """Full-width vectors of every group: prunable (expanded), fixed (ones), tied."""
  vectors = masks_lib.expand(channels, multiple)
  for name, g in arch.groups().items():
    if not g.prunable and g.tied_to is None:
      vectors[name] = jnp.ones(g.size)
  return arch.expand_tied(vectors, jnp)


def make_optimizer(settings: SearchSettings) -> optax.GradientTransformation:
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
  duals = {q: jnp.asarray(settings.budget_weight, jnp.float32) for q in QUANTITIES}
  return SearchState(step=jnp.zeros((), jnp.int32), hyper=hyp, biases=biases, latents=latents,
                     opt_state=make_optimizer(settings).init(trainable),
                     latent_opt_state=make_latent_optimizer(settings).init(latents),
                     duals=duals)


def budget_arrays(budget: Budget) -> dict:
  """The dynamic side of a budget: metric weights and targets as arrays."""
  metric_w = jnp.asarray([1.0, 0.0] if budget.metric == "params" else [0.0, 1.0], jnp.float32)
  targets = budget.targets()
  return {"metric_w": metric_w,
          "targets": {q: jnp.asarray(targets.get(q, 2.0), jnp.float32) for q in QUANTITIES},
          "floor": jnp.asarray(min(targets.values()), jnp.float32)}


# --- the step ------------------------------------------------------------------

def assemble_params(layers, kernels: Mapping, biases: Mapping) -> dict:
  params: dict = {}
  for l in layers:
    set_at(params, l.path, {"kernel": kernels[l.path], "bias": get_at(biases, l.path)})
  return params


def channel_masks_of(latents: Mapping, multiple: int) -> dict:
  """Full-width 0/1 masks (float32) of the prunable groups."""
  return masks_lib.hard(masks_lib.expand(latents["channels"], multiple))


def masked_model(arch: Arch, state: SearchState, settings: Optional[SearchSettings] = None):
  """Full-width params (generated kernels) and the ``masks`` collection of `state`."""
  settings = settings or SearchSettings()
  layers = complexity.layer_table(arch)
  vectors = full_vectors(arch, state.latents["channels"], settings.channel_multiple)
  kernels = hyper.generate_kernels(layers, state.hyper, vectors, state.latents["weights"],
                                   settings.gate)
  params = assemble_params(layers, kernels, state.biases)
  return params, {"channels": channel_masks_of(state.latents, settings.channel_multiple)}


# Which quantity limits the proximal step of each kind of latent, per criterion.
# Under Channel and Weight the other kind still prunes (at free_l1_scale), but
# never pushes the total below the criterion's target ("floor"), so it cannot
# wreck the model while the criterion's own kind is still on its way.
GOVERNS = {"total": ("total", "total"), "channel": ("channel", "floor"),
           "weight": ("floor", "weight"), "total_fixed": ("channel", "weight")}
TESTED = {"total": ("total",), "channel": ("channel",), "weight": ("weight",),
          "total_fixed": ("channel", "weight")}


@functools.lru_cache(maxsize=16)
def precision_dtype(precision: str):
  """"float32" or "bfloat16" -> the dtype activations and convolutions run in."""
  dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
  if precision not in dtypes:
    raise ValueError(f"precision={precision!r} is unknown; use one of {tuple(dtypes)}.")
  return dtypes[precision]


def make_step(arch: Arch, criterion: str, settings: SearchSettings, mesh=None,
              precision: str = "float32") -> Callable:
  """The pure search step `(state, budget_arrays, lr, hr) -> (state, metrics)`.

  lr: (N, h, w, 3) LR patches, hr: (N, h*s, w*s, 3), both in [0, arch.rgb_range].
  Not jitted here: callers jit it with their own shardings. `mesh`: the batch's
  mesh (axis "data"), needed by settings.reduction_shards (default: one device).
  precision: "float32", or "bfloat16" for activations and convolutions (params,
  gradients and optimiser state stay float32).
  """
  model = build_model(arch)
  counter = regularizer.Counter(arch)
  layers = counter.layers
  multiple = settings.channel_multiple
  tx = make_optimizer(settings)
  latent_tx = make_latent_optimizer(settings)
  keep_at_least = min_entries(arch, settings)
  tested = TESTED[criterion]
  eta = settings.latent_lr
  # The kind the criterion does not test prunes at a reduced strength, so it
  # trims what the loss does not support without racing the tested kind.
  c_l1 = settings.channel_l1 * (settings.free_l1_scale if criterion == "weight" else 1.0)
  w_l1 = settings.weight_l1 * (settings.free_l1_scale if criterion == "channel" else 1.0)
  w_prox_l1 = w_l1 if settings.weight_update == "proximal" else 0.0
  pt = settings.prune_threshold
  n_entries = sum(entries_per_group(arch, settings).values())
  max_drop = max(1, int(settings.max_channel_drop * n_entries))
  n_channels = float(n_entries * multiple)

  def prox_c(half, alpha):
    return masks_lib.prox_channels(half, alpha * eta * c_l1, alpha * pt, keep_at_least)

  def prox_w(half, alpha):
    return masks_lib.prox_weights(half, alpha * eta * w_prox_l1, alpha * pt)

  def count(channels, weights, metric_w):
    return counter.quantities(channel_masks_of({"channels": channels}, multiple),
                              None if weights is None else masks_lib.hard(weights), metric_w)

  def land(q_of_alpha, target, may_cross=True):
    return pace.landing_alpha(q_of_alpha, target, settings.landing_tol, settings.landing_iters,
                              may_cross)

  entries_now = lambda vectors: sum(jnp.sum(z != 0) for z in vectors.values())

  def capped_channels(q_of_alpha, hc):
    """q(alpha), or -1 (a crossing) where the step would remove more channel entries
    than ``max_channel_drop`` allows: pruning stays gradual even when the
    latents of many channels reach zero together."""
    before = entries_now(hc)
    def q(a):
      removed = before - entries_now(prox_c(hc, a))
      return jnp.where(removed <= max_drop, q_of_alpha(a), -1.0)
    return q

  def proximal(half, targets, floor, metric_w):
    """The proximal step, shortened so no tested quantity crosses its target."""
    hc, hw = half["channels"], half["weights"]
    if criterion == "total":
      # One step fraction for both kinds: entries go in order of size, whatever
      # their kind, until the total would cross; the fine-grained weights then
      # land it.
      a_c = land(capped_channels(lambda a: count(prox_c(hc, a), prox_w(hw, a),
                                                 metric_w)["total"], hc),
                 targets["total"], may_cross=False)
      channels = prox_c(hc, a_c)
      a_w = land(lambda a: count(channels, prox_w(hw, a), metric_w)["total"], targets["total"])
      return {"channels": channels, "weights": prox_w(hw, a_w)}, a_c, a_w
    gov_c, gov_w = GOVERNS[criterion]
    target = lambda name: floor if name == "floor" else targets[name]
    w_now = hw if gov_c != "channel" else None
    name_c = "channel" if gov_c == "channel" else "total"
    a_c = land(capped_channels(lambda a: count(prox_c(hc, a), w_now, metric_w)[name_c], hc),
               target(gov_c))
    channels = prox_c(hc, a_c)
    name_w = "weight" if gov_w == "weight" else "total"
    a_w = land(lambda a: count(channels, prox_w(hw, a), metric_w)[name_w], target(gov_w))
    return {"channels": channels, "weights": prox_w(hw, a_w)}, a_c, a_w

  shards = settings.reduction_shards
  # Mixed precision: params, gradients and optimiser state stay float32; the
  # convolutions and activations run in `precision` (MaskedConv casts kernels to x's dtype).
  compute = precision_dtype(precision)
  step_mesh = (mesh if mesh is not None else reduction.single_device_mesh()) if shards else None

  def step(state: SearchState, b: Mapping, lr: jax.Array, hr: jax.Array):
    metric_w = b["metric_w"]
    now = {q: pace.scheduled_target(t, state.step.astype(jnp.float32), settings.pace_steps,
                                    settings.pace_warmup) for q, t in b["targets"].items()}
    floor = pace.scheduled_target(b["floor"], state.step.astype(jnp.float32),
                                  settings.pace_steps, settings.pace_warmup)
    c_hard = channel_masks_of(state.latents, multiple)

    def params_of(trainable, latents):
      vectors = full_vectors(arch, latents["channels"], multiple)
      kernels = hyper.generate_kernels(layers, trainable["hyper"], vectors, latents["weights"],
                                       settings.gate)
      return assemble_params(layers, kernels, trainable["biases"])

    def rec_given(params, lr, hr):
      sr = model.apply({"params": params, MASKS: {"channels": c_hard}}, lr.astype(compute))
      return jnp.mean(jnp.abs(sr.astype(jnp.float32) - hr))

    def rec_of(trainable, latents, lr, hr):
      return rec_given(params_of(trainable, latents), lr, hr)

    def reg_of(latents):
      c_st = regularizer.straight_through(masks_lib.expand(latents["channels"], multiple))
      w_st = regularizer.straight_through(latents["weights"])
      terms = regularizer.budget_terms(criterion, c_st, w_st, c_hard,
                                       masks_lib.hard(latents["weights"]),
                                       settings.free_l1_scale)
      reg = regularizer.budget_term(settings.budget_reg, counter, terms, state.duals, metric_w)
      if settings.weight_update == "penalty" and w_l1 > 0:
        reg = reg + w_l1 * sum(jnp.sum(jnp.abs(u)) for u in jax.tree.leaves(latents["weights"]))
      return reg

    def loss_fn(trainable, latents):
      rec = rec_of(trainable, latents, lr, hr)
      reg = reg_of(latents)
      return rec + reg, (rec, reg)

    if shards:
      # Layout-independent sums (fmp_jax.reduction): the data term per micro-shard,
      # the budget term (no data) once.
      # Kernels are generated once; only the backbone's gradient is taken per
      # micro-shard, then pulled back through the hypernetwork in one VJP.
      params, pull_back = jax.vjp(params_of, state.trainable, state.latents)
      sharded_rec = reduction.sharded_value_and_grad(
          lambda p, lr_, hr_: (rec_given(p, lr_, hr_), None), shards, step_mesh)
      (rec, _), g_params = sharded_rec(params, lr, hr)
      g_train, g_lat = pull_back(g_params)
      reg, g_reg = jax.value_and_grad(reg_of)(state.latents)
      g_lat = jax.tree.map(jnp.add, g_lat, g_reg)
      loss = rec + reg
    else:
      (loss, (rec, reg)), (g_train, g_lat) = jax.value_and_grad(
          loss_fn, argnums=(0, 1), has_aux=True)(state.trainable, state.latents)
    updates, opt_state = tx.update(g_train, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    lat_updates, latent_opt_state = latent_tx.update(g_lat, state.latent_opt_state,
                                                     state.latents)
    half = latents_lib.propose(state.latents, lat_updates)
    new_latents, a_c, a_w = proximal(half, now, floor, metric_w)
    q_after = count(new_latents["channels"], new_latents["weights"], metric_w)
    behind = {q: q_after[q] > now[q] for q in QUANTITIES}
    # The kind whose step lands each quantity tells whether its pressure was
    # more than the schedule allowed (its step was held back).
    lander = {"total": a_w, "channel": a_c, "weight": a_w}
    capped = {q: lander[q] < 1.0 for q in QUANTITIES}
    duals = regularizer.update_duals(state.duals, behind, capped, settings.budget_ascent)
    c_new = channel_masks_of(new_latents, multiple)
    pf = counter.both(c_new, masks_lib.hard(new_latents["weights"]))
    metrics = {"loss": loss, "l1": rec, "budget_reg": reg,
               "remaining": q_after["total"], "channel_remaining": q_after["channel"],
               "weight_remaining": q_after["weight"], "params_ratio": pf[0], "flops_ratio": pf[1],
               "target_now": jnp.min(jnp.stack([now[q] for q in tested])),
               "channels_kept": sum(jnp.sum(m) for m in c_new.values()),
               "channels_ratio": sum(jnp.sum(m) for m in c_new.values()) / n_channels,
               "alpha_channel": a_c, "alpha_weight": a_w,
               "dual": jnp.max(jnp.stack([state.duals[q] for q in tested])),
               "finite": jnp.isfinite(loss)}
    new_state = state.replace(step=state.step + 1, hyper=trainable["hyper"],
                              biases=trainable["biases"], latents=new_latents,
                              opt_state=opt_state, latent_opt_state=latent_opt_state,
                              duals=duals)
    return new_state, metrics

  return step


# --- exact checks on the host --------------------------------------------------

def exact_masks(arch: Arch, latents: Mapping, settings: SearchSettings):
  """Host-side 0/1 channel masks (group -> (C,)) and weight masks (name -> HWIO)."""
  m = settings.channel_multiple
  channels = {g: np.repeat((np.asarray(z) != 0).astype(np.int64), m)
              for g, z in latents["channels"].items()}
  weights = {}
  for l in complexity.layer_table(arch):
    u = (np.asarray(get_at(latents["weights"], l.path)) != 0)
    weights[l.name] = np.broadcast_to(u if u.ndim == 4 else u[None, None], l.kernel)
  return channels, weights


def exact_quantities(arch: Arch, latents: Mapping, budget: Budget,
                     settings: SearchSettings) -> dict:
  channels, weights = exact_masks(arch, latents, settings)
  dense = complexity.count(arch)
  conly = complexity.count(arch, channel_masks=channels)
  both = complexity.count(arch, channel_masks=channels, weight_masks=weights)
  pick = (lambda c: c.params) if budget.metric == "params" else (lambda c: c.flops)
  return quantities(pick(dense), pick(conly), pick(both))


# --- the loop ------------------------------------------------------------------

@dataclasses.dataclass
class SearchOutcome:
  state: SearchState
  steps: int
  converged: bool
  history: list


def run_search(arch: Arch, state: SearchState, budget: Budget, settings: SearchSettings,
               batches: Iterator, max_steps: int, step_fn: Optional[Callable] = None,
               on_step: Optional[Callable[[int, dict, SearchState], None]] = None,
               raise_if_not_reached: bool = True) -> SearchOutcome:
  """Steps until the budget's criterion holds (checked every step, exactly on the host).

  Args:
    batches: iterator of (lr, hr) arrays, one per step (`DataError` if it ends first).
    max_steps: the step count at which the search gives up.
    step_fn: a jitted step; default: `jax.jit(make_step(...), donate_argnums=0)`.
    on_step: called as on_step(step, metrics, state) after every step (logging,
      checkpointing); `step` counts from 1.
  Raises:
    BudgetNotReachedError when max_steps pass first (if raise_if_not_reached).
    FloatingPointError on a non-finite loss.
  """
  if step_fn is None:
    step_fn = jax.jit(make_step(arch, budget.criterion, settings), donate_argnums=0)
  b = budget_arrays(budget)
  history = []
  best = None
  start = int(state.step)
  for step in range(start + 1, max_steps + 1):
    try:
      lr, hr = next(batches)
    except StopIteration:
      raise out_of_batches(step, max_steps) from None
    state, metrics = step_fn(state, b, lr, hr)
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    metrics["step"] = step
    if not metrics["finite"]:
      raise FloatingPointError(f"search step {step}: loss is {metrics['loss']}; lower "
                               f"search.lr / search.latent_lr.")
    history.append(metrics)
    if on_step is not None:
      on_step(step, metrics, state)
    q = {"total": metrics["remaining"], "channel": metrics["channel_remaining"],
         "weight": metrics["weight_remaining"]}
    gap = max(q[name] - t for name, t in budget.targets().items())
    best = gap if best is None else min(best, gap)
    if budget.met(q) and budget.met(exact_quantities(arch, state.latents, budget, settings)):
      return SearchOutcome(state, step, True, history)
  if raise_if_not_reached:
    last = history[-1] if history else {}
    raise BudgetNotReachedError(
        f"the budget ({budget.describe()}) was not reached in {max_steps} search steps; the "
        f"closest was {100 * best:.2f} points above it (last: total {100 * last.get('remaining', 1):.2f} %, "
        f"channel part {100 * last.get('channel_remaining', 1):.2f} %, weight part "
        f"{100 * last.get('weight_remaining', 1):.2f} %). Raise search.max_steps, or the l1 "
        f"strengths search.channel_l1 / search.weight_l1.")
  return SearchOutcome(state, int(state.step), False, history)

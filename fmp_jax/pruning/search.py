"""FMP's search stage: the pure jitted step and the stop-at-budget loop.

`make_step` builds a frozen `StepContext` once (model, cost model, criterion,
optimisers, proximal step) and returns ``functools.partial(search_step, ctx)``.
One step, top to bottom (`search_step`):

1. the schedule: each tested quantity's target now (`pace.scheduled_target`);
2. the gradients of L1(SR, HR) + the budget term (`regularizer.BUDGET_TERMS`,
   ``budget_reg``) with respect to the hypernetwork params, the biases and
   the latents; the kernels come from the hypernetwork (`hyper`), every
   layer's output is masked by its group's hard channel mask 1[z != 0];
3. Adam on the hypernetwork params and the biases; the latents' optimiser
   (`latents.OPTIMIZERS`) proposes new latents;
4. the proximal step (`prox.Prox`): soft threshold, DHP's pruning threshold,
   ``min_channels``, ``max_channel_drop``, landed on the schedule;
5. the budget term's duals follow the schedule (`regularizer.update_duals`);
6. the step's metrics.

The stopping rule (`run_search`): the exact host-side cost is checked after
every step; the search stops at the first step where the criterion holds.

The step is a pure function of (state, budget arrays, batch), so it runs
unchanged under `jax.jit` with the batch sharded over a device mesh. The
criterion and the cost model are static; the targets are arrays, so budgets
of one criterion and metric share a compiled step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterator, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from fmp_jax import loop, reduction
from fmp_jax.arch import Arch
from fmp_jax.models import MASKS, build_model, precision_dtype
from fmp_jax.pruning import complexity, cost as cost_lib, latents as latents_lib
from fmp_jax.pruning import masks as masks_lib, pace, prox as prox_lib, regularizer
from fmp_jax.pruning.budget import Budget
from fmp_jax.pruning.checks import (check_budget_needs_pruning, check_budget_reachable,  # noqa: F401
                                    check_schedule, family_budgets)
from fmp_jax.pruning.criteria import QUANTITIES, Criterion
from fmp_jax.pruning.errors import BudgetNotReachedError
from fmp_jax.pruning.settings import WEIGHT_UPDATES, SearchSettings
from fmp_jax.pruning.state import (SearchState, channel_masks_of, entries_per_group, exact_masks,
                                   generated_params, make_latent_optimizer, make_optimizer)


def budget_arrays(budget: Budget, hold: Optional[Budget] = None) -> dict:
  """The dynamic side of a budget: every quantity's target (2.0: not tested) and the lowest.

  hold: a family member on the way to `budget` (`family_budgets`): no step's target falls
  below the member's until the search has landed on it.
  """
  targets = budget.targets()
  out = {"targets": {q: jnp.asarray(targets.get(q, 2.0), jnp.float32) for q in QUANTITIES},
         "floor": jnp.asarray(min(targets.values()), jnp.float32)}
  if hold is not None:
    held = hold.targets()
    out["hold"] = {q: jnp.asarray(held.get(q, 0.0), jnp.float32) for q in QUANTITIES}
    out["hold_floor"] = jnp.asarray(min(held.values()), jnp.float32)
  return out


# --- the step's context ------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class StepContext:
  """Everything a search step needs besides its arguments; built once by `make_step`."""
  arch: Arch
  settings: SearchSettings
  criterion: Criterion
  cost: cost_lib.CostModel               # what the budget counts
  counter: cost_lib.CountCost            # params and FLOPs, for the metrics
  model: nn.Module
  layers: tuple
  tx: optax.GradientTransformation       # hypernetwork params and biases
  latent_tx: optax.GradientTransformation
  prox: prox_lib.Prox
  compute: Any                           # dtype of activations and convolutions
  mesh: Any                              # the batch's mesh (reduction_shards only)
  weight_penalty: float                  # l1 on u in the loss (weight_update="penalty")
  channels: float                        # prunable channels at full width

  def removal_cost(self, channels: Mapping, weights) -> dict:
    """Group -> (entries,) fraction of the dense cost each entry's removal alone would save."""
    m = self.settings.channel_multiple
    return self.cost.removal_cost(channel_masks_of({"channels": channels}, m),
                                  None if weights is None else masks_lib.hard(weights), m)

  def measure(self, channels: Mapping, weights) -> dict:
    """In-graph R, R_C, R_W of latents (channel vectors, weight indicators or None)."""
    return cost_lib.quantities(
        self.cost, channel_masks_of({"channels": channels}, self.settings.channel_multiple),
        None if weights is None else masks_lib.hard(weights))


def make_step(arch: Arch, budget: Budget, settings: SearchSettings, mesh=None,
              precision: str = "float32") -> Callable:
  """The pure search step `(state, budget_arrays, lr, hr) -> (state, metrics)`.

  lr: (N, h, w, 3) LR patches, hr: (N, h*s, w*s, 3), both in [0, arch.rgb_range].
  Not jitted here: callers jit it with their own shardings. `budget` gives the
  criterion and the metric (its cost model, `budget.cost_model`; its targets come as
  `budget_arrays` at call time). `mesh`: the batch's mesh (axis
  "data"), needed by settings.reduction_shards (default: one device).
  precision: "float32", or "bfloat16" for activations and convolutions
  (params, gradients and optimiser state stay float32).
  """
  criterion = budget.rule
  multiple = settings.channel_multiple
  scale = lambda kind: criterion.l1_scale(kind, settings.free_l1_scale)
  w_l1 = settings.weight_l1 * scale("weight")
  update = WEIGHT_UPDATES[settings.weight_update]
  sizes = entries_per_group(arch, settings)
  ctx = StepContext(
      arch=arch, settings=settings, criterion=criterion,
      cost=budget.cost_model(arch),
      counter=cost_lib.CountCost(arch, "flops"),
      model=build_model(arch), layers=complexity.layer_table(arch),
      tx=make_optimizer(settings), latent_tx=make_latent_optimizer(settings), prox=None,
      compute=precision_dtype(precision),
      mesh=((mesh if mesh is not None else reduction.single_device_mesh())
            if settings.reduction_shards else None),
      weight_penalty=w_l1 if update["penalty"] else 0.0,
      channels=float(sum(sizes.values()) * multiple))
  prox = prox_lib.Prox(
      criterion=criterion, measure=ctx.measure, eta=settings.latent_lr,
      channel_l1=settings.channel_l1 * scale("channel"),
      weight_l1=w_l1 if update["prox"] else 0.0, dead_zone=settings.prune_threshold,
      keep_at_least=prox_lib.min_entries(sizes, settings.min_channels, multiple),
      max_drop=prox_lib.max_drop(sum(sizes.values()), settings.max_channel_drop),
      landing_tol=settings.landing_tol, landing_iters=settings.landing_iters,
      weights_land=ctx.cost.weights_count, max_cross=settings.max_overshoot,
      removal_cost=ctx.removal_cost)
  object.__setattr__(ctx, "prox", prox)
  return functools.partial(search_step, ctx)


# --- the step ------------------------------------------------------------------------

def search_step(ctx: StepContext, state: SearchState, b: Mapping, lr: jax.Array,
                hr: jax.Array):
  """One search step (the module docstring lists its parts in order)."""
  s = ctx.settings
  at = state.step.astype(jnp.float32)
  now = {q: pace.scheduled_target(t, at, s.pace_steps, s.pace_warmup)
         for q, t in b["targets"].items()}
  floor = pace.scheduled_target(b["floor"], at, s.pace_steps, s.pace_warmup)
  floor_next = pace.scheduled_target(b["floor"], at + 1.0, s.pace_steps, s.pace_warmup)
  if "hold" in b:   # a family member not landed yet: the schedule waits for it
    now = {q: jnp.maximum(t, b["hold"][q]) for q, t in now.items()}
    floor = jnp.maximum(floor, b["hold_floor"])
    floor_next = jnp.maximum(floor_next, b["hold_floor"])
  settled = floor_next >= floor       # no later step has a lower target
  c_hard = channel_masks_of(state.latents, s.channel_multiple)

  gradients = fixed_order_gradients if s.reduction_shards else plain_gradients
  (loss, rec, reg), (g_train, g_lat) = gradients(ctx, state, c_hard, lr, hr)

  updates, opt_state = ctx.tx.update(g_train, state.opt_state, state.trainable)
  trainable = optax.apply_updates(state.trainable, updates)
  lat_updates, latent_opt_state = ctx.latent_tx.update(g_lat, state.latent_opt_state,
                                                       state.latents)
  half = latents_lib.propose(state.latents, lat_updates, s.zero_crossing, s.prune_threshold)

  latents, a_c, a_w = ctx.prox(half, now, floor, settled)

  q_after = ctx.measure(latents["channels"], latents["weights"])
  behind = {q: q_after[q] > now[q] for q in QUANTITIES}
  # The kind whose step lands each quantity tells whether its pressure was more
  # than the schedule allowed (its step was held back).
  alpha = {"channel": a_c, "weight": a_w}
  capped = {q: alpha[kind] < 1.0
            for q, kind in ctx.criterion.lander(ctx.cost.weights_count).items()}
  duals = regularizer.update_duals(state.duals, behind, capped, s.budget_ascent)

  metrics = step_metrics(ctx, state, latents, q_after, now, loss, rec, reg, a_c, a_w)
  new_state = state.replace(step=state.step + 1, hyper=trainable["hyper"],
                            biases=trainable["biases"], latents=latents, opt_state=opt_state,
                            latent_opt_state=latent_opt_state, duals=duals)
  return new_state, metrics


def reconstruction(ctx: StepContext, params, c_hard, lr, hr):
  """L1(SR, HR) of the masked model with full-width `params`."""
  sr = ctx.model.apply({"params": params, MASKS: {"channels": c_hard}}, lr.astype(ctx.compute))
  return jnp.mean(jnp.abs(sr.astype(jnp.float32) - hr))


def budget_term(ctx: StepContext, latents, c_hard, duals):
  """The budget term (``budget_reg``) of `latents`, plus the indicators' l1 penalty if any."""
  s = ctx.settings
  st = (regularizer.straight_through(masks_lib.expand(latents["channels"], s.channel_multiple)),
        regularizer.straight_through(latents["weights"]))
  hard = (c_hard, masks_lib.hard(latents["weights"]))
  measure = lambda c, w: cost_lib.quantities(ctx.cost, c, w)
  reg = regularizer.BUDGET_TERMS[s.budget_reg](ctx.criterion, measure, st, hard, duals,
                                               s.free_l1_scale)
  if ctx.weight_penalty > 0:
    reg = reg + ctx.weight_penalty * sum(jnp.sum(jnp.abs(u))
                                         for u in jax.tree.leaves(latents["weights"]))
  return reg


def plain_gradients(ctx: StepContext, state: SearchState, c_hard, lr, hr):
  """(loss, rec, reg), (grads of the trainables, grads of the latents), in one pass."""
  def loss_fn(trainable, latents):
    params = generated_params(ctx.arch, trainable, latents, ctx.settings)
    rec = reconstruction(ctx, params, c_hard, lr, hr)
    reg = budget_term(ctx, latents, c_hard, state.duals)
    return rec + reg, (rec, reg)
  (loss, (rec, reg)), grads = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
      state.trainable, state.latents)
  return (loss, rec, reg), grads


def fixed_order_gradients(ctx: StepContext, state: SearchState, c_hard, lr, hr):
  """As `plain_gradients`, with the data term summed over ``reduction_shards``
  fixed micro-shards (`fmp_jax.reduction`), so any device layout takes the same
  step. The kernels are generated once; the backbone's gradient is taken per
  micro-shard, then pulled back through the hypernetwork in one VJP. The budget
  term (no data) is added once."""
  params, pull_back = jax.vjp(
      lambda trainable, latents: generated_params(ctx.arch, trainable, latents, ctx.settings),
      state.trainable, state.latents)
  per_shard = reduction.sharded_value_and_grad(
      lambda p, lr_, hr_: (reconstruction(ctx, p, c_hard, lr_, hr_), None),
      ctx.settings.reduction_shards, ctx.mesh)
  (rec, _), g_params = per_shard(params, lr, hr)
  g_train, g_lat = pull_back(g_params)
  reg, g_reg = jax.value_and_grad(lambda lat: budget_term(ctx, lat, c_hard, state.duals))(
      state.latents)
  g_lat = jax.tree.map(jnp.add, g_lat, g_reg)
  return (rec + reg, rec, reg), (g_train, g_lat)


def step_metrics(ctx: StepContext, state: SearchState, latents, q_after, now, loss, rec, reg,
                 a_c, a_w) -> dict:
  """The step's scalars (logged, and read by the stopping rule)."""
  c_new = channel_masks_of(latents, ctx.settings.channel_multiple)
  w_new = masks_lib.hard(latents["weights"])
  pf = ctx.counter.both_ratios(c_new, w_new)
  kept = sum(jnp.sum(m) for m in c_new.values())
  tested = tuple(ctx.criterion.tested)
  return {"loss": loss, "l1": rec, "budget_reg": reg,
          "remaining": q_after["total"], "channel_remaining": q_after["channel"],
          "weight_remaining": q_after["weight"], "params_ratio": pf[0], "flops_ratio": pf[1],
          "target_now": jnp.min(jnp.stack([now[q] for q in tested])),
          "channels_kept": kept, "channels_ratio": kept / ctx.channels,
          "alpha_channel": a_c, "alpha_weight": a_w,
          "dual": jnp.max(jnp.stack([state.duals[q] for q in tested])),
          "finite": jnp.isfinite(loss)}


# --- exact checks on the host ----------------------------------------------------------

def exact_quantities(arch: Arch, latents: Mapping, budget: Budget,
                     settings: SearchSettings) -> dict:
  """R, R_C, R_W of `latents` under `budget`'s metric, exactly (host, int64 counts)."""
  channels, weights = exact_masks(arch, latents, settings)
  return cost_lib.exact_quantities(budget.cost_model(arch), channels, weights)


# --- the loop ----------------------------------------------------------------------------

@dataclasses.dataclass
class SearchOutcome:
  state: SearchState
  steps: int
  converged: bool
  history: list
  members: list = dataclasses.field(default_factory=list)   # (member index, step) landed


def _not_reached_cause(settings: SearchSettings, max_steps: int) -> str:
  """Why a search ended above its budget, and what to change."""
  if 0 < settings.pace_steps and max_steps < settings.pace_steps:
    return (f"The cause: search.max_steps={max_steps} ends before the schedule reaches the "
            f"budget at search.pace_steps={settings.pace_steps}; raise max_steps past "
            f"pace_steps, or shorten pace_steps.")
  return ("The schedule reached the budget but the search did not follow it down: raise "
          "search.max_steps (room to land), the latents' step search.latent_lr, or the l1 "
          "strengths search.channel_l1 / search.weight_l1.")


def run_search(arch: Arch, state: SearchState, budget: Budget, settings: SearchSettings,
               batches: Iterator, max_steps: int, step_fn: Optional[Callable] = None,
               on_step: Optional[Callable[[int, dict, SearchState], None]] = None,
               raise_if_not_reached: bool = True,
               members: Optional[list] = None, first_member: int = 0,
               on_member: Optional[Callable[[int, Budget, int, SearchState], None]] = None,
               say: Optional[Callable[[str], None]] = None) -> SearchOutcome:
  """Steps until the budget's criterion holds (checked every step, exactly on the host).

  Args:
    batches: iterator of (lr, hr) arrays, one per step (`DataError` if it ends first).
    max_steps: the step count at which the search gives up.
    step_fn: a jitted step; default: `jax.jit(make_step(...), donate_argnums=0)`.
    on_step: called as on_step(step, metrics, state) after every step (logging,
      checkpointing); `step` counts from 1. A true return value ends the search after
      that step (a preemption): the outcome is then not converged, unless the budget
      held at that very step, and no error is raised.
    members: a family (`family_budgets`: descending, `budget` last). Until member k
      holds, no step's target falls below it; at the first step where it holds
      (in-graph and exactly), on_member(k, member, step, state) is called (before
      on_step: a checkpoint at or after that step implies the member was seen), and
      the search goes on to the next. first_member: members already taken (a resume).
    say: hears the compile lines of `loop.run_steps` (the driver's console).
  Raises:
    BudgetNotReachedError when max_steps pass first (if raise_if_not_reached).
    FloatingPointError on a non-finite loss.
  """
  if step_fn is None:
    step_fn = jax.jit(make_step(arch, budget, settings), donate_argnums=0)
  members = list(members or [budget])
  targets = budget.targets()
  history, best, taken = [], [None], []
  arrays = lambda k: budget_arrays(budget, members[k] if k < len(members) - 1 else None)
  now = {"member": int(first_member)}
  now["arrays"] = arrays(now["member"])

  def holds(b, q, latents):
    return b.met(q) and b.met(exact_quantities(arch, latents, b, settings))

  def after_step(step, metrics, state):
    history.append(metrics)
    q = {"total": metrics["remaining"], "channel": metrics["channel_remaining"],
         "weight": metrics["weight_remaining"]}
    while now["member"] < len(members) - 1 and holds(members[now["member"]], q, state.latents):
      k = now["member"]
      taken.append((k, step))
      if on_member is not None:
        on_member(k, members[k], step, state)
      now["member"] = k + 1
      now["arrays"] = arrays(k + 1)
    if on_step is not None and on_step(step, metrics, state):
      asked_to_stop[0] = True
    gap = max(q[name] - t for name, t in targets.items())
    best[0] = gap if best[0] is None else min(best[0], gap)
    done = holds(budget, q, state.latents)
    if done:
      taken.append((len(members) - 1, step))
      if on_member is not None:
        on_member(len(members) - 1, members[-1], step, state)
    reached[0] = done
    return done or asked_to_stop[0]

  reached, asked_to_stop = [False], [False]
  state, step, _ = loop.run_steps(
      lambda st, lr, hr: step_fn(st, now["arrays"], lr, hr), state, batches,
      int(state.step) + 1, max_steps, what="search",
      hint="lower search.lr / search.latent_lr.", on_step=after_step, say=say)
  if reached[0] or asked_to_stop[0]:
    return SearchOutcome(state, step, reached[0], history, taken)
  if raise_if_not_reached:
    last = history[-1] if history else {}
    kept = channel_masks_of(state.latents, settings.channel_multiple)
    widths = ", ".join(f"{g} {int(jnp.count_nonzero(m))}" for g, m in sorted(kept.items()))
    raise BudgetNotReachedError(
        f"the budget ({budget.describe()}) was not reached in {max_steps} search steps; the "
        f"closest was {100 * (best[0] or 0):.2f} points above it (last: total "
        f"{100 * last.get('remaining', 1):.2f} %, channel part "
        f"{100 * last.get('channel_remaining', 1):.2f} %, weight part "
        f"{100 * last.get('weight_remaining', 1):.2f} %; widths {widths}). "
        + _not_reached_cause(settings, max_steps))
  return SearchOutcome(state, int(state.step), False, history, taken)

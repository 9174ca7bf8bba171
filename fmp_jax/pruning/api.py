"""The notebook API: `prune(params, budget, arch=...)` and `sparsity_report(...)`."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import jax
import numpy as np

from fmp_jax.arch import Arch
from fmp_jax.data.checks import CheckedBatches
from fmp_jax.models import check_finite_params, check_params, init_params
from fmp_jax.pruning import complexity, cost, search, state as state_lib, surgery
from fmp_jax.pruning.budget import Budget, BudgetError
from fmp_jax.pruning.latency import LatencyCost, LatencyTable, load_table_once
from fmp_jax.pruning.settings import LOOP_DEFAULTS, SearchSettings


@dataclasses.dataclass
class PruneResult:
  """What `prune` returns.

  Attributes:
    params: the physically pruned backbone params (masked weights are zero).
    arch: the `Arch` with the kept width of every channel group.
    masks: the ``masks`` collection of fixed weight masks for `params`
      (``{"block_0": {"conv_a": {"weight": HWIO}}, ...}``), for fine-tuning.
    report: `sparsity_report` of the result plus ``steps`` and ``converged``.
    history: per-step search metrics (loss, remaining ratios, ...).
  """
  params: Any
  arch: Arch
  masks: dict
  report: dict
  history: list = dataclasses.field(default_factory=list, repr=False)


def sparsity_report(params: Mapping, arch: Arch, masks: Optional[Mapping] = None,
                    metric: str = "flops", lr_hw: Optional[tuple[int, int]] = None,
                    latency_table: Union[None, str, LatencyTable] = None) -> dict:
  """Params, FLOPs, executed MACs and latency of a (pruned or masked) model against its dense
  architecture.

  Args:
    params: backbone params matching `arch` (checked).
    arch: the built architecture (pruned widths, if any).
    masks: the ``masks`` collection: per-layer weight masks and/or
      ``{"channels": {group: (C,)}}`` for a full-width masked model.
    metric: "flops", "params" or "latency": the metric of the channel/weight split.
    lr_hw: LR input size for FLOPs (default: the 1280x720 HR convention).
    latency_table: a `LatencyTable` (or its path) of the dense model on the target
      device; adds the predicted latency (needed for metric "latency").
  Returns:
    dict with ``params``, ``flops`` (exact ints), ``dense_params``,
    ``dense_flops``, ``params_ratio``, ``flops_ratio`` (remaining fractions),
    ``channel_pruned_ratio``, ``weight_pruned_ratio`` (fractions of the dense
    metric removed by channels and by weights, in `metric`), per-metric splits
    ``params_channel_pruned_ratio`` etc., ``metric``, ``widths``, ``steps`` (0)
    and ``converged`` (None); ``executed_macs`` and ``executed_macs_ratio``: the
    multiply-adds a dense kernel does at these widths (weight zeros included:
    no kernel skips them); with a table, ``latency_ratio`` (predicted),
    ``latency_seconds``, ``dense_latency_seconds`` and ``latency_lr_hw``.
  """
  if metric not in cost.COST_MODELS:
    raise BudgetError(f"metric={metric!r} is unknown; use one of {tuple(cost.COST_MODELS)}.")
  latency_table = latency_table or None
  if "latency_table" in cost.COST_MODELS[metric].needs and latency_table is None:
    raise BudgetError(f"sparsity_report(metric={metric!r}) needs latency_table.")
  check_params(params, arch)
  masks = dict(masks or {})
  channel_masks = masks.pop("channels", None)
  weight_masks = complexity.flatten_weight_masks(masks)
  lr_hw = None if lr_hw is None else tuple(lr_hw)
  report = {"metric": metric}
  for name in ("params", "flops"):
    counter = cost.CountCost(arch, name, lr_hw)
    q = cost.exact_quantities(counter, channel_masks, weight_masks)
    report[name] = counter.exact(channel_masks, weight_masks)
    report[f"dense_{name}"] = counter.dense()
    report[f"{name}_ratio"] = q["total"]
    report[f"{name}_channel_pruned_ratio"] = 1.0 - q["channel"]
    report[f"{name}_weight_pruned_ratio"] = 1.0 - q["weight"]
  report["executed_macs"] = cost.CountCost(arch, "flops", lr_hw).exact(channel_masks)
  report["executed_macs_ratio"] = report["executed_macs"] / report["dense_flops"]
  report["widths"] = _widths(arch, channel_masks)
  if latency_table is not None:
    table = (latency_table if isinstance(latency_table, LatencyTable)
             else load_table_once(latency_table, allow_other_device=True))
    report.update(LatencyCost(arch.dense(), table).report(report["widths"]))
  report["channel_pruned_ratio"] = report[f"{metric}_channel_pruned_ratio"]
  report["weight_pruned_ratio"] = report[f"{metric}_weight_pruned_ratio"]
  report["steps"] = 0
  report["converged"] = None
  return report


def _widths(arch: Arch, channel_masks) -> dict:
  if channel_masks:
    return {g: int(np.count_nonzero(np.asarray(m))) for g, m in channel_masks.items()}
  return {g: arch.width(g) for g in arch.prunable_groups()}


def prune(params: Mapping, budget: Union[Budget, float], *, arch: Arch,
          data: Optional[Iterable] = None, steps: Optional[int] = None, seed: int = 0,
          config: Optional[Any] = None,
          on_step: Optional[Callable[[int, dict], None]] = None) -> PruneResult:
  """Prunes `params` to `budget` with FMP's search, then slices the model.

  Args:
    params: dense backbone params for `arch`, fresh (`fmp_jax.init_params`) or
      trained; the hypernetwork starts by reproducing their kernels. Not mutated.
    budget: a `Budget`, or a float: the kept fraction of FLOPs, criterion Total.
    arch: the dense architecture of `params`.
    data: iterable of (lr, hr) batches, one per step: lr (N, h, w, 3) and hr
      (N, h*s, w*s, 3) with s = arch.scale, channels last (NHWC), float32 in
      [0, arch.rgb_range] or uint8 in 0..255 (converted to float32
      x / 255 * arch.rgb_range). A list (or any iterable that can be iterated
      again) is restarted when it runs out; a generator must yield enough
      batches. Default: random patches of the photos bundled with scikit-image.
    steps: the most search steps before `BudgetNotReachedError` (default:
      config's max_steps, else the driver's default `settings.LOOP_DEFAULTS`).
    seed: seeds the hypernetwork init and the default data.
    config: search settings (dict or ConfigDict with `fmp_jax.config_base`'s
      ``search`` fields); missing fields take the driver's defaults
      (`settings.SearchSettings` and `settings.LOOP_DEFAULTS`: batch 16 of
      48x48 LR patches for the default data).
    on_step: optional callback ``on_step(step, metrics)``.
  Returns:
    `PruneResult` with the compact params, its `Arch`, the weight masks and a
    report (see `sparsity_report`, plus the search's ``steps``/``converged``).
  Raises:
    fmp_jax.data.DataError: unusable data (shapes, layout, value range, or a
      generator that runs out); ParamsMismatchError: params not of `arch`;
    ValueError: NaN/Inf in `params`; BudgetNotReachedError: see `steps`.
  """
  return _search(params, Budget.coerce(budget), None, arch, data, steps, seed, config,
                 on_step)[0]


def prune_family(params: Mapping, keeps, *, arch: Arch, budget: Union[Budget, float, None] = None,
                 data: Optional[Iterable] = None, steps: Optional[int] = None, seed: int = 0,
                 config: Optional[Any] = None,
                 on_step: Optional[Callable[[int, dict], None]] = None) -> list[PruneResult]:
  """One search, a family of pruned models: one `PruneResult` per keep, largest first.

  keeps: kept fractions in descending order, e.g. [0.5, 0.3, 0.15], of `budget`'s metric
  (default: FLOPs, criterion Total; `budget` gives the metric and criterion, its keep is
  replaced by each member's). The search passes every larger budget on its way down the
  schedule to the smallest: at the first step where a member's criterion holds (landed
  at or under it, as `prune` lands its budget), that state is sliced into that member;
  the search then goes on. Arguments otherwise as `prune`; each member's report has the
  ``steps`` at which it was taken.
  """
  keeps = [float(k) for k in keeps]
  if not keeps:
    raise ValueError("prune_family: give at least one keep.")
  base = Budget.coerce(budget if budget is not None else keeps[-1])
  base = dataclasses.replace(base, keep=keeps[-1])
  return _search(params, base, keeps, arch, data, steps, seed, config, on_step)


def _search(params, budget: Budget, family, arch, data, steps, seed, config, on_step):
  """prune / prune_family: checks, then one search; a PruneResult per member."""
  if not isinstance(arch, Arch):
    raise TypeError(f"arch must be an fmp_jax.Arch, got {type(arch).__name__}.")
  cfg = dict(config.to_dict() if hasattr(config, "to_dict") else (config or {}))
  cfg = dict(LOOP_DEFAULTS, **cfg)
  settings = SearchSettings.from_config(cfg)
  max_steps = int(steps if steps is not None else cfg["max_steps"])
  if max_steps < 1:
    raise ValueError(f"steps={max_steps} must be at least 1.")
  check_params(params, arch)
  check_finite_params(params, "prune")
  search.check_budget_needs_pruning(arch, budget)
  search.check_budget_reachable(arch, budget, settings)

  if data is None:
    from fmp_jax.data import bundled_patches
    data = bundled_patches(arch.scale, int(cfg["patch_size"]), int(cfg["batch_size"]),
                           seed=seed, rgb_range=arch.rgb_range)
  batches = CheckedBatches(data, arch.scale, arch.rgb_range, max_steps,
                           f"may need up to {max_steps} (steps / config.max_steps; the search "
                           f"stops earlier once the budget is met)", "prune")

  members = search.family_budgets(budget, family)
  state = state_lib.init_state(arch, params, settings, seed=seed)
  callback = None if on_step is None else (lambda step, metrics, _: on_step(step, metrics))
  taken = {}

  def on_member(k, member, step, st):
    # A host copy: the next step takes the state's buffers.
    taken[k] = (step, jax.device_get(st))

  outcome = search.run_search(arch, state, budget, settings, batches, max_steps,
                              on_step=callback,
                              members=members if family else None,
                              on_member=on_member if family else None)
  if not family:
    return [finalize(arch, outcome, budget, settings, seed=seed)]
  results = []
  for k, member in enumerate(members):
    step, st = taken[k]
    results.append(finalize(arch, search.SearchOutcome(st, step, True, outcome.history[:step]),
                            member, settings, seed=seed))
  return results


def finalize(arch: Arch, outcome: "search.SearchOutcome", budget: Budget,
             settings: SearchSettings, seed: int = 0) -> PruneResult:
  """Generates the kernels once and slices away pruned channels (`settings.fill_plan`:
  channels revived up to the latency plan, grown to the budget with `settings.fill_budget`,
  start from `init_params(arch, seed)`)."""
  full_params, _ = state_lib.masked_model(arch, outcome.state, settings)
  full_params = jax.device_get(full_params)
  channel_masks, weight_masks = state_lib.exact_masks(
      arch, jax.device_get(outcome.state.latents), settings)
  kept = {g: int(np.count_nonzero(m)) for g, m in channel_masks.items()}
  # Where the cost model runs a model wider than its kept widths (a latency table's plan),
  # those widths run anyway (as zero padding): train them instead.
  cost = budget.cost_model(arch)
  plan = cost.run_widths(kept) if settings.fill_plan else None
  if plan is not None and settings.fill_budget:
    plan = cost.grow(plan, budget.keep)
  if plan is not None and any(plan[g] > w for g, w in kept.items()):   # else skip the init
    full_params, channel_masks, weight_masks = surgery.revive_channels(
        arch, full_params, init_params(arch, seed=seed), channel_masks, weight_masks, plan)
  params, small_arch, masks = surgery.slice_model(arch, full_params, channel_masks, weight_masks)
  report = sparsity_report(params, small_arch, masks, metric=budget.metric,
                           latency_table=budget.latency_table)
  report.update(steps=outcome.steps, converged=outcome.converged, budget=dataclasses.asdict(budget))
  return PruneResult(params=params, arch=small_arch, masks=masks, report=report,
                     history=outcome.history)

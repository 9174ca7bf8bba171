"""Checks of a budget before a search: something to prune, reachable by channels, a family.

Run before any compile (the driver, `prune`, `prune_family`); `search` re-exports them.
"""

from __future__ import annotations

import dataclasses

from fmp_jax.arch import Arch
from fmp_jax.models import arch_name
from fmp_jax.pruning import criteria
from fmp_jax.pruning.budget import Budget
from fmp_jax.pruning.errors import BudgetError
from fmp_jax.pruning.settings import SearchSettings


def check_budget_needs_pruning(arch: Arch, budget: Budget) -> None:
  """Raises BudgetError when the dense model already satisfies `budget`."""
  if budget.met(criteria.split(1.0, 1.0, 1.0)):
    raise BudgetError(f"the budget ({budget.describe()}) is already met by the unpruned "
                      f"{arch_name(arch)}; nothing to prune. Use a keep below 1.")


def check_budget_reachable(arch: Arch, budget: Budget, settings: SearchSettings) -> float:
  """Raises BudgetError when channels alone must go below what ``min_channels`` leave (the
  tested channel part, or the total when weight zeros do not lower the cost). Returns that
  floor as a fraction of the dense cost."""
  cost = budget.cost_model(arch)
  a = arch.dense()
  widths = {g: min(a.width(g), settings.min_channels) for g in a.prunable_groups()}
  floor = cost.at_widths(widths) / cost.dense()
  bound = [q for q in ("channel",) + (() if cost.weights_count else ("total",))
           if q in budget.targets()]
  for q in bound:
    if budget.targets()[q] < floor:
      raise BudgetError(
          f"the budget ({budget.describe()}) is below what channel pruning can reach: with "
          f"{settings.min_channels} channels in every group (search.min_channels) "
          f"{arch_name(arch)} keeps {100 * floor:.1f} % of its {budget.metric} (the parts no "
          f"channel removes{'' if cost.weights_count else ' and weight zeros do not speed up'}). "
          f"Use a keep of at least {floor:.3f}, or lower search.min_channels.")
  return floor


def check_schedule(settings: SearchSettings, max_steps: int) -> None:
  """Raises BudgetError when search.max_steps ends before the schedule reaches the budget
  (search.pace_steps): such a search can only end in BudgetNotReachedError."""
  if settings.pace_steps > 0 and max_steps < settings.pace_steps:
    raise BudgetError(
        f"search.max_steps={max_steps} ends before the schedule reaches the budget at "
        f"search.pace_steps={settings.pace_steps}, so the search could never land. Raise "
        f"max_steps to at least pace_steps (about twice leaves room to land), or shorten the "
        f"schedule with pace_steps; for a quick end-to-end check use a config's smoke preset "
        f"(e.g. --config=configs/x2.py:smoke).")


def family_budgets(budget: Budget, family) -> list[Budget]:
  """The budgets of a family of keeps (`search.family`): descending, the budget's own keep
  last; each member is the budget at its keep."""
  keeps = [float(k) for k in (family or ())]
  if not keeps:
    return [budget]
  if len(set(keeps)) != len(keeps):
    raise BudgetError(f"search.family={tuple(keeps)} repeats a keep.")
  if sorted(keeps, reverse=True) != keeps:
    raise BudgetError(f"search.family={tuple(keeps)} must be in descending order (the search "
                      f"passes the larger budgets first).")
  if abs(keeps[-1] - budget.keep) > 1e-12:
    raise BudgetError(f"search.family={tuple(keeps)} must end with the budget's own keep "
                      f"{budget.keep} (budget.keep is the deepest member).")
  if budget.rule.needs:
    raise BudgetError(f"search.family with criterion {budget.criterion!r}: its members would "
                      f"need their own {', '.join(budget.rule.needs)}; use total, channel or "
                      f"weight.")
  return [dataclasses.replace(budget, keep=k) for k in keeps]

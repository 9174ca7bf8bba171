"""Budgets and FMP's four convergence criteria.

A `Budget` says what must REMAIN, as a fraction of the dense model's params,
FLOPs or measured latency (unlike jaxpruner's "sparsity", which is the fraction
removed). Each metric is a cost model (`fmp_jax.pruning.cost`); a latency
budget reads a table measured on the device (`fmp_jax.pruning.latency`).

With M the metric and M_dense the dense model's:

* remaining ``R   = M(channels and weights) / M_dense``
* channel part ``R_C = M(channels only) / M_dense`` (weight masks ignored)
* weight part  ``R_W = 1 - (M(channels only) - M(channels and weights)) / M_dense``

so ``1 - R = (1 - R_C) + (1 - R_W)``: the removed fraction splits exactly into
what channel pruning and what weight pruning removed (FMP's Table 3 split).

Criteria (FMP.md section 4; each a `criteria.Criterion`, which also says how
the search treats it):

* ``total`` (paper default): R <= keep; the split is left to the optimisation.
* ``channel``: R_C <= channel_keep (default: keep).
* ``weight``: R_W <= weight_keep (default: keep).
* ``total_fixed``: R_C <= channel_keep and R_W <= weight_keep, where
  weight_keep defaults to 1 + keep - channel_keep (so that R = keep).

Both kinds of pruning run under every criterion; only the convergence test
(and which quantity the budget regulariser pushes) differs.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional, Union

from fmp_jax.arch import Arch
# `latency` registers the "latency" metric (its cost model lives beside its table).
from fmp_jax.pruning import cost, criteria, latency  # noqa: F401
from fmp_jax.pruning.criteria import split as quantities
from fmp_jax.pruning.errors import BudgetError

METRICS = tuple(cost.COST_MODELS)
CRITERIA = tuple(criteria.CRITERIA)

__all__ = ["Budget", "BudgetError", "METRICS", "CRITERIA", "quantities"]


@dataclasses.dataclass(frozen=True)
class Budget:
  """Target fraction that REMAINS after pruning, of FLOPs, params or measured latency.

  Example: ``Budget(0.085, metric="params")`` keeps 8.5 % of the params (the
  paper's setting); ``Budget(0.5, criterion="total_fixed", channel_keep=0.6)``
  removes 40 % by channels and 10 % more by weights;
  ``Budget(0.6, metric="latency", latency_table="latency.json")`` keeps 60 % of
  the dense model's latency as measured in the table (criterion total or
  channel: weight zeros save no time). ``latency_any_device`` accepts a table
  measured on another device kind.
  """
  keep: float
  metric: str = "flops"
  criterion: str = "total"
  channel_keep: Optional[float] = None
  weight_keep: Optional[float] = None
  latency_table: Optional[str] = None
  latency_any_device: bool = False

  def __post_init__(self):
    if self.metric not in METRICS:
      raise BudgetError(f"Budget.metric={self.metric!r} is unknown; use one of {METRICS}.")
    if self.criterion not in criteria.CRITERIA:
      raise BudgetError(f"Budget.criterion={self.criterion!r} is unknown; use one of "
                        f"{CRITERIA}.")
    for name in ("keep", "channel_keep", "weight_keep"):
      value = getattr(self, name)
      if value is None and name != "keep":
        continue
      if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise BudgetError(f"Budget.{name}={value!r} must be a number in (0, 1].")
      if not 0.0 < value <= 1.0:
        raise BudgetError(f"Budget.{name}={value!r} must be in (0, 1]: it is the fraction of "
                          f"{self.metric} that REMAINS (0.085 keeps 8.5 %).")
    metric = cost.COST_MODELS[self.metric]
    if not metric.weights_count and "weight" in self.rule.tested:
      raise BudgetError(f"Budget(metric={self.metric!r}, criterion={self.criterion!r}): weight "
                        f"zeros do not lower {self.metric} (no kernel skips them), so this budget "
                        f"tests the channels: use criterion 'total' or 'channel'.")
    for name in metric.needs:
      if not getattr(self, name):
        raise BudgetError(f"Budget(metric={self.metric!r}) needs {name}=PATH: {metric.hint}.")
    complete = self.rule.complete
    for name, value in (complete(self) if complete else {}).items():
      object.__setattr__(self, name, value)

  def cost_model(self, arch: Arch) -> cost.CostModel:
    """The cost model of this budget's metric for `arch` (`cost.COST_MODELS`), built once per
    (arch, metric and its files' versions) in this process: a run's steps, members and
    reports share it. What a metric is asked (its report fields, the widths a model runs at)
    is asked of it."""
    files = tuple((name, getattr(self, name), _stamp(getattr(self, name)))
                  for name in cost.COST_MODELS[self.metric].needs)
    key = (arch, self.metric, self.latency_any_device, files)
    if key not in _BUILT:
      if len(_BUILT) >= 64:
        _BUILT.clear()
      _BUILT[key] = cost.COST_MODELS[self.metric].build(arch, self)
    return _BUILT[key]

  @property
  def rule(self) -> criteria.Criterion:
    """The `criteria.Criterion` object of this budget's criterion."""
    return criteria.CRITERIA[self.criterion]

  @classmethod
  def coerce(cls, budget: Union["Budget", float, int, dict]) -> "Budget":
    """A float is the kept fraction of FLOPs under criterion Total."""
    if isinstance(budget, Budget):
      return budget
    if isinstance(budget, dict):
      return cls(**budget)
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
      return cls(float(budget))
    raise BudgetError(f"budget={budget!r}: pass a Budget or a float (kept fraction of FLOPs).")

  @classmethod
  def from_config(cls, cfg) -> "Budget":
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return cls(**d)

  def targets(self) -> dict[str, float]:
    """Quantity name ("total", "channel", "weight") -> value it must reach (<=)."""
    return self.rule.targets(self)

  def met(self, quantities: dict[str, float]) -> bool:
    """Whether the criterion holds for {"total": R, "channel": R_C, "weight": R_W}."""
    return all(quantities[name] <= target for name, target in self.targets().items())

  def describe(self) -> str:
    parts = ", ".join(f"{name} <= {100 * t:.2f} %" for name, t in self.targets().items())
    return f"keep {100 * self.keep:.2f} % of {self.metric} (criterion {self.criterion}: {parts})"


def _stamp(path) -> Optional[int]:
  try:
    return os.stat(path).st_mtime_ns
  except (OSError, TypeError):
    return None


# (arch, metric, latency_any_device, the metric's files and their versions) -> cost model.
_BUILT: dict = {}

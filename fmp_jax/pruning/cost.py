"""Cost models: what a budget counts, behind one interface.

A `CostModel` of one architecture gives

* `dense()`: the unpruned model's cost;
* `exact(channel_masks, weight_masks)`: the cost under 0/1 masks, on the
  host (int64 counts; the convergence test and every report use it);
* `relaxed(channel_masks, weight_masks)`: the same formula in jax.numpy for
  soft or straight-through masks, differentiable (the budget term and the
  landing use it inside the jitted step).

A cost model is built for an architecture at its built widths (dense for the
search, pruned for a report of a sliced model); `dense()` is always the
unpruned model's cost. Channel masks are at the built widths, prunable group
-> (C,), missing groups fully kept; tied groups are added here. `exact` takes weight masks as layer name
-> kernel-shaped 0/1 (or the nested ``masks`` collection); `relaxed` takes
them nested like the params (the search's weight indicators, HWIO or
(C_in, C_out) "pair" indicators). `weights_count` says whether weight zeros
lower the cost at all (they do not for a measured latency: no kernel skips
them).

`quantities` turns a cost model's values into the criteria's R, R_C, R_W
(`fmp_jax.pruning.criteria`). Params and FLOPs (`CountCost`) sit on the one
complexity counter (`fmp_jax.pruning.complexity`); a cost that is a function
of the per-group widths (a measured latency table) fits the same interface:
its relaxed value may read the widths as sums of straight-through masks.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fmp_jax.arch import Arch
from fmp_jax.pruning import complexity, criteria
from fmp_jax.pruning.masks import indicator_as_kernel
from fmp_jax.tree_paths import get_at


class CostModel(abc.ABC):
  """The cost of one architecture's masked states (see the module docstring)."""

  name: str = ""
  weights_count: bool = True

  def __init__(self, arch: Arch):
    self.arch = arch

  @abc.abstractmethod
  def dense(self) -> float:
    """The unpruned model's cost."""

  @abc.abstractmethod
  def exact(self, channel_masks: Optional[Mapping] = None,
            weight_masks: Optional[Mapping] = None) -> float:
    """Host-side cost under 0/1 masks (see the module docstring for their layout)."""

  @abc.abstractmethod
  def relaxed(self, channel_masks: Mapping, weight_masks: Optional[Any] = None):
    """In-graph cost (float32, differentiable) under soft or straight-through masks."""

  def relaxed_ratio(self, channel_masks: Mapping, weight_masks: Optional[Any] = None):
    """`relaxed` as a fraction of `dense` (what the criteria's quantities are made of)."""
    return self.relaxed(channel_masks, weight_masks) / float(self.dense())

  def removal_cost(self, channel_masks: Mapping, weight_masks=None, multiple: int = 1) -> dict:
    """In-graph: group -> (C / multiple,) the fraction of the dense cost that removing each
    kept entry of `multiple` channels alone would save, under 0/1 masks. By default the
    gradient of `relaxed_ratio` (exact for a cost linear in each mask entry)."""
    grads = jax.grad(lambda m: self.relaxed_ratio(m, weight_masks))(dict(channel_masks))
    return {g: v.reshape(-1, multiple).sum(axis=1) for g, v in grads.items()}

  def ratio(self, channel_masks=None, weight_masks=None) -> float:
    """`exact` as a fraction of `dense`."""
    return self.exact(channel_masks, weight_masks) / self.dense()

  def run_widths(self, widths: Mapping[str, int]) -> Optional[dict[str, int]]:
    """The widths a model of these kept widths runs at, where this cost model chooses them (a
    latency table's plan); None leaves them to `Upscaler`'s padding."""
    del widths
    return None

  def grow(self, run: Mapping[str, int], keep: float) -> dict[str, int]:
    """Run widths widened while the cost stays within `keep` of the dense cost, where this
    cost model lands in coarse steps (a latency table); a count lands on its target, so by
    default the widths come back as they are."""
    del keep
    return dict(run)

  def report(self, widths: Mapping[str, int]) -> dict:
    """What this cost model adds to `sparsity_report` (params and FLOPs are always there)."""
    del widths
    return {}

  def at_widths(self, widths: Mapping[str, int]) -> float:
    """Exact cost of the model with these kept widths (group -> channels) and no weight masks
    (for a cost model of a dense arch)."""
    return self.exact(leading_masks(self.arch, widths))


def leading_masks(arch: Arch, widths: Mapping[str, int]) -> dict[str, np.ndarray]:
  """Group -> (C,) 0/1 keeping the first `widths[group]` channels (a pruned arch's masks)."""
  out = {}
  for g in arch.prunable_groups():
    m = np.zeros(arch.dense().width(g), np.int64)
    m[:int(widths.get(g, m.size))] = 1
    out[g] = m
  return out


class CountCost(CostModel):
  """Params or FLOPs (multiply-accumulates) in the paper's convention (`complexity`)."""

  weights_count = True

  def __init__(self, arch: Arch, which: str, lr_hw: Optional[tuple[int, int]] = None):
    super().__init__(arch)
    if which not in ("params", "flops"):
      raise ValueError(f"CountCost counts 'params' or 'flops', not {which!r}.")
    self.name = which
    self.lr_hw = None if lr_hw is None else tuple(lr_hw)
    self.layers = complexity.layer_table(self.arch, self.lr_hw)
    self._column = 0 if which == "params" else 1
    dense = complexity.count(arch.dense(), lr_hw=self.lr_hw)
    self._both_dense = (float(dense.params), float(dense.flops))
    self._dense = dense.params if self._column == 0 else dense.flops

  def dense(self) -> int:
    return self._dense

  def exact(self, channel_masks=None, weight_masks=None) -> int:
    counts = complexity.count(self.arch, channel_masks=channel_masks or None,
                              weight_masks=weight_masks, lr_hw=self.lr_hw)
    return counts.params if self._column == 0 else counts.flops

  def relaxed(self, channel_masks, weight_masks=None):
    return self._rows_sum(channel_masks, weight_masks)[self._column]

  def both_ratios(self, channel_masks, weight_masks=None):
    """In-graph (params, FLOPs) as fractions of the dense model's, stacked."""
    params, flops = self._rows_sum(channel_masks, weight_masks)
    return jnp.stack([params / self._both_dense[0], flops / self._both_dense[1]])

  def relaxed_ratio(self, channel_masks, weight_masks=None):
    # Both metrics counted and one picked by a dot with a one-hot vector: the search's
    # formula since its first release, kept so that a search takes bit-identical steps
    # (XLA rounds the sums otherwise in another order).
    pick = jnp.asarray([1.0, 0.0] if self._column == 0 else [0.0, 1.0], jnp.float32)
    return jnp.dot(pick, self.both_ratios(channel_masks, weight_masks))

  def _rows_sum(self, channel_masks, weight_masks):
    rows = complexity.layer_counts(self.layers, self.arch.expand_tied(channel_masks, jnp),
                                   kernel_masks(self.layers, weight_masks), xp=jnp)
    return sum(p for p, _ in rows), sum(m for _, m in rows)


def kernel_masks(layers, weight_masks) -> Optional[dict]:
  """Layer name -> kernel-shaped masks from a params-nested tree of indicators (or None)."""
  if weight_masks is None:
    return None
  return {l.name: indicator_as_kernel(get_at(weight_masks, l.path), l.kernel) for l in layers}


def quantities(cost: CostModel, channel_masks, weight_masks) -> dict:
  """In-graph {"total": R, "channel": R_C, "weight": R_W} of `cost` (`criteria`)."""
  both = cost.relaxed_ratio(channel_masks, weight_masks)
  conly = cost.relaxed_ratio(channel_masks, None)
  return {"total": both, "channel": conly, "weight": 1.0 - (conly - both)}


def exact_quantities(cost: CostModel, channel_masks, weight_masks) -> dict[str, float]:
  """Host-side R, R_C, R_W of `cost` under 0/1 masks (float64)."""
  conly = cost.exact(channel_masks)
  both = cost.exact(channel_masks, weight_masks) if cost.weights_count else conly
  return criteria.split(cost.dense(), conly, both)


@dataclasses.dataclass(frozen=True)
class Metric:
  """A budget metric: how to build its cost model, and what a budget of it needs."""
  build: Callable[..., CostModel]       # (arch, budget) -> CostModel
  weights_count: bool = True            # weight zeros lower it (else only channels do)
  needs: tuple[str, ...] = ()           # Budget fields it needs
  hint: str = ""                        # how to provide them


# Budget.metric -> Metric. `fmp_jax.pruning.latency` registers "latency" beside its table; a
# new cost model is one CostModel subclass and one `register_metric` call.
COST_MODELS: dict[str, Metric] = {}


def register_metric(name: str, metric: Metric) -> Metric:
  COST_MODELS[name] = metric
  return metric


register_metric("params", Metric(lambda arch, budget=None: CountCost(arch, "params")))
register_metric("flops", Metric(lambda arch, budget=None: CountCost(arch, "flops")))

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
from fmp_jax.pruning.latency import LatencyTable
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


def _through_efficient(xs, values, efficient):
  """Per row of `values` (.., len(xs)): the piecewise-linear curve through its efficient
  points only (where no wider run is faster), read at every xs."""
  out = np.empty_like(values)
  for k in np.ndindex(values.shape[:-1]):
    keep = efficient[k]
    out[k] = np.interp(xs, np.asarray(xs, float)[keep], values[k][keep])
  return out


def _interp_left(xs, values, x):
  """Piecewise-linear in `xs` along the last axis of `values`, read at x; at a point of xs the
  segment below it (its gradient is what the next channel removed saves)."""
  k = jnp.clip(jnp.searchsorted(xs, x, side="left"), 1, xs.shape[0] - 1)
  t = (x - xs[k - 1]) / (xs[k] - xs[k - 1])
  return values[..., k - 1] * (1 - t) + values[..., k] * t


def _suffix_min(values):
  """min over j' >= j along the last axis."""
  return np.minimum.accumulate(values[..., ::-1], axis=-1)[..., ::-1]


class LatencyCost(CostModel):
  """Measured latency (seconds per forward pass at the table's input size, `latency`).

  The relaxed value is the table's prediction (`LatencyTable.predict`: its
  fastest run at or above the widths, a step function that never rises as
  channels go); its gradient is that of a piecewise-linear curve at the
  unpadded widths through the widths where no wider run is faster, so each
  channel entry is pushed by the average time the next such width saves per
  channel, also across widths that run slower than a wider one. Weight zeros
  save no time (`weights_count` is False): no kernel skips them.
  """

  name = "latency"
  weights_count = False

  def __init__(self, arch: Arch, table: LatencyTable):
    super().__init__(arch)
    table.check_arch(arch)
    self.table = table
    a = arch.dense()
    self._full = {g: a.width(g) for g in a.prunable_groups()}
    self._dense = table.dense()
    rs, ri, rest, block = table.at_candidates()
    env = _suffix_min(block)                      # fastest inner run at or above each
    self._rs, self._ri = np.asarray(rs, np.float32), np.asarray(ri, np.float32)
    self._rest = rest.astype(np.float32)
    self._env = env.astype(np.float32)
    self._smooth = _through_efficient(ri, env, block <= env).astype(np.float32)

  def dense(self) -> float:
    return self._dense

  def exact(self, channel_masks=None, weight_masks=None) -> float:
    del weight_masks   # weight zeros save no time
    widths = {g: int(np.count_nonzero(np.asarray(m))) for g, m in (channel_masks or {}).items()}
    return self.table.predict(widths)

  def at_widths(self, widths):
    return self.table.predict(widths)

  def removal_cost(self, channel_masks, weight_masks=None, multiple: int = 1) -> dict:
    """Per group, the step of the table removing `multiple` more channels would take."""
    del weight_masks
    widths = {g: jnp.sum(jax.lax.stop_gradient(m)) for g, m in channel_masks.items()}
    now = self._predict_jnp(widths)
    out = {}
    for g, m in channel_masks.items():
      fewer = self._predict_jnp(dict(widths, **{g: jnp.maximum(widths[g] - multiple, 1.0)}))
      out[g] = jnp.full(m.shape[0] // multiple, (now - fewer) / self._dense)
    return out

  def _predict_jnp(self, widths):
    """The table's step function in jax.numpy (no gradient)."""
    return jax.lax.stop_gradient(self._relaxed_widths(widths))

  def relaxed(self, channel_masks, weight_masks=None):
    """The prediction's value, the efficient-width curve's gradient, in the masks' sums."""
    del weight_masks
    widths = {g: (jnp.sum(channel_masks[g]) if g in channel_masks else jnp.float32(full))
              for g, full in self._full.items()}
    return self._relaxed_widths(widths)

  def _relaxed_widths(self, widths):
    t = self.table
    widths = {g: jnp.asarray(widths.get(g, full), jnp.float32) for g, full in self._full.items()}
    rs, ri = jnp.asarray(self._rs), jnp.asarray(self._ri)

    def padded(g, w):
      # run_width in jnp, without gradient (the step's value).
      w = jax.lax.stop_gradient(w)
      up = jnp.minimum(self._full[g], t.channel_multiple * jnp.ceil(w / t.channel_multiple))
      return jnp.where(w <= t.narrow, w, up) if t.channel_multiple > 1 else w

    def reverse_cummin(x):
      return jax.lax.cummin(x, reverse=True)

    # The step value: per stream run S' (every candidate), the rest plus each block's fastest
    # inner run at or above its own; the fastest S' at or above the stream's own run.
    env, smooth = jnp.asarray(self._env), jnp.asarray(self._smooth)
    step_rows = jnp.asarray(self._rest)
    smooth_rows = jnp.asarray(self._rest)
    for b in range(t.arch.blocks):
      i = widths[f"block_{b}.inner"]
      j = jnp.searchsorted(ri, padded(f"block_{b}.inner", i), side="left")
      step_rows = step_rows + env[:, j]
      smooth_rows = smooth_rows + _interp_left(ri, smooth, i)
    s = widths["stream"]
    k = jnp.searchsorted(rs, padded("stream", s), side="left")
    step = reverse_cummin(step_rows)[k]
    # The smooth value: linear in s between the efficient stream runs around s (where no
    # wider run is faster under the same inner widths; at one of them, the segment below),
    # so its slope is never negative.
    efficient = jax.lax.stop_gradient(smooth_rows <= reverse_cummin(smooth_rows))
    up = jnp.argmin(jnp.where(efficient & (rs >= s), rs, jnp.inf))
    below = efficient & (rs < s)
    lo = jnp.where(jnp.any(below), jnp.argmax(jnp.where(below, rs, -jnp.inf)), up)
    span = rs[up] - rs[lo]
    frac = jnp.where(span > 0, (s - rs[lo]) / jnp.where(span > 0, span, 1.0), 0.0)
    smooth_value = smooth_rows[lo] * (1 - frac) + smooth_rows[up] * frac
    return step + smooth_value - jax.lax.stop_gradient(smooth_value)


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


# Budget.metric -> Metric.
COST_MODELS: dict[str, Metric] = {
    "params": Metric(lambda arch, budget=None: CountCost(arch, "params")),
    "flops": Metric(lambda arch, budget=None: CountCost(arch, "flops")),
    "latency": Metric(
        lambda arch, budget: LatencyCost(arch, LatencyTable.load(
            budget.latency_table, allow_other_device=budget.latency_any_device)),
        weights_count=False, needs=("latency_table",),
        hint="a table measured on the target device (python tools/profile_latency.py "
             "--config ... --out PATH)"),
}


def for_budget(arch: Arch, budget) -> CostModel:
  """The cost model of `budget.metric` for `arch`."""
  return COST_MODELS[budget.metric].build(arch, budget)

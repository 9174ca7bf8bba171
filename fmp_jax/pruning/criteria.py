"""FMP's four convergence criteria, one small object each (FMP.md section 4).

With M the budget's metric (`fmp_jax.pruning.cost`), a search state has three
quantities, each a fraction of the dense model's M:

* ``total``   R   = M(channel and weight masks) / M_dense
* ``channel`` R_C = M(channel masks only) / M_dense
* ``weight``  R_W = 1 - (M(channels only) - M(channels and weights)) / M_dense

so that ``1 - R = (1 - R_C) + (1 - R_W)``. A `Criterion` says everything the
search does differently per criterion:

* `tested`: the quantities the convergence test checks, and the budget field
  that sets each one's target (`targets`);
* `governs`: which quantity limits the proximal step of the channels and of
  the weights (the landing keeps it at or above its scheduled target);
  ``"floor"`` is the total held at the lowest tested target, so the kind a
  criterion does not test still prunes but never drives the total below the
  budget while the tested kind is on its way;
* `joint`: one step fraction for both kinds (Total): entries go in order of
  size, whatever their kind, and the fine-grained weights land the budget;
* `free_kind`: the kind the criterion does not test; its l1 and its budget
  term run at ``search.free_l1_scale``;
* `terms`: the budget term's parts, each a tested quantity counted with
  straight-through masks of the kind(s) it measures (`regularizer`);
* `lander`: which kind's step lands each quantity, so the dual of a
  quantity whose landing held its step back is lowered.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional

from fmp_jax.pruning.errors import BudgetError

QUANTITIES = ("total", "channel", "weight")
KINDS = ("channel", "weight")


def split(dense, channels_only, both) -> dict:
  """R, R_C, R_W from three values of one metric (dense, channel masks only, all masks)."""
  return {"total": both / dense, "channel": channels_only / dense,
          "weight": 1.0 - (channels_only - both) / dense}


@dataclasses.dataclass(frozen=True)
class Term:
  """One part of the budget term: ``duals[dual] * scale * quantity(channels, weights)``.

  `channels` / `weights` say which masks the quantity is counted with:
  ``"st"`` (straight-through, so the gradient reaches that kind), ``"hard"``
  (values only), or None (that kind is not counted: all kept).
  ``free=True`` scales the term by ``search.free_l1_scale``.
  """
  dual: str
  quantity: str
  channels: Optional[str]
  weights: Optional[str]
  free: bool = False


@dataclasses.dataclass(frozen=True)
class Criterion:
  name: str
  tested: Mapping[str, tuple[str, ...]]   # quantity -> budget fields, first set one is the target
  governs: tuple[str, str]                # (channel step, weight step)
  terms: tuple[Term, ...]
  joint: bool = False
  free_kind: Optional[str] = None
  doc: str = ""
  needs: tuple[str, ...] = ()            # budget fields that must be given
  # budget -> {field: value} it derives (after checking what it needs), or None.
  complete: Optional[Callable] = None

  def targets(self, budget) -> dict[str, float]:
    """Tested quantity -> the value it must reach (<=) under `budget`."""
    out = {}
    for quantity, fields in self.tested.items():
      values = [getattr(budget, f) for f in fields if getattr(budget, f) is not None]
      out[quantity] = values[0]
    return out

  def l1_scale(self, kind: str, free_scale: float) -> float:
    """The factor on `kind`'s l1 strength: `free_scale` for the untested kind, else 1."""
    return free_scale if kind == self.free_kind else 1.0

  def lander(self, weights_land: bool = True) -> dict[str, str]:
    """Quantity -> the kind whose proximal step lands it (the total: the weights, unless
    weight zeros do not lower the cost)."""
    return {"total": "weight" if weights_land else "channel", "channel": "channel",
            "weight": "weight"}


def _complete_total_fixed(budget) -> dict:
  """total_fixed needs channel_keep; weight_keep defaults to 1 + keep - channel_keep (R = keep)."""
  if budget.channel_keep is None:
    raise BudgetError("Budget(criterion='total_fixed') needs channel_keep (the fraction left "
                      "after channel pruning); weight_keep defaults to 1 + keep - channel_keep.")
  implied = 1.0 + budget.keep - budget.channel_keep
  if budget.weight_keep is None:
    if not 0.0 < implied <= 1.0:
      raise BudgetError(f"Budget: keep={budget.keep} with channel_keep={budget.channel_keep} "
                        f"implies weight_keep={implied:.4f}, outside (0, 1]; channel_keep must "
                        f"be >= keep.")
    return {"weight_keep": implied}
  if abs(budget.channel_keep + budget.weight_keep - 1.0 - budget.keep) > 1e-6:
    raise BudgetError(f"Budget: channel_keep + weight_keep - 1 = "
                      f"{budget.channel_keep + budget.weight_keep - 1:.4f} must equal keep="
                      f"{budget.keep} under total_fixed.")
  return {}


CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    Criterion(
        "total", tested={"total": ("keep",)}, governs=("total", "total"), joint=True,
        terms=(Term("total", "total", "st", "st"),),
        doc="R <= keep; the split between channels and weights is the optimisation's (the "
            "paper's default)"),
    Criterion(
        "channel", tested={"channel": ("channel_keep", "keep")}, governs=("channel", "floor"),
        free_kind="weight",
        terms=(Term("channel", "channel", "st", None),
               Term("channel", "total", "hard", "st", free=True)),
        doc="R_C <= channel_keep (default keep)"),
    Criterion(
        "weight", tested={"weight": ("weight_keep", "keep")}, governs=("floor", "weight"),
        free_kind="channel",
        terms=(Term("weight", "weight", "hard", "st"),
               Term("weight", "total", "st", "hard", free=True)),
        doc="R_W <= weight_keep (default keep)"),
    Criterion(
        "total_fixed", tested={"channel": ("channel_keep",), "weight": ("weight_keep",)},
        governs=("channel", "weight"),
        terms=(Term("channel", "channel", "st", None), Term("weight", "weight", "hard", "st")),
        needs=("channel_keep",), complete=_complete_total_fixed,
        doc="R_C <= channel_keep and R_W <= weight_keep"),
)}


def get(name: str) -> Criterion:
  """The criterion called `name` (ValueError naming the known ones otherwise)."""
  if name not in CRITERIA:
    raise BudgetError(f"criterion {name!r} is unknown; use one of {tuple(CRITERIA)}.")
  return CRITERIA[name]

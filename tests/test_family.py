"""One search, a family of budgets: each member landed on the way down, the plain search unchanged."""

import jax
import numpy as np
import pytest

import fmp_jax
from fmp_jax import Arch, Budget, BudgetError
from fmp_jax.pruning import search
from fmp_jax.pruning.settings import SearchSettings
from fmp_jax.pruning.state import init_state
from conftest import photo_batches

ARCH = Arch(blocks=2, channels=16, esa_channels=8, scale=2)
CFG = dict(lr=1e-3, hyper_embed=4, latent_lr=0.03, pace_steps=60)


@pytest.fixture(scope="module")
def family():
  return fmp_jax.prune_family(fmp_jax.init_params(ARCH, seed=0), [0.7, 0.5, 0.3], arch=ARCH,
                              data=photo_batches(batch=2, seed=5), steps=400, config=CFG)


def test_every_member_is_landed_on_its_budget_in_order(family):
  assert [r.report["budget"]["keep"] for r in family] == [0.7, 0.5, 0.3]
  steps = [r.report["steps"] for r in family]
  assert steps == sorted(steps) and len(set(steps)) == 3, steps
  for r in family:
    keep = r.report["budget"]["keep"]
    assert r.report["converged"]
    assert keep - 0.03 <= r.report["flops_ratio"] <= keep + 1e-9, (keep, r.report["flops_ratio"])
  # Pruning is monotone: a deeper member never has a wider group.
  for a, b in zip(family, family[1:]):
    assert all(b.arch.width(g) <= a.arch.width(g) for g in ARCH.prunable_groups())
  # Each member is a model of its own: it runs, at its own widths.
  x = next(photo_batches(batch=1, seed=9))[0]
  for r in family:
    assert fmp_jax.apply(r.params, r.arch, x).shape == (1, 48, 48, 3)


@pytest.mark.slow
def test_without_a_family_the_search_is_the_plain_step_loop():
  """prune() (no family) takes exactly the steps of a hand-written loop over the jitted step."""
  params = fmp_jax.init_params(ARCH, seed=0)
  budget = Budget(0.5)
  settings = SearchSettings(**CFG)
  result = fmp_jax.prune(params, budget, arch=ARCH, data=photo_batches(batch=2, seed=5),
                         steps=400, config=CFG)
  step = jax.jit(search.make_step(ARCH, budget, settings))
  state, b = init_state(ARCH, params, settings), search.budget_arrays(budget)
  batches = photo_batches(batch=2, seed=5)
  for n in range(1, 401):
    state, m = step(state, b, *next(batches))
    q = {"total": float(m["remaining"]), "channel": float(m["channel_remaining"]),
         "weight": float(m["weight_remaining"])}
    if budget.met(q) and budget.met(search.exact_quantities(ARCH, state.latents, budget,
                                                            settings)):
      break
  assert result.report["steps"] == n
  mine = fmp_jax.prune_family(params, [0.5], arch=ARCH, data=photo_batches(batch=2, seed=5),
                              steps=400, config=CFG)[0]
  for other in (result, mine):
    assert other.report["steps"] == n
  from fmp_jax.pruning.state import exact_masks
  channels, weights = exact_masks(ARCH, jax.device_get(state.latents), settings)
  assert {g: int(m.sum()) for g, m in channels.items()} == dict(result.arch.widths)
  jax.tree.map(np.testing.assert_array_equal, result.params, mine.params)


@pytest.mark.parametrize("keeps, budget, needle", [
    ([0.3, 0.5], Budget(0.5), "descending"),
    ([0.7, 0.5], Budget(0.3), "end with the budget's own keep"),
    ([0.7, 0.7, 0.5], Budget(0.5), "repeats"),
    ([0.7, 0.5], Budget(0.5, criterion="total_fixed", channel_keep=0.6), "channel_keep"),
])
def test_families_that_cannot_work_are_refused(keeps, budget, needle):
  with pytest.raises(BudgetError, match=needle):
    search.family_budgets(budget, keeps)

"""The latency cost model on hand-made tables: padding, prediction, gradient, refusals, search.

No timing here: tables are written by hand (the numbers are the test's), so every
prediction can be worked out on paper. Measuring is `tools/profile_latency.py`'s job
(`bench/latency_model.py` checks its predictions against measurements).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fmp_jax
from fmp_jax import Arch, Budget, BudgetError
from fmp_jax.pruning import cost, latency
from fmp_jax.pruning.latency import LatencyTable, LatencyTableError, run_width, run_widths
from conftest import photo_batches

ARCH = Arch(blocks=2, channels=16, esa_channels=8, scale=2)
GRID = [1, 2, 3, 4, 8, 16]          # the run widths of a 16-wide group at multiple 8


def hand_table(device=None, grid=GRID, arch=ARCH):
  # block(S, I) = 10 S + I ms, rest(S) = 3 S ms: easy to work out by hand.
  g = np.asarray(grid, float)
  return LatencyTable(
      arch=arch, lr_hw=(32, 48), precision="float32",
      device=device or latency.device_info(), versions={}, channel_multiple=8, narrow=4,
      grid={"stream": list(grid), "inner": list(grid)},
      block=1e-3 * (10 * g[:, None] + g[None, :]), rest=1e-3 * 3 * g)


def test_widths_run_padded_to_the_multiple_except_narrow_ones():
  assert [run_width(w, 16, 8, 4) for w in (1, 4, 5, 8, 9, 16)] == [1, 4, 8, 8, 16, 16]
  assert run_width(30, 32, 8, 4) == 32 and run_width(7, 12, 8, 4) == 8
  assert run_width(11, 12, 8, 4) == 12            # never above the full width
  assert run_widths(16, 8, 4) == GRID
  assert run_widths(20, 8, 4) == [1, 2, 3, 4, 8, 16, 20]


def test_prediction_is_rest_plus_blocks_at_the_padded_widths():
  t = hand_table()
  # Full: rest 3*16 + 2 blocks of (160 + 16) = 48 + 352 = 400 ms.
  assert t.dense() == pytest.approx(0.400)
  # Stream 10 runs at 16, inner 5 at 8 and 3 at 3: 48 + (160 + 8) + (160 + 3) = 379 ms.
  w = {"stream": 10, "block_0.inner": 5, "block_1.inner": 3}
  assert t.predict(w) == pytest.approx(0.379)
  # Steps: 6 and 8 inner channels cost the same; 9 costs a step more.
  same = [t.predict(dict(w, **{"block_0.inner": k})) for k in (6, 8, 9)]
  assert same[0] == same[1] < same[2]
  # A coarse grid (no 8): 8 is interpolated between 4 and 16 -> I = 8 exactly (linear).
  coarse = hand_table(grid=[1, 2, 3, 4, 16])
  assert coarse.predict(w) == pytest.approx(0.379)


def test_cost_model_value_is_the_step_and_gradient_the_interpolant_slope():
  c = latency.LatencyCost(ARCH, hand_table())
  assert not c.weights_count and c.dense() == pytest.approx(0.400)
  z = {"stream": jnp.ones(16).at[:6].set(0.0),        # stream 10 -> runs at 16
       "block_0.inner": jnp.ones(16).at[:11].set(0.0),   # 5 -> 8
       "block_1.inner": jnp.ones(16).at[:13].set(0.0)}   # 3 -> 3
  masks = {g: np.asarray(m) for g, m in z.items()}
  assert c.exact(masks, {"ignored": 0}) == pytest.approx(0.379)
  from fmp_jax.pruning.regularizer import straight_through
  value, grad = jax.value_and_grad(lambda m: c.relaxed(straight_through(m)))(z)
  assert float(value) == pytest.approx(0.379, rel=1e-6)
  # d/dI of block(S, I) = 1 ms per channel, whatever S; the smooth surface is linear in I.
  np.testing.assert_allclose(grad["block_0.inner"][15], 1e-3, rtol=1e-5)
  # d/dS: rest 3 + two blocks 10 each = 23 ms per stream channel.
  np.testing.assert_allclose(grad["stream"][15], 23e-3, rtol=1e-5)
  assert float(grad["stream"][0]) == 0.0             # a pruned entry feels nothing
  # In the quantities, weights count for nothing: R_W stays 1.
  q = cost.exact_quantities(c, masks, {"block_0/conv_a": np.zeros((3, 3, 16, 16))})
  assert q["weight"] == 1.0 and q["total"] == q["channel"] == pytest.approx(0.379 / 0.400)


def search_on(table, tmp_path, steps=300, fill_plan=False, fill_budget=False, **budget):
  """A short latency-budget search of a fresh ARCH model on `table` (saved to tmp_path)."""
  path = str(tmp_path / "lat.json")
  table.save(path)
  return fmp_jax.prune(fmp_jax.init_params(ARCH, seed=0),
                       Budget(0.6, metric="latency", latency_table=path, **budget), arch=ARCH,
                       data=photo_batches(batch=2, seed=5), steps=steps,
                       config=dict(lr=1e-3, hyper_embed=4, latent_lr=0.03, pace_steps=60,
                                   fill_plan=fill_plan, fill_budget=fill_budget))


def hilly_table():
  """hand_table with a slow 8-wide stream: rest(8) = 24 + 200 ms, so a stream of 5-8 channels
  runs faster padded to 16 (rest 48 + 2 blocks of 160 + I) than at 8 (224 + 2 blocks of
  80 + I, 16 ms more)."""
  t = hand_table()
  t.rest = np.array(t.rest)
  t.rest[GRID.index(8)] += 0.200
  return t


def test_the_plan_runs_a_slow_width_padded_to_a_faster_one_and_predict_never_rises():
  t = hilly_table()
  w = {"stream": 6, "block_0.inner": 5, "block_1.inner": 3}
  # Stream 6 runs at 8 by the padding rule: 224 + (80 + 8) + (80 + 3) = 395 ms; at 16:
  # 48 + (160 + 8) + (160 + 3) = 379 ms, the plan.
  assert t.time_at({"stream": 8, "block_0.inner": 8, "block_1.inner": 3}) == pytest.approx(0.395)
  assert t.plan(w) == {"stream": 16, "block_0.inner": 8, "block_1.inner": 3}
  assert t.predict(w) == pytest.approx(0.379)
  assert t.plan(dict(w, stream=4))["stream"] == 4        # 12 + 2 blocks of 40 + I: no padding
  # Removing a channel never makes the prediction slower (it may leave it unchanged).
  rng = np.random.default_rng(0)
  for _ in range(100):
    w = {g: int(rng.integers(1, 17)) for g in w}
    for g in w:
      if w[g] > 1:
        assert t.predict(dict(w, **{g: w[g] - 1})) <= t.predict(w) + 1e-12, (w, g)


def test_the_cost_models_gradient_crosses_a_slow_width_toward_the_next_fast_one():
  c = latency.LatencyCost(ARCH, hilly_table())
  from fmp_jax.pruning.regularizer import straight_through
  z = {"stream": jnp.ones(16).at[:4].set(0.0),           # stream 12 -> runs at 16
       "block_0.inner": jnp.ones(16).at[:11].set(0.0),   # 5 -> 8
       "block_1.inner": jnp.ones(16).at[:13].set(0.0)}   # 3 -> 3
  value, grad = jax.value_and_grad(lambda m: c.relaxed(straight_through(m)))(z)
  assert float(value) == pytest.approx(c.exact({g: np.asarray(m) for g, m in z.items()}), rel=1e-6)
  # Stream runs 4 (12 + 40 + 5 + 40 + 3 = 100 ms, smooth inner widths 5 and 3) and 16 (376 ms)
  # are efficient, 8 (392 ms) is not: the slope at 12 is (376 - 100) / 12 = 23 ms a channel,
  # where the raw table, falling from 16 to 8, would push the stream back up.
  np.testing.assert_allclose(grad["stream"][15], 23e-3, rtol=1e-5)
  # The relaxed value is the prediction everywhere.
  rng = np.random.default_rng(1)
  for _ in range(20):
    w = {g: int(rng.integers(1, 17)) for g in z}
    assert float(c._relaxed_widths({g: jnp.float32(v) for g, v in w.items()})) == \
        pytest.approx(c.table.predict(w), rel=1e-6)


def test_a_latency_search_crosses_a_width_that_runs_slower_than_a_wider_one(tmp_path):
  # hilly_table: streams 5-16 all run at 16 (376 ms or more of 400 with inner widths at 4);
  # only a stream of at most 4 (at most 124 ms) fits 0.6: the search must go through the
  # slow 8 to get there.
  result = search_on(hilly_table(), tmp_path)
  assert result.report["converged"]
  assert result.arch.width("stream") <= 4
  t = hilly_table()
  assert result.report["latency_ratio"] == pytest.approx(t.predict(dict(result.arch.widths)) /
                                                         t.dense())
  assert result.report["run_widths"] == t.plan(dict(result.arch.widths))


def test_budget_builds_its_cost_model_once_per_table_version(tmp_path):
  path = str(tmp_path / "lat.json")
  hand_table().save(path)
  first = Budget(0.6, metric="latency", latency_table=path).cost_model(ARCH)
  # Another keep (a family member) and the report read the same table: one model, one read.
  assert Budget(0.3, metric="latency", latency_table=path).cost_model(ARCH) is first
  assert first.dense() == pytest.approx(0.400)
  # What a metric is asked: the widths a model runs at, and its report fields.
  w = {"stream": 10, "block_0.inner": 5, "block_1.inner": 3}
  assert first.run_widths(w) == {"stream": 16, "block_0.inner": 8, "block_1.inner": 3}
  assert first.report(w)["latency_ratio"] == pytest.approx(0.379 / 0.400)
  assert Budget(0.5, metric="params").cost_model(ARCH).run_widths(w) is None
  assert Budget(0.5, metric="flops").cost_model(ARCH).report(w) == {}
  # A rebuilt table (a new version of the file) is read again.
  slower = hand_table()
  slower.rest = 2 * slower.rest
  slower.save(path)
  os.utime(path, ns=(1, 1))
  again = Budget(0.6, metric="latency", latency_table=path).cost_model(ARCH)
  assert again is not first and again.dense() == pytest.approx(0.448)


def test_table_round_trips_and_refuses_another_device_or_model(tmp_path):
  path = str(tmp_path / "lat.json")
  hand_table().save(path)
  again = LatencyTable.load(path)
  assert again.predict({"stream": 10}) == hand_table().predict({"stream": 10})
  other = hand_table(device={"backend": "gpu", "kind": "NVIDIA H200"})
  other.save(path)
  with pytest.raises(LatencyTableError, match="measured on gpu device 'NVIDIA H200'; this is"):
    LatencyTable.load(path)
  assert LatencyTable.load(path, allow_other_device=True).device["kind"] == "NVIDIA H200"
  with pytest.raises(LatencyTableError, match="another model: channels: table 16, model 32"):
    latency.LatencyCost(Arch(blocks=2, channels=32, esa_channels=8), hand_table())
  (tmp_path / "bad.json").write_text("{not json")
  with pytest.raises(LatencyTableError, match="unreadable"):
    LatencyTable.load(str(tmp_path / "bad.json"))
  d = json.loads(open(path).read())
  d["format"] = 99
  (tmp_path / "old.json").write_text(json.dumps(d))
  with pytest.raises(LatencyTableError, match="format 99"):
    LatencyTable.load(str(tmp_path / "old.json"), allow_other_device=True)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(metric="latency"), "needs latency_table=PATH"),
    (dict(metric="latency", latency_table="x.json", criterion="weight"), "weight zeros"),
    (dict(metric="latency", latency_table="x.json", criterion="total_fixed", channel_keep=0.7),
     "weight zeros"),
])
def test_latency_budgets_that_cannot_work_are_refused(kwargs, needle):
  with pytest.raises(BudgetError, match=needle):
    Budget(0.5, **kwargs)


def fine_table():
  """Widths padded to multiples of 2, block(S, I) = 2 S + 10 I ms, rest(S) = 2 S ms: steps of
  3-5 % of the dense latency, so a budget can be landed within 3 points."""
  grid = [1, 2, 3, 4, 6, 8, 10, 12, 14, 16]
  g = np.asarray(grid, float)
  t = hand_table(grid=grid)
  t.channel_multiple = 2
  t.block, t.rest = 1e-3 * (2 * g[:, None] + 10 * g[None, :]), 1e-3 * 2 * g
  return t


@pytest.mark.parametrize("criterion", ["total", "channel"])
def test_a_search_to_a_latency_budget_lands_on_it_with_channels_only(tmp_path, criterion):
  result = search_on(fine_table(), tmp_path, steps=400, criterion=criterion)
  r = result.report
  assert r["converged"]
  table = fine_table()
  predicted = table.predict(dict(result.arch.widths)) / table.dense()
  assert r["latency_ratio"] == pytest.approx(predicted)
  assert 0.6 - 0.03 <= predicted <= 0.6
  assert r["params_weight_pruned_ratio"] == 0.0        # weight zeros would save no time


def test_a_budget_between_two_latency_steps_lands_under_it_instead_of_stalling(tmp_path):
  # hand_table: every width of 9-16 runs at 16, 5-8 at 8. With the stream at 16 the model is
  # at least rest 48 + 2 blocks of (160 + 4) = 376 of 400 ms (0.94); the next stream step
  # (to 8) lands at or under 216 ms (0.54), more than max_overshoot (3 points) under the
  # budget 0.6: no entry can land within it, so once the pace ends the landing takes the
  # step rather than wait for ever.
  result = search_on(hand_table(), tmp_path)
  assert result.report["converged"]
  widths = dict(result.arch.widths)
  assert run_width(widths["stream"], 16, 8, 4) <= 8
  predicted = hand_table().predict(widths) / hand_table().dense()
  assert result.report["latency_ratio"] == pytest.approx(predicted)
  assert predicted <= 0.54


def test_a_latency_budget_below_the_floor_is_refused_up_front(tmp_path):
  path = str(tmp_path / "lat.json")
  hand_table().save(path)
  # At 4 channels per group: rest 12 + 2 blocks of (40 + 4) = 100 of 400 ms: a floor of 0.25.
  with pytest.raises(BudgetError, match=r"keeps 25\.0 % of its latency.*at least 0\.250"):
    fmp_jax.prune(fmp_jax.init_params(ARCH), Budget(0.2, metric="latency", latency_table=path),
                  arch=ARCH, data=photo_batches(batch=2), steps=5)


def test_built_table_takes_the_rest_from_whole_models_of_the_tables_depth(monkeypatch):
  """build_table's assembly, with the clock replaced: blocks alone at block(S, I) = 10 S + I
  ms and whole uniform models of the table's depth at rest + depth x block, rest(S) = 3 S ms,
  must give back exactly the hand table (a depth of 1 in the subtraction would not)."""
  from fmp_jax import profiling
  seen = {}

  def fake_times(calls, repeats, passes):
    seen.update(calls)
    out = {}
    for key in calls:
      if key[0] == "block":
        out[key] = 1e-3 * (10 * key[1] + key[2])
      else:
        s = key[1]
        out[key] = 1e-3 * (3 * s + ARCH.blocks * (10 * s + s))
    return out

  monkeypatch.setattr(profiling, "_min_over_passes", fake_times)
  monkeypatch.setattr(profiling, "default_channel_multiple", lambda: 8)
  table = profiling.build_table(ARCH, (16, 16), repeats=1, passes=1, progress=lambda _: None)
  want = hand_table(arch=ARCH)
  assert table.grid == want.grid
  assert {k[0] for k in seen} == {"block", "whole"} and len(seen) == len(GRID) ** 2 + len(GRID)
  np.testing.assert_allclose(table.block, want.block, rtol=1e-12)
  np.testing.assert_allclose(table.rest, want.rest, rtol=1e-12, atol=1e-15)
  assert table.predict({"stream": 10, "block_0.inner": 5, "block_1.inner": 3}) == \
      pytest.approx(0.379)
  assert table.meta["passes"] == 1 and table.meta["dense_measured"] > 0


def test_a_table_timed_on_a_busy_machine_is_flagged():
  from fmp_jax.profiling import table_warnings
  t = hand_table()
  t.meta["dense_measured"] = 0.400            # the hand table predicts 400 ms exactly
  assert table_warnings(t) == []
  t.meta["dense_measured"] = 0.380            # 5 % off: within the tolerance
  assert table_warnings(t) == []
  t.meta["dense_measured"] = 0.600            # predicted 33 % under its own measurement
  (w,) = table_warnings(t)
  assert "400.0 ms" in w and "600.0 ms" in w and "-33 %" in w
  t.meta["dense_measured"] = 0.400
  t.rest = -np.asarray(t.rest)                # a negative rest alone is no sign of load
  t.meta["dense_measured"] = t.dense()
  assert table_warnings(t) == []


def test_revived_channels_leave_the_function_unchanged_and_can_learn():
  """revive_channels: the model computes exactly what it did, the revived channels' output
  weights are the fresh ones, and the weights from them are zero but trainable."""
  from fmp_jax.pruning import surgery
  params, fresh = fmp_jax.init_params(ARCH, seed=0), fmp_jax.init_params(ARCH, seed=7)
  masks = {"stream": np.r_[np.ones(10), np.zeros(6)], "block_0.inner": np.r_[np.zeros(3), np.ones(5), np.zeros(8)],
           "block_1.inner": np.ones(16)}
  grown, new_masks, w = surgery.revive_channels(ARCH, params, fresh, masks, None,
                                                {"stream": 16, "block_0.inner": 8, "block_1.inner": 16})
  assert {g: int(m.sum()) for g, m in new_masks.items()} == {"stream": 16, "block_0.inner": 8,
                                                              "block_1.inner": 16}
  np.testing.assert_array_equal(new_masks["block_0.inner"][:8], 1)   # the first pruned ones
  before, arch_before, _ = surgery.slice_model(ARCH, params, masks)
  after, arch_after, _ = surgery.slice_model(ARCH, grown, new_masks, w)
  assert arch_after.width("stream") == 16 and arch_after.width("block_0.inner") == 8
  x = np.random.default_rng(0).random((1, 20, 20, 3), np.float32)
  np.testing.assert_allclose(np.asarray(fmp_jax.apply(after, arch_after, x)),
                             np.asarray(fmp_jax.apply(before, arch_before, x)), rtol=0, atol=1e-5)
  # The head writes the stream: revived stream outputs 10-15 are fresh; the next layer reads
  # nothing from them yet.
  np.testing.assert_array_equal(np.asarray(grown["head"]["kernel"])[..., 10:],
                                np.asarray(fresh["head"]["kernel"])[..., 10:])
  assert np.abs(np.asarray(fresh["head"]["kernel"])[..., 10:]).sum() > 0
  np.testing.assert_array_equal(np.asarray(grown["body_end"]["kernel"])[:, :, 10:, :], 0)


def test_fill_plan_trains_the_widths_the_plan_runs_at(tmp_path):
  # fine_table pads odd widths to even ones: the same search with and without fill_plan
  # lands on the same widths, and fill_plan keeps the plan's (wider) ones.
  plain = search_on(fine_table(), tmp_path, steps=400)
  filled = search_on(fine_table(), tmp_path, steps=400, fill_plan=True)
  own = dict(plain.arch.widths)
  plan = fine_table().plan(own)
  assert plan != own                                   # something to fill
  assert dict(filled.arch.widths) == plan == filled.report["run_widths"]
  assert filled.report["latency_ratio"] == pytest.approx(plain.report["latency_ratio"])
  assert filled.report["params"] > plain.report["params"]


def test_grow_spends_a_latency_budget_left_by_a_coarse_step():
  c = latency.LatencyCost(ARCH, hand_table())
  # From stream 8, inner 4, 4 (24 + 2 x 84 = 192 of 400 ms) under 0.6 (240 ms): the stream's
  # next run (16) costs 376 ms; the interiors can each go 4 -> 8 -> 16 (+4, +8 ms): 216 ms.
  start = {"stream": 8, "block_0.inner": 4, "block_1.inner": 4}
  grown = c.grow(start, 0.6)
  assert grown == {"stream": 8, "block_0.inner": 16, "block_1.inner": 16}
  assert hand_table().predict(grown) == pytest.approx(0.216)
  # Room for one 4 -> 8 step only (198 ms): one interior takes it, the other stays.
  one = c.grow(start, 0.495)
  assert sorted([one["block_0.inner"], one["block_1.inner"]]) == [4, 8]
  # A budget the start already fills returns it unchanged; a count lands on its target.
  assert c.grow(start, 0.48) == start
  assert cost.CountCost(ARCH, "params").grow(start, 0.9) == start


def test_grow_stops_when_no_step_of_any_group_fits():
  # hilly_table: the stream's 8 run is slow (rest 224 ms) and its 16 run fast, so from
  # stream 16, inner 4, 4 (376 ms) no stream step exists; each interior step 4 -> 8 adds 4 ms,
  # 8 -> 16 adds 8. Under 0.955 (382 ms) one 4 -> 8 step fits; under 0.97 (388) both do and
  # a following 8 -> 16 (392) does not.
  t = hilly_table()
  c = latency.LatencyCost(ARCH, t)
  start = {"stream": 16, "block_0.inner": 4, "block_1.inner": 4}
  assert t.predict(start) == pytest.approx(0.376)
  assert t.predict(c.grow(start, 0.955)) == pytest.approx(0.380)
  grown = c.grow(start, 0.97)
  assert grown == {"stream": 16, "block_0.inner": 8, "block_1.inner": 8}
  assert t.predict(grown) == pytest.approx(0.384)
  for g in grown:                  # maximal: no single further step stays within the budget
    wider = [w for w in t.candidates(g) if w > grown[g]]
    if wider:
      assert t.predict(dict(grown, **{g: wider[0]})) > 0.97 * t.dense()


def test_fill_budget_widens_a_search_that_crossed_its_budget_by_a_step(tmp_path):
  # The search of test_a_budget_between_two_latency_steps_... lands with the stream at 8 or
  # under (<= 0.54 of 0.6). fill_budget grows it back to the budget: the stream cannot reach
  # 16 (0.94), the interiors reach 16: stream 8, inner 16, 16 at 216 of 400 ms.
  result = search_on(hand_table(), tmp_path, fill_plan=True, fill_budget=True)
  widths = dict(result.arch.widths)
  assert widths == {"stream": 8, "block_0.inner": 16, "block_1.inner": 16}
  assert result.report["latency_ratio"] == pytest.approx(0.54)

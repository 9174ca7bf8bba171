"""FMP search, budgets, criteria, surgery and the prune() API on a small ESRB."""

import dataclasses

import jax
import numpy as np
import pytest

import fmp_jax
from fmp_jax import Arch, Budget, BudgetError
from fmp_jax.pruning import api, complexity, prox, search
from fmp_jax.pruning.settings import SearchSettings
from fmp_jax.pruning.state import init_state, masked_model
from fmp_jax.pruning.budget import quantities
from conftest import photo_batches

ARCH = Arch(blocks=2, channels=32, esa_channels=8, scale=2)
# A short schedule keeps these searches to ~150 steps: latents move ~latent_lr per
# step from 1, so latent_lr 0.03 lets them reach zero by step ~35.
SETTINGS = dict(lr=1e-3, hyper_embed=4, latent_lr=0.03, pace_steps=150)


@pytest.fixture(scope="module")
def params():
  return fmp_jax.init_params(ARCH, seed=0)


# --- the start of the search ----------------------------------------------------------

def test_step_zero_kernels_equal_given_params(params):
  settings = SearchSettings(**SETTINGS)
  state = init_state(ARCH, params, settings)
  full, masks = masked_model(ARCH, state, settings)
  for layer in complexity.layer_table(ARCH):
    a, b = full, params
    for part in layer.path:
      a, b = a[part], b[part]
    np.testing.assert_allclose(a["kernel"], b["kernel"], rtol=1e-4, atol=1e-6)
  x = next(photo_batches())[0]
  np.testing.assert_allclose(fmp_jax.apply(full, ARCH, x, masks), fmp_jax.apply(params, ARCH, x),
                             atol=1e-4)


# --- budgets ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, needle", [
    (dict(keep=0.0), "keep=0.0"), (dict(keep=-0.1), "keep=-0.1"), (dict(keep=1.5), "keep=1.5"),
    (dict(keep=0.5, criterion="totl"), "totl"), (dict(keep=0.5, metric="macs"), "macs"),
    (dict(keep=0.5, criterion="total_fixed"), "channel_keep"),
    (dict(keep=0.5, criterion="total_fixed", channel_keep=0.3), "channel_keep"),
    (dict(keep=0.5, criterion="total_fixed", channel_keep=0.7, weight_keep=0.9), "equal keep"),
])
def test_bad_budgets(kwargs, needle):
  with pytest.raises(BudgetError, match=needle):
    Budget(**kwargs)


def test_quantities_split_adds_up():
  q = quantities(dense=100.0, channels_only=70.0, both=62.0)
  assert q == pytest.approx({"total": 0.62, "channel": 0.70, "weight": 0.92})
  assert (1 - q["total"]) == pytest.approx((1 - q["channel"]) + (1 - q["weight"]))
  assert Budget(0.5, criterion="total_fixed", channel_keep=0.7).weight_keep == pytest.approx(0.8)


# --- the search under every criterion and metric ------------------------------------------

def criterion_value(report, budget):
  m = budget.metric
  return {"total": report[f"{m}_ratio"], "channel": 1 - report[f"{m}_channel_pruned_ratio"],
          "weight": 1 - report[f"{m}_weight_pruned_ratio"]}


# Every criterion lands under one metric in the default run; the other metric of each is
# in the slow set (each case is a whole 1500-step search).
DEFAULT_METRIC = {"total": "flops", "channel": "params", "weight": "flops", "total_fixed": "params"}
COMBOS = [pytest.param(c, m, marks=() if DEFAULT_METRIC[c] == m else pytest.mark.slow)
          for c in DEFAULT_METRIC for m in ("flops", "params")]


def esrb_convs(arch):
  """(path, kernel HWIO, output pixels) of every ESRB conv, from the model's definition
  (FMP.md section 1), for a 1280x720 HR output: independent of `complexity.layer_table`."""
  h, w = 720 // arch.scale, 1280 // arch.scale
  h2, w2 = (h - 3) // 2 + 1, (w - 3) // 2 + 1      # ESA's 3x3 stride-2 VALID conv
  h3, w3 = (h2 - 7) // 3 + 1, (w2 - 7) // 3 + 1    # after the 7x7 stride-3 max-pool
  lr, s, f = h * w, arch.width("stream"), arch.esa_channels
  convs = [(("head",), (3, 3, 3, s), lr)]
  for i in range(arch.blocks):
    inner, b = arch.width(f"block_{i}.inner"), f"block_{i}"
    convs += [((b, "conv_a"), (3, 3, s, inner), lr), ((b, "conv_b"), (3, 3, inner, s), lr),
              ((b, "conv_1x1"), (1, 1, s, s), lr),
              ((b, "esa", "reduce"), (1, 1, s, f), lr), ((b, "esa", "cross"), (1, 1, f, f), lr),
              ((b, "esa", "down"), (3, 3, f, f), h2 * w2),
              ((b, "esa", "mid"), (3, 3, f, f), h3 * w3),
              ((b, "esa", "expand"), (1, 1, f, s), lr)]
  convs += [(("body_end",), (3, 3, s, s), lr),
            (("upsample",), (3, 3, s, 3 * arch.scale ** 2), lr)]
  return convs


def count_by_hand(arch, masks=None):
  """{"params", "flops"} of a sliced ESRB: weights kept by its weight masks (all, where a
  layer has none) + biases; MACs = kept weights x output pixels."""
  params = flops = 0
  for path, kernel, pixels in esrb_convs(arch):
    node = masks or {}
    for part in path:
      node = node.get(part, {})
    if "weight" in node:
      assert np.shape(node["weight"]) == kernel, (path, np.shape(node["weight"]), kernel)
      kept = int(np.count_nonzero(node["weight"]))
    else:
      kept = int(np.prod(kernel))
    params += kept + kernel[3]
    flops += kept * pixels
  return {"params": params, "flops": flops}


@pytest.mark.parametrize("criterion, metric", COMBOS)
def test_prune_lands_on_budget(params, criterion, metric):
  extra = dict(channel_keep=0.7) if criterion == "total_fixed" else {}
  budget = Budget(0.5, metric=metric, criterion=criterion, **extra)
  result = fmp_jax.prune(params, budget, arch=ARCH, data=photo_batches(seed=1), steps=1500,
                         config=SETTINGS)
  report = result.report
  assert report["converged"] and report["steps"] < 1500
  # Recount the sliced model from its widths and weight masks, then judge the budget on
  # those numbers: dense, channels only (the widths), both (widths and weight masks).
  dense = count_by_hand(ARCH)
  conly = count_by_hand(result.arch)
  both = count_by_hand(result.arch, result.masks)
  for m in ("params", "flops"):
    assert (report[m], report[f"dense_{m}"]) == (both[m], dense[m]), m
  values = {"total": both[metric] / dense[metric], "channel": conly[metric] / dense[metric],
            "weight": 1 - (conly[metric] - both[metric]) / dense[metric]}
  for name, target in budget.targets().items():
    assert target - 0.03 <= values[name] <= target + 1e-9, (name, values, target)
  assert criterion_value(report, budget) == pytest.approx(values, abs=1e-12)
  # Pruning of each kind the criterion asks for really happened: channels were sliced
  # away (some group narrower than built), weights were masked in the sliced kernels.
  widths = [result.arch.width(g) for g in ARCH.prunable_groups()]
  channels_removed = min(widths) < ARCH.channels
  weights_removed = both["params"] < conly["params"]
  needs = set(budget.targets())
  if criterion == "total":  # the optimisation chose a split that uses both kinds
    needs = {"channel", "weight"}
  if "channel" in needs:
    assert channels_removed and conly[metric] < dense[metric], widths
  if "weight" in needs:
    assert weights_removed and both[metric] < conly[metric]


def test_free_kind_still_prunes_under_channel_criterion(params):
  result = fmp_jax.prune(params, Budget(0.6, criterion="channel"), arch=ARCH,
                         data=photo_batches(seed=2), steps=1500, config=SETTINGS)
  assert result.report["weight_pruned_ratio"] > 0.0


# --- surgery and the API contract ---------------------------------------------------------

def test_compact_model_equals_masked_model_and_coupling(params):
  settings = SearchSettings(**SETTINGS)
  budget = Budget(0.45)
  state = init_state(ARCH, params, settings)
  outcome = search.run_search(ARCH, state, budget, settings, photo_batches(seed=3), 1500)
  full, masks = masked_model(ARCH, outcome.state, settings)
  result = api.finalize(ARCH, outcome, budget, settings)
  x = next(photo_batches(seed=9, patch=20, batch=2))[0]
  np.testing.assert_allclose(fmp_jax.apply(result.params, result.arch, x),
                             fmp_jax.apply(full, ARCH, x, masks), atol=1e-5)
  # Coupled stream layers were sliced together.
  s = result.arch.width("stream")
  p = result.params
  assert p["head"]["kernel"].shape[-1] == s and p["body_end"]["kernel"].shape[2:] == (s, s)
  for i in range(ARCH.blocks):
    assert p[f"block_{i}"]["conv_b"]["kernel"].shape[-1] == s
    assert p[f"block_{i}"]["conv_1x1"]["kernel"].shape[2:] == (s, s)
    assert p[f"block_{i}"]["esa"]["expand"]["kernel"].shape[-1] == s
  # Masked weights are zero in the kernels and recorded in the masks.
  for name, w in complexity.flatten_weight_masks(result.masks).items():
    node = p
    for part in name.split("/"):
      node = node[part]
    assert np.all(np.asarray(node["kernel"])[np.asarray(w) == 0] == 0)


@pytest.mark.slow
def test_same_seed_same_result_and_float_budget(params):
  a = fmp_jax.prune(params, 0.5, arch=ARCH, data=photo_batches(seed=4), steps=1500, seed=3,
                    config=SETTINGS)
  b = fmp_jax.prune(params, Budget(0.5, metric="flops", criterion="total"), arch=ARCH,
                    data=photo_batches(seed=4), steps=1500, seed=3, config=SETTINGS)
  assert a.arch == b.arch and a.report == b.report
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)


def test_inputs_are_not_mutated(params):
  before = jax.tree.map(np.array, params)
  fmp_jax.prune(params, 0.8, arch=ARCH, data=photo_batches(seed=5), steps=1500, config=SETTINGS)
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, params))


def test_params_that_do_not_match_arch(params):
  with pytest.raises(fmp_jax.ParamsMismatchError, match=r"do not match ESRB-2-8.*needs"):
    fmp_jax.prune(params, 0.5, arch=dataclasses.replace(ARCH, channels=8), steps=5)
  broken = jax.tree.map(lambda x: x, params)
  del broken["block_1"]
  with pytest.raises(fmp_jax.ParamsMismatchError, match="block_1"):
    fmp_jax.prune(broken, 0.5, arch=ARCH, steps=5)


def test_budget_met_by_dense_model(params):
  with pytest.raises(BudgetError, match="already met"):
    fmp_jax.prune(params, 1.0, arch=ARCH, data=photo_batches(), steps=5)


def test_step_limit_names_budget_and_best(params):
  with pytest.raises(fmp_jax.BudgetNotReachedError,
                     match=r"keep 10.00 % of flops.*closest.*widths block_0.inner \d+.*stream \d+\)"):
    fmp_jax.prune(params, 0.1, arch=ARCH, data=photo_batches(), steps=3, config=SETTINGS)


def test_sparsity_report_of_dense_model(params):
  report = fmp_jax.sparsity_report(params, ARCH)
  dense = complexity.count(ARCH)
  assert report["params"] == dense.params and report["flops_ratio"] == 1.0
  assert report["channel_pruned_ratio"] == 0.0 and report["weight_pruned_ratio"] == 0.0


def test_sharded_step_matches_single_device(params):
  """The same step, batch sharded over 8 devices, gives the single-device result."""
  from jax.sharding import NamedSharding, PartitionSpec as P
  devices = jax.devices()
  assert len(devices) == 8
  mesh = jax.make_mesh((8,), ("data",), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))
  settings = SearchSettings(**SETTINGS)
  step = search.make_step(ARCH, Budget(0.5), settings)
  b = search.budget_arrays(Budget(0.5))
  lr, hr = next(photo_batches(batch=8, seed=6))
  state = init_state(ARCH, params, settings)
  single_state, single = jax.jit(step)(state, b, lr, hr)
  replicated = NamedSharding(mesh, P())
  batch = NamedSharding(mesh, P("data"))
  sharded_step = jax.jit(step, in_shardings=(replicated, replicated, batch, batch),
                         out_shardings=(replicated, replicated))
  state2 = init_state(ARCH, params, settings)
  multi_state, multi = sharded_step(state2, b, jax.device_put(lr, batch), jax.device_put(hr, batch))
  np.testing.assert_allclose(multi["loss"], single["loss"], rtol=1e-5)
  jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6),
               single_state.latents, multi_state.latents)
  jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6),
               single_state.biases, multi_state.biases)


@pytest.mark.slow
def test_pruned_and_finetuned_model_beats_bicubic_on_held_out_photos():
  """Default data (bundled TRAIN photos) -> FMP to 50 % FLOPs -> finetune -> EVAL photos."""
  from fmp_jax import data, evaluation
  arch = Arch(blocks=2, channels=16, esa_channels=8, scale=2)
  result = fmp_jax.prune(fmp_jax.init_params(arch), 0.5, arch=arch, steps=2000,
                         config=dict(SETTINGS, batch_size=8, patch_size=24))
  assert result.report["flops_ratio"] <= 0.5
  tuned = fmp_jax.finetune(result.params, result.arch, result.masks,
                           data.bundled_patches(2, 32, 8, seed=1), 2000, lr=2e-3,
                           halve_every=666)
  class Cfg:
    data_dir = ""
  scores = evaluation.evaluate_model(tuned, result.arch, data.eval_pairs(Cfg, "bundled", 2))
  s = scores["summary"]
  assert s["psnr"] > s["bicubic_psnr"], s


def test_finetune_keeps_masked_weights_at_zero(params):
  result = fmp_jax.prune(params, 0.6, arch=ARCH, data=photo_batches(seed=7), steps=1500,
                         config=SETTINGS)
  tuned = fmp_jax.finetune(result.params, result.arch, result.masks, photo_batches(seed=8), 5,
                           lr=1e-2)
  zeros = 0
  for name, w in complexity.flatten_weight_masks(result.masks).items():
    before, after = result.params, tuned
    for part in name.split("/"):
      before, after = before[part], after[part]
    masked = np.asarray(w) == 0
    zeros += int(masked.sum())
    assert np.all(np.asarray(after["kernel"])[masked] == 0)
    assert after["kernel"].shape == before["kernel"].shape
  assert zeros > 0
  assert not np.allclose(tuned["head"]["kernel"], result.params["head"]["kernel"])


def test_search_prunes_gradually(params):
  """With the default pace no step removes more than max_channel_drop of the prunable channels,
  and the remaining channels fall over at least 100 steps, ending at the budget."""
  result = fmp_jax.prune(params, 0.4, arch=ARCH, data=photo_batches(seed=11), steps=1500,
                         config=dict(lr=1e-3))   # the default search settings
  kept = np.array([h["channels_kept"] for h in result.history])
  total = sum(ARCH.width(g) for g in ARCH.prunable_groups())
  drops = -np.diff(np.r_[total, kept])
  # At most max_channel_drop of the entries per step (at least one): the design's own cap.
  cap = prox.max_drop(total, SearchSettings().max_channel_drop)
  assert drops.max() <= cap, (drops.max(), cap)
  falling = np.flatnonzero(drops > 0)
  assert falling[-1] - falling[0] >= 100, falling
  assert kept[-1] == sum(result.arch.width(g) for g in ARCH.prunable_groups())
  # The remaining FLOPs never ran ahead of the schedule by more than one step's worth.
  for h in result.history:
    assert h["remaining"] >= h["target_now"] - 0.03


def test_channel_multiple_gives_widths_in_whole_groups(params):
  result = fmp_jax.prune(params, 0.5, arch=ARCH, data=photo_batches(seed=12), steps=1500,
                         config=dict(SETTINGS, channel_multiple=8))
  assert all(w % 8 == 0 for w in result.arch.widths.values()), result.arch.widths
  assert 0.47 <= result.report["flops_ratio"] <= 0.5
  with pytest.raises(ValueError, match="channel_multiple=5"):
    fmp_jax.prune(params, 0.5, arch=ARCH, data=photo_batches(), steps=5,
                  config=dict(SETTINGS, channel_multiple=5))


def test_finetune_starts_from_the_search_or_from_a_fresh_init_of_its_structure():
  from fmp_jax import finetuning
  arch = Arch(blocks=2, channels=8, esa_channels=4).with_widths({"stream": 5, "block_0.inner": 3})
  searched = fmp_jax.init_params(arch, seed=7)
  mask = np.ones((3, 3, 5, 3), np.float32)
  mask[:, :, :, 0] = 0.0
  masks = {"block_0": {"conv_a": {"weight": mask}}}
  assert finetuning.starting_params(searched, arch, masks, "search", seed=2) is searched
  fresh = finetuning.starting_params(searched, arch, masks, "scratch", seed=2)
  drawn = fmp_jax.init_params(arch, seed=2)
  kernel = np.asarray(fresh["block_0"]["conv_a"]["kernel"])
  np.testing.assert_array_equal(kernel, np.asarray(drawn["block_0"]["conv_a"]["kernel"]) * mask)
  assert not kernel[..., 0].any() and kernel[..., 1:].all()
  np.testing.assert_array_equal(fresh["head"]["kernel"], drawn["head"]["kernel"])
  with pytest.raises(ValueError, match="finetune.init='pretrained' is unknown"):
    finetuning.starting_params(searched, arch, masks, "pretrained", seed=2)

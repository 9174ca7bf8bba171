"""The notebook API's input checks (data, images, params) and prune() on untried configurations."""

import itertools
import warnings

import jax
import numpy as np
import pytest

import fmp_jax
from fmp_jax import Arch, Budget, DataError
from fmp_jax.data import PatchSampler
from fmp_jax.pruning import api, complexity, search, state as state_lib
from conftest import photo_batches

ARCH = Arch(model="esrb", blocks=2, channels=8, esa_channels=8, scale=2)
# Fast search recipe: latents fall ~latent_lr per step from 1, so 0.06 reaches zero
# in ~17 steps, well inside a 60-step schedule.
SETTINGS = dict(lr=1e-3, hyper_embed=4, latent_lr=0.06, pace_steps=60)


@pytest.fixture(scope="module")
def params():
  return fmp_jax.init_params(ARCH, seed=0)


def batch(n=2, h=16, w=16, scale=2, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.random((n, h, w, 3), dtype=np.float32),
          rng.random((n, h * scale, w * scale, 3), dtype=np.float32))


# --- running out of data ------------------------------------------------------------------

def test_prune_with_empty_list_names_counts(params):
  with pytest.raises(DataError, match=r"gave 0 batches, but prune may need up to 7 "
                                      r"\(steps.*data is empty"):
    fmp_jax.prune(params, 0.5, arch=ARCH, data=[], steps=7, config=SETTINGS)


def test_prune_with_short_generator_says_it_cannot_be_reused(params):
  gen = (batch() for _ in range(0))
  with pytest.raises(DataError) as e:
    fmp_jax.prune(params, 0.5, arch=ARCH, data=gen, steps=9, config=SETTINGS)
  msg = str(e.value)
  for needle in ("gave 0 batches", "may need up to 9", "cannot be reused",
                 "a list or another iterable that can be iterated again", "at least 9 batches"):
    assert needle in msg, msg


def test_finetune_with_empty_list_names_counts(params):
  with pytest.raises(DataError, match=r"finetune: data gave 0 batches, but finetune needs 5 "
                                      r"\(steps\)"):
    fmp_jax.finetune(params, ARCH, None, [], steps=5)


def test_finetune_generator_running_out_counts_batches_given(params):
  gen = (batch(seed=i) for i in range(2))
  with pytest.raises(DataError, match=r"gave 2 batches, but finetune needs 4 \(steps\).*"
                                      r"cannot be reused"):
    fmp_jax.finetune(params, ARCH, None, gen, steps=4)


def test_finetune_restarts_a_list_and_matches_the_repeated_batches(params):
  a, b = batch(seed=1), batch(seed=2)
  from_list = fmp_jax.finetune(params, ARCH, None, [a, b], steps=3, lr=1e-3)
  from_gen = fmp_jax.finetune(params, ARCH, None, iter([a, b, a]), steps=3, lr=1e-3)
  jax.tree.map(np.testing.assert_array_equal, from_list, from_gen)


def test_one_batch_instead_of_a_list_of_batches(params):
  with pytest.raises(DataError, match=r"looks like one \(lr, hr\) batch.*data=\[\(lr, hr\)\]"):
    fmp_jax.finetune(params, ARCH, None, batch(), steps=2)


# --- batch shapes, layout and values --------------------------------------------------------

def test_hr_not_scale_times_lr_names_expected_shape(params):
  lr, _ = batch()
  hr = np.zeros((2, 40, 40, 3), np.float32)
  with pytest.raises(DataError, match=r"hr has shape \(2, 40, 40, 3\), but lr \(2, 16, 16, 3\) at "
                                      r"x2 needs hr \(2, 32, 32, 3\)"):
    fmp_jax.prune(params, 0.5, arch=ARCH, data=[(lr, hr)], steps=5, config=SETTINGS)


def test_batch_sizes_must_agree(params):
  lr, hr = batch()
  with pytest.raises(DataError, match=r"needs hr \(2, 32, 32, 3\).*the same N"):
    fmp_jax.finetune(params, ARCH, None, [(lr, hr[:1])], steps=1)


def test_nchw_data_is_refused_with_the_transpose(params):
  lr, hr = batch()
  nchw = [(lr.transpose(0, 3, 1, 2), hr.transpose(0, 3, 1, 2))]
  with pytest.raises(DataError, match=r"lr has shape \(2, 3, 16, 16\), channels first.*NHWC.*"
                                      r"x\.transpose\(0, 2, 3, 1\)"):
    fmp_jax.prune(params, 0.5, arch=ARCH, data=nchw, steps=5, config=SETTINGS)


def test_unbatched_pair_in_data_asks_for_batch_axis(params):
  lr, hr = batch()
  with pytest.raises(DataError, match=r"lr has shape \(16, 16, 3\); batches are NHWC.*lr\[None\]"):
    fmp_jax.finetune(params, ARCH, None, [(lr[0], hr[0])], steps=1)


def test_float_data_on_the_0_255_scale_is_refused(params):
  lr, hr = batch()
  with pytest.raises(DataError, match=r"lr values span \[.*, 25\d\.\d+\], but the model expects "
                                      r"\[0, 1\] \(arch.rgb_range\).*divide it by 255"):
    fmp_jax.prune(params, 0.5, arch=ARCH, data=[(lr * 255, hr * 255)], steps=5, config=SETTINGS)


def test_integer_data_other_than_uint8_is_refused(params):
  lr, hr = batch()
  with pytest.raises(DataError, match=r"lr has dtype int64; pass float32 .* or uint8"):
    fmp_jax.finetune(params, ARCH, None, [((lr * 255).astype(np.int64), hr)], steps=1)


def test_uint8_data_trains_like_float_divided_by_255(params):
  lr, hr = batch(seed=3)
  lr8, hr8 = (np.round(lr * 255).astype(np.uint8), np.round(hr * 255).astype(np.uint8))
  as_uint8 = fmp_jax.finetune(params, ARCH, None, [(lr8, hr8)], steps=1, lr=1e-3)
  as_float = fmp_jax.finetune(params, ARCH, None, [(lr8 / np.float32(255), hr8 / np.float32(255))],
                              steps=1, lr=1e-3)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               as_uint8, as_float)
  assert not np.allclose(as_uint8["head"]["kernel"], params["head"]["kernel"])


# --- params -----------------------------------------------------------------------------

def test_finetune_with_params_of_another_arch(params):
  pruned = ARCH.with_widths({"stream": 6})
  with pytest.raises(fmp_jax.ParamsMismatchError, match=r"do not match ESRB-2-8 x2: .* has shape "
                                                         r"\(.*8.*\), the arch needs \(.*6.*\)"):
    fmp_jax.finetune(params, pruned, None, [batch()], steps=1)


def test_apply_with_params_of_another_arch(params):
  with pytest.raises(fmp_jax.ParamsMismatchError, match=r"do not match ESRB-2-16 x2"):
    fmp_jax.apply(params, Arch(blocks=2, channels=16, esa_channels=8, scale=2), batch()[0])


def test_non_finite_params_are_named_before_pruning(params):
  broken = jax.tree.map(np.array, params)
  broken["block_1"]["conv_a"]["kernel"][0, 0, 0, 0] = np.nan
  broken["head"]["bias"][2] = np.inf
  with pytest.raises(ValueError, match=r"prune: the given params hold NaN/Inf before any step: "
                                       r"block_1/conv_a/kernel \(1 of 576 values\), head/bias"):
    fmp_jax.prune(broken, 0.5, arch=ARCH, data=[batch()], steps=5, config=SETTINGS)


def test_non_finite_params_are_named_before_finetuning(params):
  broken = jax.tree.map(np.array, params)
  broken["body_end"]["kernel"][1, 1, 0, 0] = np.inf
  with pytest.raises(ValueError, match=r"finetune: .*NaN/Inf.*body_end/kernel"):
    fmp_jax.finetune(broken, ARCH, None, [batch()], steps=1)


# --- apply's input formats ----------------------------------------------------------------

def test_apply_takes_one_hwc_image(params):
  lr = batch(n=1, h=17, w=19)[0]
  one = fmp_jax.apply(params, ARCH, lr[0])
  assert one.shape == (34, 38, 3)
  np.testing.assert_allclose(one, fmp_jax.apply(params, ARCH, lr)[0], atol=1e-6)


def test_apply_converts_uint8(params):
  lr8 = np.round(batch(n=1)[0] * 255).astype(np.uint8)
  out = fmp_jax.apply(params, ARCH, lr8)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, fmp_jax.apply(params, ARCH, lr8 / np.float32(255)), atol=1e-6)


@pytest.mark.parametrize("shape, needle", [
    ((3, 16, 16), r"channels first \(3, H, W\).*x\.transpose\(1, 2, 0\)"),
    ((1, 3, 16, 16), r"channels first \(N, 3, H, W\).*x\.transpose\(0, 2, 3, 1\)"),
    ((16, 16, 1), r"last axis must hold the 3 RGB channels"),
    ((16, 16), r"shape \(16, 16\); expected a batch \(N, H, W, 3\) or one image \(H, W, 3\)"),
])
def test_apply_refuses_other_layouts(params, shape, needle):
  with pytest.raises(DataError, match=needle):
    fmp_jax.apply(params, ARCH, np.zeros(shape, np.float32))


def test_apply_refuses_float_images_on_the_0_255_scale(params):
  ramp = np.linspace(0, 200, 16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3)
  with pytest.raises(DataError, match=r"values span \[0, 200\].*expects \[0, 1\]"):
    fmp_jax.apply(params, ARCH, ramp)


# --- the sampler's small-image message -------------------------------------------------------

def test_small_image_message_names_both_skip_switches():
  big = np.zeros((64, 64, 3), np.uint8)
  small = np.zeros((20, 20, 3), np.uint8)
  with pytest.raises(DataError) as e:
    PatchSampler([big, small], 2, 16, 2, names=["big.png", "tiny.png"])
  msg = str(e.value)
  for needle in ("tiny.png", "--config.data.skip_small=True", "skip_small=True for PatchSampler",
                 "larger images", "smaller patch_size"):
    assert needle in msg, msg
  with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    assert PatchSampler([big, small], 2, 16, 2, skip_small=True).names == ["image 0"]


# --- prune() on configurations beyond the default -------------------------------------------

def prune_and_capture(monkeypatch, params, arch, budget, config, data):
  """prune(), plus the search outcome it finalised (to build the masked full-width model)."""
  seen = {}
  finalize = api.finalize

  def spy(arch_, outcome, budget_, settings, **kwargs):
    seen.update(outcome=outcome, settings=settings)
    return finalize(arch_, outcome, budget_, settings, **kwargs)

  monkeypatch.setattr(api, "finalize", spy)
  result = fmp_jax.prune(params, budget, arch=arch, data=data, steps=400, config=config)
  return result, seen["outcome"], seen["settings"]


def kept_params_by_hand(result) -> int:
  """Conv weights left in the sliced model (weight masks applied) plus biases."""
  flat_masks = complexity.flatten_weight_masks(result.masks)
  total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(result.params)[0]:
    keys = [k.key for k in path]
    if keys[-1] == "bias":
      total += np.size(leaf)
    else:
      mask = flat_masks.get("/".join(keys[:-1]))
      total += np.size(leaf) if mask is None else int(np.count_nonzero(mask))
  return total


def check_budget_and_equivalence(result, outcome, settings, arch, dense_params, keep):
  dense = sum(np.size(x) for x in jax.tree.leaves(dense_params))
  kept = kept_params_by_hand(result)
  assert keep - 0.05 <= kept / dense <= keep, (kept, dense)
  assert result.report["params"] == kept and result.report["dense_params"] == dense
  assert complexity.count(result.arch, weight_masks=result.masks).params == kept
  full, masks = state_lib.masked_model(arch, outcome.state, settings)
  x = batch(n=2, h=17, w=19, seed=7)[0]
  sliced_out = fmp_jax.apply(result.params, result.arch, x)
  assert sliced_out.shape == (2, 17 * arch.scale, 19 * arch.scale, 3)
  np.testing.assert_allclose(sliced_out, fmp_jax.apply(full, arch, x, masks), atol=1e-5)


def cached_batches(scale, seed, n=6):
  # A short list: prune() restarts it, so the search also exercises list reuse.
  return list(itertools.islice(photo_batches(scale=scale, patch=16, batch=2, seed=seed), n))


@pytest.mark.slow
def test_prune_with_pair_indicators(monkeypatch):
  arch = Arch(model="edsr", blocks=2, channels=8, scale=2)
  dense_params = fmp_jax.init_params(arch, seed=1)
  result, outcome, settings = prune_and_capture(
      monkeypatch, dense_params, arch, Budget(0.5, metric="params"),
      dict(SETTINGS, indicator="pair"), cached_batches(2, seed=1))
  assert settings.indicator == "pair" and result.report["converged"]
  check_budget_and_equivalence(result, outcome, settings, arch, dense_params, 0.5)
  # One indicator per (input, output) channel pair: each kernel's mask is whole
  # k x k blocks, and some pairs were removed.
  pair_latents = jax.tree.leaves(outcome.state.latents["weights"])
  assert all(u.ndim == 2 for u in pair_latents)
  removed_pairs = 0
  for name, m in complexity.flatten_weight_masks(result.masks).items():
    m = np.asarray(m)
    assert np.all(m == m[:1, :1]), name
    removed_pairs += int(np.sum(m[0, 0] == 0))
  assert removed_pairs > 0 and result.report["weight_pruned_ratio"] > 0


@pytest.mark.slow
def test_prune_with_prunable_esa(monkeypatch):
  arch = Arch(model="esrb", blocks=2, channels=8, esa_channels=8, scale=2, prune_esa=True)
  dense_params = fmp_jax.init_params(arch, seed=2)
  result, outcome, settings = prune_and_capture(
      monkeypatch, dense_params, arch, Budget(0.5, metric="params"), SETTINGS,
      cached_batches(2, seed=2))
  check_budget_and_equivalence(result, outcome, settings, arch, dense_params, 0.5)
  esa = {i: result.arch.width(f"block_{i}.esa") for i in range(arch.blocks)}
  assert min(esa.values()) < arch.esa_channels, esa
  for i, f in esa.items():
    node = result.params[f"block_{i}"]["esa"]
    assert node["reduce"]["kernel"].shape[-1] == f
    assert node["mid"]["kernel"].shape[2:] == (f, f)
    assert node["expand"]["kernel"].shape[2] == f


@pytest.mark.slow
def test_prune_edsr(monkeypatch):
  arch = Arch(model="edsr", blocks=2, channels=8, scale=2)
  dense_params = fmp_jax.init_params(arch, seed=3)
  result, outcome, settings = prune_and_capture(
      monkeypatch, dense_params, arch, Budget(0.5, metric="params"), SETTINGS,
      cached_batches(2, seed=3))
  assert result.arch.model == "edsr" and settings.indicator == "weight"
  check_budget_and_equivalence(result, outcome, settings, arch, dense_params, 0.5)
  widths = {g: result.arch.width(g) for g in arch.prunable_groups()}
  assert sum(widths.values()) < sum(arch.width(g) for g in arch.prunable_groups()), widths
  s = widths["stream"]
  assert result.params["head"]["kernel"].shape[-1] == s
  assert result.params["upsample_0"]["kernel"].shape[2] == s
  assert fmp_jax.apply(result.params, result.arch, batch(n=1, h=17, w=19)[0][0]).shape == (34, 38, 3)

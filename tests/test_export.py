"""msgpack export: sparse kernels (bitmask + kept values) round-trip bit-exactly and shrink the file."""

import os

import jax
import numpy as np
import pytest
from flax import serialization

import fmp_jax
from fmp_jax import export
from fmp_jax.arch import Arch

ARCH = Arch(blocks=2, channels=16, esa_channels=8, scale=2,
            widths={"stream": 11, "block_0.inner": 5, "block_1.inner": 13})


def masked_model(keep=0.3, seed=0):
  """Params with random 0/1 weight masks baked in (as every pruned export has them)."""
  params = fmp_jax.init_params(ARCH, seed=seed)
  rng = np.random.default_rng(seed)

  def walk(p):
    if "kernel" in p:
      mask = (rng.random(np.shape(p["kernel"])) < keep).astype(np.float32)
      return {"kernel": np.asarray(p["kernel"]) * mask, "bias": np.asarray(p["bias"])}, \
          {"weight": mask}
    pairs = {k: walk(v) for k, v in p.items()}
    return {k: a for k, (a, _) in pairs.items()}, {k: b for k, (_, b) in pairs.items()}
  return walk(params)


def assert_same_tree(a, b):
  la, lb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
  assert [k for k, _ in la] == [k for k, _ in lb]
  for (key, x), (_, y) in zip(la, lb):
    assert np.asarray(x).dtype == np.asarray(y).dtype, key
    np.testing.assert_array_equal(x, y, err_msg=str(key))


def test_sparse_export_round_trips_bit_exactly_and_is_smaller(tmp_path):
  params, masks = masked_model(keep=0.3)
  sparse = export.save(str(tmp_path / "s.msgpack"), params, ARCH, masks, meta={"a": 1})
  plain = export.save(str(tmp_path / "p.msgpack"), params, ARCH, masks, sparse=False)
  back = fmp_jax.load(sparse)
  assert_same_tree(back.params, params)
  assert_same_tree(back.masks, masks)
  assert back.arch == ARCH and back.meta == {"a": 1}
  assert_same_tree(fmp_jax.load(plain).params, params)

  # Hand count of the payload: float32 masks (4 B/weight) + all kernel values
  # (4 B/weight) become 1 bit/weight + 4 B per kept weight.
  n_weights = sum(np.size(m["weight"]) for m in jax.tree.leaves(
      masks, is_leaf=lambda n: isinstance(n, dict) and "weight" in n))
  n_kept = int(sum(np.sum(m) for m in jax.tree.leaves(masks)))
  saved = os.path.getsize(plain) - os.path.getsize(sparse)
  expected = 8 * n_weights - (n_weights / 8 + 4 * n_kept)
  assert abs(saved - expected) < 0.05 * expected
  raw = serialization.msgpack_restore(open(sparse, "rb").read())
  assert raw["version"] == 2 and raw["masks"] == {}
  assert serialization.msgpack_restore(open(plain, "rb").read())["version"] == 1


def test_kernels_that_bitmasks_cannot_hold_stay_dense(tmp_path):
  params, masks = masked_model(keep=0.5)
  # Non-zero weights under a zero mask entry (masks not baked in) and a soft mask.
  params["head"]["kernel"] = np.asarray(fmp_jax.init_params(ARCH, seed=5)["head"]["kernel"])
  masks["body_end"]["weight"] = np.where(masks["body_end"]["weight"] > 0, 0.5, 0.0).astype(np.float32)
  path = export.save(str(tmp_path / "m.msgpack"), params, ARCH, masks)
  raw = serialization.msgpack_restore(open(path, "rb").read())
  assert "head" not in raw["sparse_kernels"] and "body_end" not in raw["sparse_kernels"]
  assert "block_0/conv_a" in raw["sparse_kernels"]
  back = fmp_jax.load(path)
  assert_same_tree(back.params, params)
  assert_same_tree(back.masks, masks)


def test_export_without_masks_is_version_1(tmp_path):
  params = fmp_jax.init_params(ARCH, seed=0)
  path = export.save(str(tmp_path / "d.msgpack"), params, ARCH)
  raw = serialization.msgpack_restore(open(path, "rb").read())
  assert raw["version"] == 1 and "sparse_kernels" not in raw
  assert_same_tree(fmp_jax.load(path).params, jax.tree.map(np.asarray, params))


def test_corrupt_or_newer_files_raise_export_error(tmp_path):
  params, masks = masked_model()
  path = export.save(str(tmp_path / "m.msgpack"), params, ARCH, masks)
  raw = serialization.msgpack_restore(open(path, "rb").read())
  entry = raw["sparse_kernels"]["block_1/conv_b"]
  entry["values"] = entry["values"][:-1]  # one value short of the mask's count
  bad = tmp_path / "bad.msgpack"
  bad.write_bytes(serialization.msgpack_serialize(raw))
  with pytest.raises(export.ExportError, match="bad.msgpack.*block_1/conv_b"):
    fmp_jax.load(str(bad))
  raw["version"] = export.VERSION + 1
  bad.write_bytes(serialization.msgpack_serialize(raw))
  with pytest.raises(export.ExportError, match="newer"):
    fmp_jax.load(str(bad))
  bad.write_bytes(open(path, "rb").read()[:1000])
  with pytest.raises(export.ExportError, match="bad.msgpack"):
    fmp_jax.load(str(bad))


def test_sparse_export_runs_the_same_model(tmp_path):
  params, masks = masked_model(keep=0.4)
  path = export.save(str(tmp_path / "m.msgpack"), params, ARCH, masks)
  ex = fmp_jax.load(path)
  x = np.random.default_rng(1).random((1, 17, 19, 3), np.float32)
  np.testing.assert_array_equal(np.asarray(fmp_jax.apply(ex.params, ex.arch, x)),
                                np.asarray(fmp_jax.apply(params, ARCH, x)))

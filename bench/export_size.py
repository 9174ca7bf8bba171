"""Export size: dense vs pruned vs compressed-pruned, side by side.

  python bench/export_size.py --export pruned.msgpack [--write-compressed out.msgpack]

Rows (all lossless except where marked):
* dense: the dense backbone of the same architecture (random weights, same
  byte count as trained ones), as `fmp_jax.save_export` writes it;
* pruned: the given export as written (params + float32 weight masks + meta);
* pruned, zlib: that file deflated (zlib level 9);
* pruned, sparse: every kernel stored as a packed bitmask of its weight mask
  (1 bit per weight) + the float32 values where the mask is 1; the float32
  masks are not stored (the bitmask *is* the mask). Decoding restores params
  and masks bit-exactly (checked);
* pruned, sparse+zlib: the sparse file deflated;
* pruned, sparse fp16 (lossy): values as float16, max abs weight error shown.

Unstructured weight sparsity saves bytes only through the bitmask encoding
(a dense conv still multiplies the zeros: see bench/inference.py). The
float32 masks in today's export double the pruned file; the bitmask makes
them ~3 % of the kernels' size.
"""

import argparse
import json
import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from flax import serialization  # noqa: E402

SPARSE_FORMAT = "fmp_jax.export.sparse"


def _flat(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _flat(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def _set(tree, path, value):
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value


def sparse_encode(params, masks, value_dtype=np.float32) -> dict:
  """Kernels with a weight mask -> {"bits", "values", "shape"}; other leaves as arrays.

  params: nested {layer: {"kernel": HWIO, "bias": (C,)}}; masks: the ``masks``
  collection ({layer: {"weight": HWIO 0/1}}). Masked-out kernel entries must
  be zero (they are in every export: masks are baked in).
  """
  mask_of = {path[:-1]: np.asarray(m) != 0 for path, m in _flat(dict(masks or {}))}
  out = {}
  for path, leaf in _flat(dict(params)):
    leaf = np.asarray(leaf)
    mask = mask_of.get(path[:-1]) if path[-1] == "kernel" else None
    if mask is None:
      _set(out, path, leaf.astype(value_dtype) if leaf.dtype.kind == "f" else leaf)
      continue
    if np.any(leaf[~mask] != 0):
      raise ValueError(f"{'/'.join(path)}: masked-out weights are not zero; bake the masks first.")
    _set(out, path, {"bits": np.packbits(mask.ravel()), "values": leaf[mask].astype(value_dtype),
                     "shape": np.asarray(leaf.shape, np.int64)})
  return out


def sparse_decode(tree) -> tuple[dict, dict]:
  """Inverse of `sparse_encode`: (params as float32, masks as float32 0/1)."""
  params, masks = {}, {}

  def walk(node, path):
    if isinstance(node, dict) and "bits" in node and "values" in node:
      shape = tuple(int(v) for v in node["shape"])
      mask = np.unpackbits(node["bits"], count=int(np.prod(shape))).astype(bool).reshape(shape)
      kernel = np.zeros(shape, np.float32)
      kernel[mask] = node["values"].astype(np.float32)
      _set(params, path, kernel)
      _set(masks, path[:-1] + ("weight",), mask.astype(np.float32))
    elif isinstance(node, dict):
      for k, v in node.items():
        walk(v, path + (k,))
    else:
      _set(params, path, np.asarray(node, np.float32))
  walk(dict(tree), ())
  return params, masks


def sparse_bytes(exported, value_dtype=np.float32) -> bytes:
  """A sparse export file's bytes (same header fields as fmp_jax.export)."""
  payload = {"format": SPARSE_FORMAT, "version": 1,
             "arch": json.dumps(exported.arch.to_dict(), sort_keys=True),
             "params": sparse_encode(exported.params, exported.masks, value_dtype),
             "meta": json.dumps(dict(exported.meta or {}), sort_keys=True, default=str)}
  return serialization.msgpack_serialize(payload)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--export", required=True, help="a pruned export (.msgpack)")
  ap.add_argument("--write-compressed", default=None,
                  help="also write the sparse (lossless) file here")
  args = ap.parse_args()

  import fmp_jax
  from fmp_jax import export
  from fmp_jax.pruning import complexity

  with open(args.export, "rb") as f:
    pruned_raw = f.read()
  ex = fmp_jax.load(args.export)
  arch = ex.arch
  dense_arch = arch.dense()
  dense_params = fmp_jax.init_params(dense_arch, seed=0)
  tmp = args.export + ".dense.tmp"
  try:
    export.save(tmp, dense_params, dense_arch)
    with open(tmp, "rb") as f:
      dense_raw = f.read()
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)

  sparse = sparse_bytes(ex)
  restored = serialization.msgpack_restore(sparse)
  params_back, masks_back = sparse_decode(restored["params"])
  same = all(np.array_equal(np.asarray(a), b) for (_, a), (_, b)
             in zip(sorted(_flat(dict(ex.params))), sorted(_flat(params_back))))
  same_masks = all(np.array_equal(np.asarray(a) != 0, b != 0) for (_, a), (_, b)
                   in zip(sorted(_flat(dict(ex.masks))), sorted(_flat(masks_back))))
  if not (same and same_masks):
    raise SystemExit("export_size.py: sparse round trip is not exact (bug).")
  fp16 = sparse_bytes(ex, np.float16)
  p16, _ = sparse_decode(serialization.msgpack_restore(fp16)["params"])
  fp16_err = max(float(np.abs(np.asarray(a) - b).max()) for (_, a), (_, b)
                 in zip(sorted(_flat(dict(ex.params))), sorted(_flat(p16))))

  n_dense = complexity.param_count(dense_params)
  n_pruned = complexity.count(arch, weight_masks=ex.masks).params
  n_stored = complexity.param_count(ex.params)
  rows = [
      ("dense (fmp_jax.save_export)", len(dense_raw), f"{n_dense:,} params"),
      ("dense, zlib -9", len(zlib.compress(dense_raw, 9)), ""),
      ("pruned (as exported)", len(pruned_raw),
       f"{n_stored:,} stored params + float32 masks; {n_pruned:,} counted"),
      ("pruned, zlib -9", len(zlib.compress(pruned_raw, 9)), ""),
      ("pruned, sparse (bitmask + values)", len(sparse), "lossless, round trip checked"),
      ("pruned, sparse + zlib -9", len(zlib.compress(sparse, 9)), "lossless"),
      ("pruned, sparse fp16 values", len(fp16), f"LOSSY: max |w err| {fp16_err:.2e}"),
  ]
  print(f"{args.export}: {arch.model.upper()}-{arch.blocks} x{arch.scale}, widths "
        f"{dict(arch.widths or {})}")
  print(f"{'file':<36} {'bytes':>12} {'MB':>8} {'vs dense':>9}  note")
  for name, size, note in rows:
    print(f"{name:<36} {size:>12,} {size / 1e6:>8.3f} {size / len(dense_raw):>9.4f}  {note}")
  if args.write_compressed:
    with open(args.write_compressed, "wb") as f:
      f.write(sparse)
    print(f"wrote {args.write_compressed}")


if __name__ == "__main__":
  main()

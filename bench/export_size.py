"""Export size: dense vs pruned, without and with sparse kernels, side by side.

  python bench/export_size.py --export pruned.msgpack

Rows (lossless except where marked):
* dense: the dense backbone of the same architecture (random weights, same
  byte count as trained ones), as `fmp_jax.save_export` writes it;
* pruned, arrays as they are: `save_export(..., sparse=False)` (params +
  float32 weight masks + meta);
* pruned, sparse kernels: `save_export(...)`, the default (each masked kernel
  as a 1-bit-per-weight mask + its kept values; `fmp_jax.export`), loaded
  back and checked bit-exact against the input;
* each of those deflated with zlib -9 (what a generic compressor adds);
* pruned, sparse with float16 values (LOSSY, a measurement only: not an
  export option), with the largest weight error.

Unstructured weight sparsity saves bytes only through the bitmask encoding
(a dense conv still multiplies the zeros: see bench/inference.py).
"""

import argparse
import os
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import serialization  # noqa: E402


def file_bytes(save_fn) -> bytes:
  """Bytes of the file `save_fn(path)` writes, via a temporary directory."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "m.msgpack")
    save_fn(path)
    with open(path, "rb") as f:
      return f.read()


def leaves(tree):
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def same_tree(a, b) -> bool:
  la, lb = leaves(a), leaves(b)
  return [k for k, _ in la] == [k for k, _ in lb] and all(
      np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
      for (_, x), (_, y) in zip(la, lb))


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--export", required=True, help="a pruned export (.msgpack)")
  args = ap.parse_args()

  import fmp_jax
  from fmp_jax import export
  from fmp_jax.pruning import complexity

  ex = fmp_jax.load(args.export)
  arch = ex.arch
  dense_arch = arch.dense()
  dense_params = fmp_jax.init_params(dense_arch, seed=0)
  dense_raw = file_bytes(lambda p: export.save(p, dense_params, dense_arch))
  plain = file_bytes(lambda p: export.save(p, ex.params, arch, ex.masks, ex.meta, sparse=False))
  with tempfile.TemporaryDirectory() as tmp:
    path = export.save(os.path.join(tmp, "m.msgpack"), ex.params, arch, ex.masks, ex.meta)
    with open(path, "rb") as f:
      sparse = f.read()
    back = export.load(path)
  if not (same_tree(ex.params, back.params) and same_tree(ex.masks, back.masks)):
    raise SystemExit("export_size.py: sparse round trip is not exact (bug).")
  payload = serialization.msgpack_restore(sparse)
  kernels = payload.get("sparse_kernels", {})
  fp16_err = 0.0
  for entry in kernels.values():
    values = np.asarray(entry["values"])
    entry["values"] = values.astype(np.float16)
    fp16_err = max(fp16_err, float(np.max(np.abs(values - entry["values"].astype(values.dtype)),
                                          initial=0.0)))
  fp16 = serialization.msgpack_serialize(payload)

  n_dense = complexity.param_count(dense_params)
  n_pruned = complexity.count(arch, weight_masks=ex.masks).params
  n_stored = complexity.param_count(ex.params)
  rows = [
      ("dense", len(dense_raw), f"{n_dense:,} params"),
      ("dense, zlib -9", len(zlib.compress(dense_raw, 9)), ""),
      ("pruned, arrays as they are", len(plain),
       f"{n_stored:,} stored params + float32 masks; {n_pruned:,} counted"),
      ("pruned, arrays as they are, zlib -9", len(zlib.compress(plain, 9)), ""),
      ("pruned, sparse kernels (default)", len(sparse),
       f"{len(kernels)} kernels as bitmask + values; round trip checked"),
      ("pruned, sparse kernels, zlib -9", len(zlib.compress(sparse, 9)), ""),
      ("pruned, sparse, fp16 values", len(fp16), f"LOSSY: max |w err| {fp16_err:.2e}"),
  ]
  print(f"{args.export}: {arch.model.upper()}-{arch.blocks} x{arch.scale}, widths "
        f"{dict(arch.widths or {})}")
  print(f"{'file':<38} {'bytes':>12} {'MB':>8} {'vs dense':>9}  note")
  for name, size, note in rows:
    print(f"{name:<38} {size:>12,} {size / 1e6:>8.3f} {size / len(dense_raw):>9.4f}  {note}")


if __name__ == "__main__":
  main()

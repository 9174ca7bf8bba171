"""msgpack export of a (pruned) model: params, architecture, weight masks, metadata.

The file is a flax-serialised dict::

    {"format": "fmp_jax.export", "version": 1 or 2,
     "arch": Arch.to_dict(), "params": {...}, "masks": {...} or {},
     "sparse_kernels": {"<layer path>": {"bits", "values", "shape"}},  # version 2
     "meta": {...}}

Weight masks are kept so a fine-tuning user can hold the zeros fixed; the
exported kernels already have them baked in, so inference needs only
`fmp_jax.apply(params, arch, lr)`.

Sparse kernels (``save(..., sparse=True)``, the default): a kernel whose
weight mask is 0/1 and whose masked-out entries are all zero is stored as its
mask packed to 1 bit per weight plus the kept values in row-major order; its
float32 mask is not stored (the bits are the mask). That is lossless:
`load` returns the same params and masks, bit for bit. It removes the
float32 masks, which otherwise double a pruned file, and the zeros of
unstructured weight pruning (an FMP-pruned ESRB-6-256 x2: 5.70 MB -> 2.88 MB,
`bench/export_size.py`). Files with sparse kernels are version 2; files
without any are written as version 1, which older readers understand.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Optional

import jax
import numpy as np
from flax import serialization

from fmp_jax.arch import Arch
from fmp_jax.tree_paths import get_at, pop_at, set_at

FORMAT = "fmp_jax.export"
VERSION = 2          # newest version this code reads
DENSE_VERSION = 1    # written when no kernel is stored sparse


class ExportError(ValueError):
  """A file that is not a readable fmp_jax export."""


@dataclasses.dataclass
class Exported:
  params: Any
  arch: Arch
  masks: dict
  meta: dict


def _weight_mask_paths(masks: Mapping, prefix=()) -> list[tuple[str, ...]]:
  """Layer paths that carry a ``weight`` mask in the masks collection."""
  out = []
  for key, value in masks.items():
    if key == "weight" and not isinstance(value, Mapping):
      out.append(prefix)
    elif isinstance(value, Mapping):
      out.extend(_weight_mask_paths(value, prefix + (key,)))
  return out


def encode_sparse(params: dict, masks: dict) -> dict:
  """Moves every losslessly encodable masked kernel out of `params`/`masks` (in place).

  Returns {"<layer path>": {"bits": packed uint8 mask, "values": kept entries,
  "shape": kernel shape}}. A kernel stays dense when its mask is not 0/1, does
  not match its shape, or leaves non-zero entries where the mask is 0.
  """
  sparse = {}
  for layer in _weight_mask_paths(masks):
    mask = get_at(masks, layer + ("weight",))
    try:
      kernel = get_at(params, layer + ("kernel",))
    except (KeyError, TypeError):
      continue
    if np.shape(kernel) != np.shape(mask):
      continue
    keep = mask != 0
    if not np.all((mask == 0) | (mask == 1)) or np.any(kernel[~keep] != 0):
      continue
    sparse["/".join(layer)] = {"bits": np.packbits(keep.ravel()), "values": kernel[keep],
                               "shape": np.asarray(kernel.shape, np.int64),
                               "mask_dtype": str(mask.dtype)}
    pop_at(params, layer + ("kernel",))
    pop_at(masks, layer + ("weight",))
  return sparse


def decode_sparse(params: dict, masks: dict, sparse: Mapping) -> None:
  """Inverse of `encode_sparse`: puts kernels and masks back into `params`/`masks` (in place)."""
  for name, entry in sparse.items():
    layer = tuple(name.split("/"))
    shape = tuple(int(v) for v in np.asarray(entry["shape"]))
    values = np.asarray(entry["values"])
    keep = np.unpackbits(np.asarray(entry["bits"], np.uint8), count=int(np.prod(shape)))
    keep = keep.astype(bool).reshape(shape)
    if int(keep.sum()) != values.size:
      raise ValueError(f"sparse kernel {name}: {values.size} values for {int(keep.sum())} "
                       f"kept weights.")
    kernel = np.zeros(shape, values.dtype)
    kernel[keep] = values
    set_at(params, layer + ("kernel",), kernel)
    set_at(masks, layer + ("weight",), keep.astype(str(entry.get("mask_dtype", "float32"))))


def save(path: str, params: Mapping, arch: Arch, masks: Optional[Mapping] = None,
         meta: Optional[Mapping] = None, sparse: bool = True) -> str:
  """Writes the model to `path` atomically (temp file + rename). Returns `path`.

  sparse: store masked kernels as bitmask + kept values where that is
  lossless (module docstring); False writes every array as it is.
  """
  to_np = lambda tree: jax.tree.map(lambda x: np.asarray(jax.device_get(x)), dict(tree))
  params_np = to_np(params)
  masks_np = to_np(masks) if masks else {}
  sparse_kernels = encode_sparse(params_np, masks_np) if sparse and masks_np else {}
  payload = {
      "format": FORMAT, "version": VERSION if sparse_kernels else DENSE_VERSION,
      "arch": json.dumps(arch.to_dict(), sort_keys=True),
      "params": params_np,
      "masks": masks_np,
      "meta": json.dumps(dict(meta or {}), sort_keys=True, default=str),
  }
  if sparse_kernels:
    payload["sparse_kernels"] = sparse_kernels
  data = serialization.msgpack_serialize(payload)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)
  return path


def load(path: str) -> Exported:
  """Reads an export written by `save`. Raises ExportError with the path on failure."""
  if not os.path.isfile(path):
    raise ExportError(f"{path}: no such export file.")
  with open(path, "rb") as f:
    data = f.read()
  try:
    payload = serialization.msgpack_restore(data)
  except Exception as e:  # msgpack raises several unrelated types on bad bytes
    raise ExportError(f"{path}: not a readable msgpack export ({type(e).__name__}: {e}).") from e
  if not isinstance(payload, dict) or payload.get("format") != FORMAT:
    raise ExportError(f"{path}: not an fmp_jax export (missing format tag {FORMAT!r}).")
  if int(payload.get("version", -1)) > VERSION:
    raise ExportError(f"{path}: export version {payload['version']} is newer than this "
                      f"fmp_jax understands ({VERSION}); upgrade fmp_jax.")
  arch = Arch.from_dict(json.loads(payload["arch"]))
  params, masks = payload["params"], payload.get("masks") or {}
  try:
    decode_sparse(params, masks, payload.get("sparse_kernels") or {})
  except (ValueError, KeyError, TypeError) as e:
    raise ExportError(f"{path}: corrupt sparse kernel data ({e}).") from e
  return Exported(params=params, arch=arch, masks=masks,
                  meta=json.loads(payload.get("meta") or "{}"))

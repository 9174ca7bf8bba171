"""msgpack export of a (pruned) model: params, architecture, weight masks, metadata.

The file is a flax-serialised dict::

    {"format": "fmp_jax.export", "version": 1,
     "arch": Arch.to_dict(), "params": {...}, "masks": {...} or {},
     "meta": {...}}

Weight masks are kept so a fine-tuning user can hold the zeros fixed; the
exported kernels already have them baked in, so inference needs only
`fmp_jax.apply(params, arch, lr)`.
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

FORMAT = "fmp_jax.export"
VERSION = 1


class ExportError(ValueError):
  """A file that is not a readable fmp_jax export."""


@dataclasses.dataclass
class Exported:
  params: Any
  arch: Arch
  masks: dict
  meta: dict


def save(path: str, params: Mapping, arch: Arch, masks: Optional[Mapping] = None,
         meta: Optional[Mapping] = None) -> str:
  """Writes the model to `path` atomically (temp file + rename). Returns `path`."""
  to_np = lambda tree: jax.tree.map(lambda x: np.asarray(jax.device_get(x)), dict(tree))
  payload = {
      "format": FORMAT, "version": VERSION,
      "arch": json.dumps(arch.to_dict(), sort_keys=True),
      "params": to_np(params),
      "masks": to_np(masks) if masks else {},
      "meta": json.dumps(dict(meta or {}), sort_keys=True, default=str),
  }
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
  return Exported(params=payload["params"], arch=arch, masks=payload.get("masks") or {},
                  meta=json.loads(payload.get("meta") or "{}"))

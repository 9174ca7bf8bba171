"""Builds a latency table of a config's backbone on this device (fmp_jax.pruning.latency).

  python tools/profile_latency.py --config configs/ablation.py --out latency.json
  python tools/profile_latency.py --config configs/x2.py --out x2.json --lr_size 180x320 --max_points 8

It times, with the code `fmp_jax.inference.Upscaler` runs (its fast paths, its padding of
widths to this backend's channel multiple), one ESRB block at every pair of padded stream
and inner widths, and the rest of the forward pass at every padded stream width; a
`Budget(metric="latency", latency_table=...)` (driver: --config.budget.metric=latency
--config.budget.latency_table=PATH) then reads its predictions. The table records the
device, backend, jax/jaxlib versions, input size and dtype; it is refused on another
device kind unless budget.latency_any_device=True.

On a 2-core CPU at LR 360x640: ESRB-3-32 about 2 minutes, ESRB-4-64 about 5 (every
padded width); for ESRB-6-256 use --lr_size 180x320 --max_points 8 (6.5 minutes there;
see bench/RESULTS.md).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from fmp_jax.arch import Arch, ArchError  # noqa: E402
from fmp_jax.cli import config_or_exit, flags_parser, quiet_logs  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_OUT = flags.DEFINE_string("out", None, "Where to write the table (JSON).")
_LR_SIZE = flags.DEFINE_string("lr_size", None, "LR input as HxW (default: 1280x720 HR).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per entry (median).")
_PASSES = flags.DEFINE_integer(
    "passes", 2, "Rounds over every entry; each entry keeps its fastest round's median.")
_MAX_POINTS = flags.DEFINE_integer(
    "max_points", 0, "At most this many padded widths per axis above the narrow ones "
    "(0: every one); predictions interpolate in between.")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                               "Activation dtype (as Upscaler(precision=...)).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --out file.")


def parse_lr_size(text):
  try:
    h, w = (int(v) for v in text.lower().split("x"))
    if h < 15 or w < 15:
      raise ValueError
    return h, w
  except ValueError:
    raise SystemExit(f"profile_latency.py: --lr_size={text!r} must look like 360x640 "
                     f"(each side at least 15).")


def main(argv):
  del argv
  quiet_logs()
  config = config_or_exit(_CONFIG, "profile_latency.py")
  if config is None or not _OUT.value:
    raise SystemExit("profile_latency.py: give --config FILE and --out FILE.")
  out = os.path.abspath(_OUT.value)
  if os.path.exists(out) and not _OVERWRITE.value:
    raise SystemExit(f"profile_latency.py: {out} exists; pass --overwrite to replace it.")
  if not os.path.isdir(os.path.dirname(out)):
    raise SystemExit(f"profile_latency.py: {os.path.dirname(out)} is not a folder.")
  from fmp_jax import profiling
  from fmp_jax.pruning.latency import LatencyTableError
  try:
    arch = Arch.from_config(config.model)
    lr_hw = parse_lr_size(_LR_SIZE.value) if _LR_SIZE.value else None
    table = profiling.build_table(arch, lr_hw, _PRECISION.value, _REPEATS.value,
                                  _MAX_POINTS.value or None, passes=_PASSES.value)
  except (ArchError, LatencyTableError) as e:
    raise SystemExit(f"profile_latency.py: {e}")
  table.save(out)
  print(f"wrote {out}: {table.device['kind']}, LR {table.lr_hw[0]}x{table.lr_hw[1]}, "
        f"{len(table.grid['stream'])} x {len(table.grid['inner'])} block entries"
        + (f" ({len(table.meta['warnings'])} warning(s) above)" if table.meta["warnings"] else ""))


if __name__ == "__main__":
  from fmp_jax.profiling import reexec_with_hugepages
  reexec_with_hugepages()
  app.run(main, flags_parser=flags_parser)

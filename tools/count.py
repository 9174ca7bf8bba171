"""Params, FLOPs (MACs), executed MACs and latency of a config's backbone or an exported model.

  python tools/count.py --config configs/x2.py            # per-layer table
  python tools/count.py --config configs/x2.py --json     # one JSON object
  python tools/count.py --export workdir/export/model.msgpack --json
  python tools/count.py --export model.msgpack --latency_table latency.json   # predicted latency
  python tools/count.py --export model.msgpack --measure  # measured here vs its dense backbone

Executed MACs are every weight of the kept widths x output pixels: what a dense kernel
does (weight zeros are counted in FLOPs as saved, but no kernel skips them).

Counts follow FMP.md section 2 (MACs of conv weights; params = weights + biases)
at the LR size of a 1280x720 HR output unless --lr_size is given. Shapes only:
no weights are materialised, so the full-size configs take about a second.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from fmp_jax.arch import Arch, ArchError  # noqa: E402
from fmp_jax.cli import config_or_exit, flags_parser, quiet_logs  # noqa: E402
from fmp_jax.pruning import complexity  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_EXPORT = flags.DEFINE_string("export", None, "Count an exported .msgpack model instead.")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
_LR_SIZE = flags.DEFINE_string("lr_size", None, "LR input as HxW (default: 1280x720 HR).")
_TABLE = flags.DEFINE_string("latency_table", None,
                             "A latency table (tools/profile_latency.py): predicted latency.")
_MEASURE = flags.DEFINE_bool("measure", False, "Time the model and its dense backbone here "
                             "(Upscaler, one whole image at the counted LR size).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per model with --measure (median).")


def parse_lr_size(text):
  try:
    h, w = (int(v) for v in text.lower().split("x"))
    if h < 1 or w < 1:
      raise ValueError
    return h, w
  except ValueError:
    raise SystemExit(f"count.py: --lr_size={text!r} must look like 360x640.")


def main(argv):
  del argv
  quiet_logs()
  config = config_or_exit(_CONFIG, "count.py")
  if (config is None) == (_EXPORT.value is None):
    raise SystemExit("count.py: give exactly one of --config FILE or --export FILE.")
  weight_masks = None
  try:
    if _EXPORT.value:
      from fmp_jax import export
      exported = export.load(_EXPORT.value)
      arch, weight_masks = exported.arch, exported.masks
    else:
      arch = Arch.from_config(config.model)
  except (ArchError, ValueError) as e:
    raise SystemExit(f"count.py: {e}")
  lr_hw = parse_lr_size(_LR_SIZE.value) if _LR_SIZE.value else complexity.lr_size_for(arch.scale)
  counts = complexity.count(arch, weight_masks=weight_masks, lr_hw=lr_hw)
  executed = complexity.count(arch, lr_hw=lr_hw)
  dense = complexity.count(arch.dense(), lr_hw=lr_hw)
  result = {
      "model": arch.model, "blocks": arch.blocks, "channels": arch.channels,
      "scale": arch.scale, "lr_size": list(lr_hw),
      "params": counts.params, "flops": counts.flops,
      "dense_params": dense.params, "dense_flops": dense.flops,
      "params_ratio": counts.params / dense.params, "flops_ratio": counts.flops / dense.flops,
      "executed_macs": executed.flops, "executed_macs_ratio": executed.flops / dense.flops,
      "widths": dict(arch.widths) if arch.widths else None,
  }
  if _TABLE.value:
    from fmp_jax.pruning.latency import LatencyTable, LatencyTableError
    try:
      table = LatencyTable.load(_TABLE.value, allow_other_device=True)
      table.check_arch(arch)
    except LatencyTableError as e:
      raise SystemExit(f"count.py: {e}")
    widths = dict(arch.widths or {})
    plan = table.plan(widths)
    result.update(run_widths=plan, latency_predicted_ratio=table.predict(widths) / table.dense(),
                  latency_predicted_seconds=table.predict(widths),
                  latency_table_lr_size=list(table.lr_hw))
  if _MEASURE.value:
    from fmp_jax import profiling
    from fmp_jax.models import bake_masks, init_params
    params = (bake_masks(exported.params, exported.masks) if _EXPORT.value
              else init_params(arch))
    # Run where the table (given) or the export (written by a latency search) says is fastest.
    run_widths = result.get("run_widths") or (exported.meta.get("run_widths")
                                              if _EXPORT.value else None)
    # Pruned and dense interleaved over the rounds: medians, the spread, a busy-machine flag.
    t = profiling.time_against_dense(params, arch, lr_hw, _REPEATS.value,
                                     run_widths=run_widths if arch.widths else None)
    result.update(latency_measured_seconds=t["seconds"],
                  dense_latency_measured_seconds=t["dense_seconds"],
                  latency_measured_ratio=t["ratio"], latency_measured=t)
  if _JSON.value:
    print(json.dumps(result))
    return
  rows = complexity.per_layer(arch, weight_masks=weight_masks, lr_hw=lr_hw)
  name_w = max(len(r["layer"]) for r in rows)
  print(f"{'layer':<{name_w}}  {'kernel HWIO':>16}  {'out':>9}  {'params':>11}  {'FLOPs (MACs)':>16}")
  for r in rows:
    out = f"{r['out_hw'][0]}x{r['out_hw'][1]}"
    print(f"{r['layer']:<{name_w}}  {r['kernel']:>16}  {out:>9}  {r['params']:>11,}  {r['flops']:>16,}")
  print(f"{arch.model.upper()}-{arch.blocks}-{arch.channels} x{arch.scale} at LR {lr_hw[0]}x{lr_hw[1]}: "
        f"{counts.params:,} params, {counts.flops / 1e9:,.4f} G FLOPs"
        + (f" ({100 * result['params_ratio']:.2f} % / {100 * result['flops_ratio']:.2f} % of dense)"
           if arch.widths or weight_masks else ""))
  print(f"executed MACs (every weight of the kept widths) {executed.flops / 1e9:,.4f} G "
        f"({100 * result['executed_macs_ratio']:.2f} % of dense)")
  if "latency_predicted_ratio" in result:
    print(f"latency predicted by {_TABLE.value}: {1e3 * result['latency_predicted_seconds']:.1f} ms "
          f"({100 * result['latency_predicted_ratio']:.2f} % of dense) at LR "
          f"{result['latency_table_lr_size'][0]}x{result['latency_table_lr_size'][1]}")
  if "latency_measured_ratio" in result:
    print(f"latency measured here: {1e3 * result['latency_measured_seconds']:.1f} ms vs dense "
          f"{1e3 * result['dense_latency_measured_seconds']:.1f} ms: "
          f"{profiling.format_latency(result['latency_measured'])}")


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser)

"""Is the latency table honest? Predicted against measured end-to-end latency, side by side.

  python bench/latency_model.py --table latency.json                       # 8 random widths
  python bench/latency_model.py --table latency.json --configs 12 --exports a.msgpack b.msgpack

For random width configurations of the table's model (every prunable group drawn in
[4, full]), the uniform widths at a few fractions, and the widths of any exports given,
it builds the model (random weights: latency does not depend on them), runs it the way
`fmp_jax.inference.Upscaler` does (default fast paths and padding, one whole image at the
table's LR size), times every configuration once per round for --repeats rounds
(interleaved, so all see the same machine load) and prints, per configuration, the
table's prediction, the measured median and the error, and the same as ratios to the
dense model (measured in the same rounds: a budget is a fraction of it, and the ratio
does not move when the whole machine runs faster or slower than when the table was
built); then the median and worst absolute error of both against the targets
(median <= 5 %, worst <= 10 %).
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--table", required=True, help="latency table (tools/profile_latency.py)")
  p.add_argument("--configs", type=int, default=8, help="random width configurations")
  p.add_argument("--exports", nargs="*", default=[], help="exports of the table's model")
  p.add_argument("--repeats", type=int, default=7, help="timed rounds (median per config)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", default=None, help="write the rows here")
  args = p.parse_args()

  from fmp_jax.profiling import reexec_with_hugepages
  reexec_with_hugepages()
  import numpy as np
  import fmp_jax
  from fmp_jax import profiling
  from fmp_jax.models import bake_masks
  from fmp_jax.pruning.latency import LatencyTable, LatencyTableError

  try:
    table = LatencyTable.load(args.table)
  except LatencyTableError as e:
    raise SystemExit(f"latency_model.py: {e}")
  arch = table.arch
  groups = arch.prunable_groups()
  rng = np.random.default_rng(args.seed)
  configs = [("random", profiling.random_widths(arch, rng)) for _ in range(args.configs)]
  for frac in (1.0, 0.75, 0.5):
    configs.append((f"uniform {frac:g}", {g: max(4, round(frac * arch.width(g))) for g in groups}))
  exported = {}
  for path in args.exports:
    e = fmp_jax.load(path)
    table.check_arch(e.arch)
    configs.append((os.path.basename(path), dict(e.arch.widths or {})))
    exported[len(configs) - 1] = e
  print(f"table {args.table}: {table.device['kind']}, LR {table.lr_hw[0]}x{table.lr_hw[1]}, "
        f"{arch.model.upper()}-{arch.blocks}-{arch.channels} x{arch.scale}; {len(configs)} "
        f"configurations, {args.repeats} interleaved rounds", flush=True)

  calls = {}
  for i, (_, widths) in enumerate(configs):
    small = arch.with_widths(widths)
    params = (bake_masks(exported[i].params, exported[i].masks) if i in exported
              else fmp_jax.init_params(small, seed=1))
    fn, x, run_arch = profiling.upscaler_call(params, small, table.lr_hw, table.precision,
                                              run_widths=table.plan(widths))
    calls[i] = (fn, (x,))
  timing = profiling.time_interleaved(calls, rounds=args.repeats)
  times = [timing.rounds[i] for i in range(len(configs))]
  if timing.unreliable():
    print(f"WARNING: unreliable: machine busy (a configuration's rounds differ by "
          f"{100 * max(timing.spread(i) for i in calls):.0f} %); the errors below include "
          f"the load.")

  rows = []
  dense = table.dense()
  # The dense model is one of the timed configurations: a budget is a fraction of it, so the
  # ratio to it (measured in the same rounds) is checked beside the absolute seconds.
  dense_measured = statistics.median(times[[n for n, _ in configs].index("uniform 1")])
  short = lambda g: "S" if g == "stream" else g.split(".")[0].replace("block_", "I")
  print(f"{'configuration':<22}{'widths':<34}{'predicted ms':>13}{'measured ms':>12}{'error':>8}"
        f"{'pred./dense':>12}{'meas./dense':>12}{'ratio error':>12}")
  for (name, widths), t in zip(configs, times):
    measured, predicted = statistics.median(t), table.predict(widths)
    err = predicted / measured - 1
    ratio_err = (predicted / dense) / (measured / dense_measured) - 1
    label = " ".join(f"{short(g)}{widths.get(g, arch.width(g))}" for g in groups)
    rows.append({"configuration": name, "widths": widths, "predicted_s": predicted,
                 "measured_s": measured, "error": err, "predicted_ratio": predicted / dense,
                 "measured_ratio": measured / dense_measured, "ratio_error": ratio_err})
    print(f"{name:<22}{label:<34}{1e3 * predicted:>13.1f}{1e3 * measured:>12.1f}"
          f"{100 * err:>+7.1f}%{predicted / dense:>12.3f}{measured / dense_measured:>12.3f}"
          f"{100 * ratio_err:>+11.1f}%")
  summary = {}
  for key, label in (("error", "seconds"), ("ratio_error", "ratio to dense")):
    errors = [abs(r[key]) for r in rows if not (key == "ratio_error" and
                                                r["configuration"] == "uniform 1")]
    med, worst = statistics.median(errors), max(errors)
    summary[key] = {"median_abs": med, "worst_abs": worst}
    print(f"|error| of the {label}: median {100 * med:.1f} % (target <= 5 %: "
          f"{'met' if med <= 0.05 else 'MISSED'}), worst {100 * worst:.1f} % (target <= 10 %: "
          f"{'met' if worst <= 0.10 else 'MISSED'})")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"table": args.table, "device": table.device, "rows": rows,
                 "median_abs_error": summary["error"]["median_abs"],
                 "worst_abs_error": summary["error"]["worst_abs"],
                 "ratio_error": summary["ratio_error"]}, f, indent=1)


if __name__ == "__main__":
  main()

"""Accelerator figures in one run: step times at ESRB-6-256 (fp32, bf16, fixed-order sums)
and pruned-vs-dense inference latency against the FLOPs ratio.

  python bench/accelerator.py                  # the full-size figures (a GPU/TPU: ~5 min)
  python bench/accelerator.py --small          # the same script on ESRB-2-32 (CPU check)
  python bench/accelerator.py --json out.json

Prints, side by side and measured in this one process:
1. the FMP search step and a dense training step (batch 16 of 48x48 LR, x2)
   in float32 and in bfloat16 compute (`precision`), and the search step with
   `reduction_shards=16` (layout-independent sums; 4 with --small), as median ms and ratios;
2. `fmp_jax.inference.Upscaler` latency of a pruned ESRB whose widths are whole
   multiples of 8 and 32 (what `search.channel_multiple` gives) against the
   dense model on a 640x360 LR frame (1280x720 output), with each FLOPs ratio.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import fmp_jax  # noqa: E402
from fmp_jax import finetuning, profiling  # noqa: E402
from fmp_jax.inference import Upscaler  # noqa: E402
from fmp_jax.pruning import complexity, search  # noqa: E402
from fmp_jax.pruning.settings import SearchSettings  # noqa: E402
from fmp_jax.pruning.state import init_state  # noqa: E402


SHARDS = 4   # reduction_shards of the timed fixed-order search step (set in main)


def median_ms(fn, repeats):
  """Median ms of fn() over `repeats` rounds after a warm-up (`profiling.time_interleaved`)."""
  return 1e3 * profiling.time_interleaved({"fn": (fn, ())}, rounds=repeats).seconds("fn")


def step_times(arch, batch, patch, repeats):
  params = fmp_jax.init_params(arch)
  rng = np.random.default_rng(0)
  hr = rng.random((batch, 2 * patch, 2 * patch, 3), np.float32)
  lr, hr = jax.device_put(hr[:, ::2, ::2].copy()), jax.device_put(hr)
  b = search.budget_arrays(fmp_jax.Budget(0.085, metric="params"))
  out = {}
  for precision in ("float32", "bfloat16"):
    tx = finetuning.make_optimizer(2e-4)
    dense = jax.jit(finetuning.make_step(arch, tx, precision=precision))
    dense_state = finetuning.init_state(params, tx)
    out[f"dense_{precision}"] = median_ms(lambda: dense(dense_state, {}, lr, hr)[1], repeats)
    for shards in ((0, SHARDS) if precision == "float32" else (0,)):
      settings = SearchSettings(reduction_shards=shards)
      step = jax.jit(search.make_step(arch, fmp_jax.Budget(0.085, metric="params"), settings, precision=precision))
      state = init_state(arch, params, settings)
      name = f"search_{precision}" + ("_shards" if shards else "")
      out[name] = median_ms(lambda: step(state, b, lr, hr)[1], repeats)
  return out


def pruned_widths(arch, keep_channels, multiple):
  """Every prunable group cut to `keep_channels` of its width, rounded up to `multiple`."""
  widths = {}
  for g in arch.prunable_groups():
    w = arch.width(g)
    widths[g] = min(w, max(multiple, int(np.ceil(keep_channels * w / multiple)) * multiple))
  return widths


def inference_ratios(arch, keep_channels, lr_hw, repeats):
  """The dense model and two pruned ones, timed side by side (interleaved rounds)."""
  rng = np.random.default_rng(1)
  frame = rng.random((1, *lr_hw, 3), np.float32)
  models = {"dense": Upscaler(fmp_jax.init_params(arch), arch, tile=None, channel_multiple=1)}
  for multiple in (8, 32):
    small = arch.with_widths(pruned_widths(arch, keep_channels, multiple))
    models[f"pruned, widths x{multiple}"] = Upscaler(fmp_jax.init_params(small), small,
                                                     tile=None, channel_multiple=1)
  timing = profiling.time_interleaved({n: (up.forward, (frame,)) for n, up in models.items()},
                                      rounds=repeats)
  dense_flops = complexity.count(arch).flops
  return [{"model": n, "widths": dict(up.arch.widths) if up.arch.widths else None,
           "ms": 1e3 * timing.seconds(n), "latency_ratio": timing.ratio(n, "dense"),
           "flops_ratio": complexity.count(up.arch).flops / dense_flops,
           "unreliable": timing.unreliable(n, "dense")} for n, up in models.items()]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--small", action="store_true", help="ESRB-2-32, batch 4 of 24x24 (CPU)")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--keep-channels", type=float, default=0.3,
                      help="kept fraction of each group's channels for the pruned model")
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  if args.small:
    arch, batch, patch, lr_hw = fmp_jax.Arch(blocks=2, channels=32, scale=2), 4, 24, (90, 160)
  else:
    arch, batch, patch, lr_hw = fmp_jax.Arch(blocks=6, channels=256, scale=2), 16, 48, (360, 640)
  global SHARDS
  SHARDS = min(16, batch)
  device = jax.devices()[0]
  print(f"device: {device.platform} {device.device_kind}; ESRB-{arch.blocks}-{arch.channels} x2")
  steps = step_times(arch, batch, patch, args.repeats)
  print(f"\nsteps, batch {batch} of {patch}x{patch} LR (median ms)")
  for name, ms in steps.items():
    print(f"  {name:<26}{ms:>10.1f}")
  print(f"  search / dense, float32     {steps['search_float32'] / steps['dense_float32']:>8.2f}x")
  print(f"  search / dense, bfloat16    {steps['search_bfloat16'] / steps['dense_bfloat16']:>8.2f}x")
  print(f"  bf16 / fp32, search step    {steps['search_bfloat16'] / steps['search_float32']:>8.2f}x")
  print(f"  bf16 / fp32, dense step     {steps['dense_bfloat16'] / steps['dense_float32']:>8.2f}x")
  print(f"  reduction_shards={SHARDS:<2} / off   "
        f"{steps['search_float32_shards'] / steps['search_float32']:>8.2f}x")
  rows = inference_ratios(arch, args.keep_channels, lr_hw, args.repeats)
  print(f"\ninference, one {lr_hw[1]}x{lr_hw[0]} LR frame (Upscaler, no tiling)")
  print(f"  {'model':<22}{'ms':>9}{'latency ratio':>15}{'FLOPs ratio':>13}")
  for r in rows:
    print(f"  {r['model']:<22}{r['ms']:>9.1f}{r['latency_ratio']:>15.3f}{r['flops_ratio']:>13.3f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": str(device.device_kind), "steps_ms": steps, "inference": rows}, f,
                indent=1)


if __name__ == "__main__":
  main()

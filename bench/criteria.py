"""Where each convergence criterion lands, and how it splits channel vs weight pruning.

  python bench/criteria.py [--keep 0.5] [--channels 32] [--blocks 2]

Runs `fmp_jax.prune` with the default search settings on a small ESRB x2
(bundled photos) for the 4 criteria x 2 metrics and prints the remaining
fraction each criterion tests, the total, and the share removed by channels
and by weights (FMP's Table 3 columns).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fmp_jax  # noqa: E402
from fmp_jax import data  # noqa: E402
from fmp_jax.pruning import criteria  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--keep", type=float, default=0.5)
  parser.add_argument("--channel_keep", type=float, default=0.7, help="for total_fixed")
  parser.add_argument("--blocks", type=int, default=2)
  parser.add_argument("--channels", type=int, default=32)
  args = parser.parse_args()
  arch = fmp_jax.Arch(blocks=args.blocks, channels=args.channels, esa_channels=8, scale=2)
  params = fmp_jax.init_params(arch)
  print(f"ESRB-{args.blocks}-{args.channels} x2, keep {args.keep}, bundled photos, 4x24x24 LR")
  print(f"{'criterion':<12}{'metric':<8}{'steps':>6}{'tested':>22}{'total':>8}"
        f"{'by channels':>13}{'by weights':>12}{'sec':>6}")
  for criterion, rule in criteria.CRITERIA.items():
    for metric in ("flops", "params"):
      extra = {f: getattr(args, f) for f in rule.needs}
      budget = fmp_jax.Budget(args.keep, metric=metric, criterion=criterion, **extra)
      t0 = time.time()
      r = fmp_jax.prune(params, budget, arch=arch, steps=3000,
                        data=data.bundled_patches(2, 24, 4, seed=1),
                        config=dict(lr=1e-3)).report
      by_channels, by_weights = (r[f"{metric}_channel_pruned_ratio"],
                                 r[f"{metric}_weight_pruned_ratio"])
      tested = {"total": r[f"{metric}_ratio"], "channel": 1 - by_channels,
                "weight": 1 - by_weights}
      shown = " ".join(f"{k[0].upper()}={100 * tested[k]:.2f}%" for k in budget.targets())
      print(f"{criterion:<12}{metric:<8}{r['steps']:>6}{shown:>22}{100 * r[f'{metric}_ratio']:>7.2f}%"
            f"{100 * by_channels:>12.2f}%{100 * by_weights:>11.2f}%"
            f"{time.time() - t0:>6.0f}")


if __name__ == "__main__":
  main()

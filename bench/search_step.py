"""FMP search step vs a plain dense training step of the same backbone, side by side.

  python bench/search_step.py [--repeats 20] [--batch 8] [--patch 48]

For each width, both steps are jitted, warmed up, then timed on the same batch;
prints the median wall time of each and their ratio (search / dense). The
search step does more work: it generates every kernel through the
hypernetwork, differentiates through it, and runs the proximal/landing logic.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

import fmp_jax  # noqa: E402
from fmp_jax import finetuning  # noqa: E402
from fmp_jax.pruning import search  # noqa: E402
from fmp_jax.pruning.settings import SearchSettings  # noqa: E402
from fmp_jax.pruning.state import init_state  # noqa: E402


def median_time(fn, state, args, repeats):
  state, out = fn(state, *args)  # compile + warm-up
  jax.block_until_ready(out)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, out = fn(state, *args)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--patch", type=int, default=48)
  parser.add_argument("--widths", default="small:2x32,medium:4x64",
                      help="name:BLOCKSxCHANNELS,... (ESRB, x2)")
  args = parser.parse_args()
  print(f"backend: {jax.default_backend()}, batch {args.batch} of {args.patch}x{args.patch} LR, x2")
  print(f"{'model':<18} {'dense step (ms)':>16} {'FMP search step (ms)':>21} {'ratio':>7}")
  for spec in args.widths.split(","):
    name, shape = spec.split(":")
    blocks, channels = (int(v) for v in shape.lower().split("x"))
    arch = fmp_jax.Arch(blocks=blocks, channels=channels, scale=2)
    params = fmp_jax.init_params(arch)
    key = jax.random.key(0)
    hr = jax.random.uniform(key, (args.batch, 2 * args.patch, 2 * args.patch, 3))
    lr = jax.image.resize(hr, (args.batch, args.patch, args.patch, 3), "bicubic")

    tx = finetuning.make_optimizer(2e-4)
    dense_step = jax.jit(finetuning.make_step(arch, tx), donate_argnums=0)
    dense_ms = 1e3 * median_time(dense_step, finetuning.init_state(params, tx),
                                 ({}, lr, hr), args.repeats)

    settings = SearchSettings()
    fmp_step = jax.jit(search.make_step(arch, fmp_jax.Budget(0.085, metric="params"), settings), donate_argnums=0)
    b = search.budget_arrays(fmp_jax.Budget(0.085, metric="params"))
    fmp_ms = 1e3 * median_time(fmp_step, init_state(arch, params, settings),
                               (b, lr, hr), args.repeats)
    label = f"{name} ESRB-{blocks}-{channels}"
    print(f"{label:<18} {dense_ms:>16.1f} {fmp_ms:>21.1f} {fmp_ms / dense_ms:>6.2f}x")


if __name__ == "__main__":
  main()

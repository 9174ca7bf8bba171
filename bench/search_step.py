"""The FMP search step before pruning starts and while it prunes, against a dense training step.

  python bench/search_step.py                                   # ESRB-6-256 x2, batch 2 of 24x24
  python bench/search_step.py --batches 2x24,16x48 --repeats 3  # and the paper's batch
  python bench/search_step.py --widths small:2x32 --batches 8x48

Three steps of the same backbone on the same batch, jitted, warmed up, timed (median),
interleaved so that all see the same machine load:

* dense: a plain training step (`finetuning.make_step`);
* search, before pruning: the search step on a fresh state (nothing reaches the dead
  zone: both landings take the full step without a bisection);
* search, pruning: the same step on a state in the pruning phase: the schedule's target
  just below the current cost, 5 % of the channel entries and 20 % of the weight
  indicators waiting in the dead zone, so both landings (channels, then weights) bisect
  their step, as they do on every step of the real pruning phase.

The search step generates every kernel through the hypernetwork, differentiates through
it and runs the proximal step and its landing; the settings are the paper configs'
(configs/x2.py's search section).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import fmp_jax  # noqa: E402
from fmp_jax import finetuning  # noqa: E402
from fmp_jax.config_base import paper_esrb_config  # noqa: E402
from fmp_jax.pruning import search  # noqa: E402
from fmp_jax.pruning.settings import SearchSettings  # noqa: E402
from fmp_jax.pruning.state import init_state  # noqa: E402


def pruning_phase(state, settings, rng):
  """`state` moved into the pruning phase (see the module docstring)."""
  dz = settings.prune_threshold

  def waiting(x, fraction):
    x = np.asarray(x)
    hit = rng.random(x.shape) < fraction
    return jnp.asarray(np.where(hit, rng.uniform(0.1 * dz, 0.9 * dz, x.shape), x), jnp.float32)

  latents = {"channels": {g: waiting(z, 0.05) for g, z in state.latents["channels"].items()},
             "weights": jax.tree.map(lambda u: waiting(u, 0.2), state.latents["weights"])}
  start = int(settings.pace_warmup * settings.pace_steps) + 1
  return state.replace(latents=latents, step=jnp.asarray(start, jnp.int32))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--batches", default="2x24", help="NxPATCH,... LR batches")
  parser.add_argument("--widths", default="paper:6x256",
                      help="name:BLOCKSxCHANNELS,... (ESRB, x2)")
  args = parser.parse_args()
  cfg = paper_esrb_config(2).search
  settings = SearchSettings.from_config(cfg)
  budget = fmp_jax.Budget(0.085, metric="params")
  print(f"backend: {jax.default_backend()}; search settings of configs/x2.py (latent_lr "
        f"{settings.latent_lr}, pace_steps {settings.pace_steps}); budget keep 8.5 % params")
  print(f"{'model':<20}{'batch':>8}{'dense (ms)':>12}{'before (ms)':>13}{'pruning (ms)':>14}"
        f"{'before/dense':>14}{'pruning/dense':>15}{'pruning/before':>16}")
  for spec in args.widths.split(","):
    name, shape = spec.split(":")
    blocks, channels = (int(v) for v in shape.lower().split("x"))
    arch = fmp_jax.Arch(blocks=blocks, channels=channels, scale=2)
    params = fmp_jax.init_params(arch)
    tx = finetuning.make_optimizer(2e-4)
    dense_step = jax.jit(finetuning.make_step(arch, tx))
    search_step = jax.jit(search.make_step(arch, budget, settings))
    b = search.budget_arrays(budget)
    fresh = init_state(arch, params, settings)
    pruning = pruning_phase(fresh, settings, np.random.default_rng(0))
    dense_state = finetuning.init_state(params, tx)
    for batch in args.batches.split(","):
      n, patch = (int(v) for v in batch.lower().split("x"))
      hr = jax.random.uniform(jax.random.key(0), (n, 2 * patch, 2 * patch, 3))
      lr = jax.image.resize(hr, (n, patch, patch, 3), "bicubic")
      calls = {"dense": lambda: dense_step(dense_state, {}, lr, hr),
               "before": lambda: search_step(fresh, b, lr, hr),
               "pruning": lambda: search_step(pruning, b, lr, hr)}
      for fn in calls.values():
        jax.block_until_ready(fn())
      # The pruning state really bisects: its landing holds both steps back.
      _, m = calls["pruning"]()
      assert float(m["alpha_channel"]) < 1 and float(m["alpha_weight"]) < 1, m
      times = {k: [] for k in calls}
      for _ in range(args.repeats):
        for k, fn in calls.items():
          t0 = time.perf_counter()
          jax.block_until_ready(fn())
          times[k].append(1e3 * (time.perf_counter() - t0))
      t = {k: statistics.median(v) for k, v in times.items()}
      print(f"{name + f' ESRB-{blocks}-{channels}':<20}{f'{n}x{patch}':>8}{t['dense']:>12.1f}"
            f"{t['before']:>13.1f}{t['pruning']:>14.1f}{t['before'] / t['dense']:>13.2f}x"
            f"{t['pruning'] / t['dense']:>14.2f}x{t['pruning'] / t['before']:>15.2f}x",
            flush=True)


if __name__ == "__main__":
  main()

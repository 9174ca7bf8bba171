"""Images/s of the sharded FMP search step on 1, 2, 4, 8 devices, side by side.

  python bench/train_throughput.py            # forces 8 host CPU devices
  python bench/train_throughput.py --devices 1,2,4,8 --batch 16 --patch 32

On a CPU machine the devices are XLA's forced host devices sharing the same
cores, so this measures the overhead of data parallelism rather than a
speedup; on a GPU/TPU host the same script uses the real devices.
"""

import argparse
import os
import statistics
import sys
import time

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8").strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import fmp_jax  # noqa: E402
from fmp_jax import sharding  # noqa: E402
from fmp_jax.pruning import search  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--devices", default="1,2,4,8")
  parser.add_argument("--batch", type=int, default=16, help="global batch")
  parser.add_argument("--patch", type=int, default=32)
  parser.add_argument("--blocks", type=int, default=2)
  parser.add_argument("--channels", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()
  arch = fmp_jax.Arch(blocks=args.blocks, channels=args.channels, scale=2)
  params = fmp_jax.init_params(arch)
  settings = search.SearchSettings()
  step = search.make_step(arch, "total", settings)
  b_host = search.budget_arrays(fmp_jax.Budget(0.3))
  rng = np.random.default_rng(0)
  hr = rng.random((args.batch, 2 * args.patch, 2 * args.patch, 3), dtype=np.float32)
  lr = hr[:, ::2, ::2]
  print(f"backend {jax.default_backend()}, {jax.device_count()} devices; ESRB-{args.blocks}-"
        f"{args.channels}, global batch {args.batch} of {args.patch}x{args.patch} LR")
  print(f"{'devices':>8} {'median step (ms)':>17} {'images/s':>10} {'vs 1 device':>12}")
  base = None
  for n in (int(v) for v in args.devices.split(",")):
    if n > jax.device_count() or args.batch % n:
      print(f"{n:>8}  skipped (needs {n} devices and a batch divisible by {n})")
      continue
    mesh = Mesh(np.array(jax.devices()[:n]), (sharding.DATA_AXIS,),
                axis_types=(jax.sharding.AxisType.Auto,))
    rep, bat = NamedSharding(mesh, P()), NamedSharding(mesh, P(sharding.DATA_AXIS))
    fn = jax.jit(step, in_shardings=(rep, rep, bat, bat), out_shardings=(rep, rep),
                 donate_argnums=0)
    state = jax.device_put(search.init_state(arch, params, settings), rep)
    b = jax.device_put(b_host, rep)
    x, y = jax.device_put(lr, bat), jax.device_put(hr, bat)
    state, m = fn(state, b, x, y)
    jax.block_until_ready(m)
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      state, m = fn(state, b, x, y)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    ips = args.batch / t
    base = base or ips
    print(f"{n:>8} {1e3 * t:>17.1f} {ips:>10.1f} {ips / base:>11.2f}x")


if __name__ == "__main__":
  main()

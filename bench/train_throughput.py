"""Images/s of the sharded FMP search step on 1, 2, 4, 8 devices, side by side.

  python bench/train_throughput.py            # forces 8 host CPU devices
  python bench/train_throughput.py --devices 1,2,4,8 --batch 16 --patch 32
  python bench/train_throughput.py --processes 2   # 1 process x 2 devices vs 2 processes x 1

--processes N runs the same step as one process with N devices and as N
processes with one device each (tools/launch_local.py, jax.distributed; Gloo
collectives on CPU), each process feeding only its rows of the global batch.

On a CPU machine the devices are XLA's forced host devices sharing the same
cores, so this measures the overhead of data parallelism rather than a
speedup; on a GPU/TPU host the same script uses the real devices.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
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
from fmp_jax.pruning.settings import SearchSettings  # noqa: E402
from fmp_jax.pruning.state import init_state  # noqa: E402


def make_parser():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--devices", default="1,2,4,8")
  parser.add_argument("--batch", type=int, default=16, help="global batch")
  parser.add_argument("--patch", type=int, default=32)
  parser.add_argument("--blocks", type=int, default=2)
  parser.add_argument("--channels", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--processes", type=int, default=0,
                      help="compare 1 process x N devices with N processes x 1 device")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  return parser


def setup(args):
  arch = fmp_jax.Arch(blocks=args.blocks, channels=args.channels, scale=2)
  params = fmp_jax.init_params(arch)
  settings = SearchSettings()
  rng = np.random.default_rng(0)
  hr = rng.random((args.batch, 2 * args.patch, 2 * args.patch, 3), dtype=np.float32)
  return arch, params, settings, hr[:, ::2, ::2], hr


def time_step(fn, state, b, x, y, repeats):
  state, m = fn(state, b, x, y)
  jax.block_until_ready(m)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, m = fn(state, b, x, y)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def worker(args):
  """One measurement over every device of the job (one or several processes)."""
  sharding.maybe_initialize_distributed(False)   # joins when the launcher set JAX_* variables
  arch, params, settings, lr, hr = setup(args)
  mesh = sharding.make_mesh()
  rep = sharding.replicated(mesh)
  fn = jax.jit(search.make_step(arch, fmp_jax.Budget(0.3), settings),
               in_shardings=(rep, rep, sharding.batch_sharded(mesh), sharding.batch_sharded(mesh)),
               out_shardings=(rep, rep), donate_argnums=0)
  state = sharding.put_replicated(init_state(arch, params, settings), mesh)
  b = sharding.put_replicated(search.budget_arrays(fmp_jax.Budget(0.3)), mesh)
  rows = args.batch // jax.process_count()
  mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
  x, y = sharding.global_batch(mesh, lr[mine], hr[mine])   # each process: its rows only
  t = time_step(fn, state, b, x, y, args.repeats)
  if jax.process_index() == 0:
    print("RESULT " + json.dumps({"processes": jax.process_count(),
                                  "devices": jax.device_count(), "seconds": t}), flush=True)


def compare_processes(args):
  n = args.processes
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  common = [f"--batch={args.batch}", f"--patch={args.patch}", f"--blocks={args.blocks}",
            f"--channels={args.channels}", f"--repeats={args.repeats}", "--worker"]
  env = dict(os.environ, JAX_PLATFORMS="cpu" if jax.default_backend() == "cpu" else "",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
  one = subprocess.run([sys.executable, "-m", "bench.train_throughput", *common], cwd=repo,
                       env=env, capture_output=True, text=True)
  many = subprocess.run([sys.executable, "tools/launch_local.py", "--processes", str(n),
                         "--module", "bench.train_throughput", "--", *common], cwd=repo,
                        env=dict(env, XLA_FLAGS=""), capture_output=True, text=True)
  print(f"ESRB-{args.blocks}-{args.channels}, global batch {args.batch} of "
        f"{args.patch}x{args.patch} LR, {jax.default_backend()}")
  print(f"{'layout':>26} {'median step (ms)':>17} {'images/s':>10} {'vs 1 process':>13}")
  base = None
  for label, out in ((f"1 process x {n} devices", one), (f"{n} processes x 1 device", many)):
    found = re.search(r"RESULT (\{.*\})", out.stdout)
    if out.returncode or not found:
      print(f"{label:>26}  failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
      continue
    t = json.loads(found.group(1))["seconds"]
    ips = args.batch / t
    base = base or ips
    print(f"{label:>26} {1e3 * t:>17.1f} {ips:>10.1f} {ips / base:>12.2f}x")


def main():
  args = make_parser().parse_args()
  if args.worker:
    return worker(args)
  if args.processes:
    return compare_processes(args)
  arch, params, settings, lr, hr = setup(args)
  step = search.make_step(arch, fmp_jax.Budget(0.3), settings)
  b_host = search.budget_arrays(fmp_jax.Budget(0.3))
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
    state = jax.device_put(init_state(arch, params, settings), rep)
    t = time_step(fn, state, jax.device_put(b_host, rep), jax.device_put(lr, bat),
                  jax.device_put(hr, bat), args.repeats)
    ips = args.batch / t
    base = base or ips
    print(f"{n:>8} {1e3 * t:>17.1f} {ips:>10.1f} {ips / base:>11.2f}x")


if __name__ == "__main__":
  main()

"""Runs N processes of the driver on this machine, as N hosts of one JAX job would.

    python tools/launch_local.py --processes 2 -- --config=configs/tiny.py --workdir=/tmp/w2

Everything after `--` goes to `python -m fmp_jax.main` (or to `--module`).
Each process gets JAX_COORDINATOR_ADDRESS=127.0.0.1:<free port>,
JAX_NUM_PROCESSES and JAX_PROCESS_ID, and `--config.distributed=True` is
added, so `jax.distributed.initialize()` joins them into one job (on CPU the
collectives go over Gloo). Their output is forwarded line by line with a
`[p0]`/`[p1]` prefix. If one process exits with an error or is killed, the
others are stopped and the launcher exits with that status; Ctrl-C stops all.
A process preempted by SIGTERM (exit 75) stops the others at the same step
through the driver itself; the launcher waits for them and exits with 75.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time


PREEMPTED_EXIT = 75   # fmp_jax.preemption.PREEMPTED_EXIT: stopped cleanly after a checkpoint


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _forward(proc: subprocess.Popen, prefix: str, lock: threading.Lock) -> None:
  for line in proc.stdout:
    with lock:
      sys.stdout.write(f"{prefix} {line}")
      sys.stdout.flush()


def launch(n: int, args: list[str], module: str = "fmp_jax.main",
           devices_per_process: int = 1, port: int | None = None) -> int:
  """Starts `n` processes of `python -m module args`; returns the job's exit status."""
  address = f"127.0.0.1:{port or free_port()}"
  procs, threads, lock = [], [], threading.Lock()
  base_env = dict(os.environ, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES=str(n),
                  PYTHONUNBUFFERED="1")
  if devices_per_process and base_env.get("JAX_PLATFORMS", "cpu") == "cpu":
    base_env["JAX_PLATFORMS"] = "cpu"
    base_env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process}"
  extra = ["--config.distributed=True"] if module == "fmp_jax.main" else []
  for i in range(n):
    env = dict(base_env, JAX_PROCESS_ID=str(i))
    proc = subprocess.Popen([sys.executable, "-m", module, *args, *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    procs.append(proc)
    t = threading.Thread(target=_forward, args=(proc, f"[p{i}]", lock), daemon=True)
    t.start()
    threads.append(t)

  def stop_all(sig=signal.SIGTERM):
    for p in procs:
      if p.poll() is None:
        try:
          os.killpg(p.pid, sig)
        except ProcessLookupError:
          pass

  status = 0
  try:
    while True:
      codes = [p.poll() for p in procs]
      failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
      if failed and all(c == PREEMPTED_EXIT for _, c in failed):
        # A preempted process checkpointed with the others at the same step (they agree on
        # the stop every step): let them finish their own clean exit.
        deadline = time.time() + 300
        while time.time() < deadline and any(p.poll() is None for p in procs):
          time.sleep(0.1)
        codes = [p.poll() for p in procs]
        failed = [(i, c) for i, c in enumerate(codes) if c != PREEMPTED_EXIT]
        if not failed:
          status = PREEMPTED_EXIT
          break
      if failed:
        i, code = failed[0]
        with lock:
          print(f"[launch] process {i} exited with status {code}; stopping the others.",
                file=sys.stderr, flush=True)
        stop_all()
        deadline = time.time() + 20
        while time.time() < deadline and any(p.poll() is None for p in procs):
          time.sleep(0.1)
        stop_all(signal.SIGKILL)
        status = code if code > 0 else 128 - code   # killed by a signal: 128 + signal number
        break
      if all(c == 0 for c in codes):
        break
      time.sleep(0.1)
  except KeyboardInterrupt:
    stop_all(signal.SIGINT)
    status = 130
  for p in procs:
    p.wait()
  for t in threads:
    t.join(timeout=5)
  return status


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="\n".join(__doc__.splitlines()[1:]),
      usage="%(prog)s --processes N [--devices-per-process D] -- DRIVER_ARGS...")
  parser.add_argument("--processes", type=int, required=True, help="how many processes (hosts)")
  parser.add_argument("--devices-per-process", type=int, default=1,
                      help="CPU devices each process sees (forced host devices)")
  parser.add_argument("--module", default="fmp_jax.main", help="python -m target")
  parser.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
  parser.add_argument("rest", nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
  if args.processes < 1:
    parser.error(f"--processes {args.processes} must be at least 1.")
  if not rest:
    parser.error("give the driver's arguments after --, e.g. -- --config=configs/tiny.py "
                 "--workdir=/tmp/w")
  return launch(args.processes, rest, module=args.module,
                devices_per_process=args.devices_per_process, port=args.port)


if __name__ == "__main__":
  sys.exit(main())

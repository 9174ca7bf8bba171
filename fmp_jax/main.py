"""Command-line entry: `python -m fmp_jax.main --config=configs/x2.py --workdir=DIR`.

Runs (or resumes) search -> finalise -> finetune -> evaluate -> export in DIR.
SIGTERM or Ctrl-C stops it after the current step with a checkpoint, one line on stderr
and exit status 75 (`preemption.PREEMPTED_EXIT`); rerunning resumes.
Any config field can be overridden, e.g. `--config.search.max_steps=5000`;
unknown fields are refused. A rerun whose config changes the result of the
run already in DIR is refused; `--restart` moves that run aside and starts over.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from fmp_jax.cli import config_or_exit, flags_parser, quiet_logs
from fmp_jax.preemption import PREEMPTED_EXIT, Preempted

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/x2.py (see configs/).", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, logs, plots, the report and the export; "
    "rerun with the same directory to resume.")
_RESTART = flags.DEFINE_bool(
    "restart", False, "Start over: move the run already in --workdir to "
    "<workdir>.replaced-<time> first. Without it, a workdir whose run used a config that "
    "differs in a field that changes the result is refused.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process: host:port of process 0's coordinator "
    "(default: $JAX_COORDINATOR_ADDRESS; found by JAX itself on TPU pods and SLURM).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-process: how many processes (default: $JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-process: this process's id, 0..num_processes-1 "
    "(default: $JAX_PROCESS_ID).")
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", 300, "Multi-process: seconds to wait for the coordinator and the "
    "other processes before giving up with an error.")
flags.mark_flags_as_required(["config", "workdir"])

PROG = "fmp_jax.main"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  quiet_logs()
  config = config_or_exit(_CONFIG, PROG)
  from fmp_jax import train  # imported late so flag errors come fast
  try:
    distributed = dict(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                       process_id=_PROCESS_ID.value, timeout_s=_DISTRIBUTED_TIMEOUT.value)
    train.train_and_evaluate(config, _WORKDIR.value, restart=_RESTART.value,
                             distributed=distributed)
  except Preempted as e:
    print(f"{PROG}: {e}", file=sys.stderr, flush=True)
    sys.exit(PREEMPTED_EXIT)
  except KeyboardInterrupt:
    sys.exit(f"{PROG}: interrupted; rerun the same command to resume from the last checkpoint.")
  except (ValueError, RuntimeError, FloatingPointError, OSError) as e:
    sys.exit(f"{PROG}: error: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser)

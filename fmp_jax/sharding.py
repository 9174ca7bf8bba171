"""Device mesh, shardings and global batches: data parallelism through JAX itself.

One 1-D mesh axis "data" spans every device of every host. Model state is
replicated; batches are split along their leading axis. On a pod each host
feeds its own slice of the global batch and `make_array_from_process_local_data`
assembles the global array; nothing here depends on the device count.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Optional

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


class DistributedSetupError(RuntimeError):
  """The multi-process job cannot start (bad process id/count, no coordinator)."""


def _env_int(name: str):
  value = os.environ.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    raise DistributedSetupError(f"{name}={value!r} is not an integer.") from None


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Returns once `address` accepts TCP connections; raises after `timeout_s`.

  JAX aborts the whole process (no Python exception) when a non-coordinator
  process cannot register in time, so the other processes probe first.
  """
  host, _, port = address.rpartition(":")
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
        return
    except OSError:
      if time.monotonic() >= deadline:
        raise DistributedSetupError(
            f"no coordinator answered at {address} within {timeout_s:g} s; start process 0 "
            "(it hosts the coordinator) with the same address, or check the address/port."
            ) from None
      time.sleep(0.5)


def maybe_initialize_distributed(requested: bool, coordinator_address: Optional[str] = None,
                                 num_processes: Optional[int] = None,
                                 process_id: Optional[int] = None,
                                 timeout_s: float = 300) -> None:
  """Calls `jax.distributed.initialize()` when asked or when the environment is a multi-host job.

  On Cloud TPU pods and SLURM/Open MPI clusters JAX discovers the coordinator,
  the process count and this process's id itself. Elsewhere give them as
  arguments or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  JAX_PROCESS_ID (tools/launch_local.py does). Bad values and a coordinator
  that never answers raise DistributedSetupError within `timeout_s`.
  """
  address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  n = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
  pid = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
  if not (requested or address):
    return
  if (n is None) != (pid is None):
    raise DistributedSetupError("give both the process count and this process's id "
                                f"(got count {n}, id {pid}).")
  if n is not None:
    if n < 1:
      raise DistributedSetupError(f"the process count is {n}; it must be at least 1.")
    if not 0 <= pid < n:
      raise DistributedSetupError(f"process id {pid} is out of range for {n} processes "
                                  f"(ids are 0..{n - 1}).")
    if address is None:
      raise DistributedSetupError("a process count and id were given but no coordinator "
                                  "address (JAX_COORDINATOR_ADDRESS or --coordinator_address).")
    if pid > 0:
      _wait_for_coordinator(address, timeout_s)
  jax.distributed.initialize(coordinator_address=address, num_processes=n, process_id=pid,
                             initialization_timeout=int(timeout_s))
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())


def sync_processes(name: str) -> None:
  """Waits for every process of a multi-host job; a no-op on one host."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def make_mesh() -> Mesh:
  """A 1-D data-parallel mesh over all devices."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh, what: str) -> None:
  n = mesh.devices.size
  if global_batch % n or global_batch % jax.process_count():
    raise ValueError(f"{what}={global_batch} is not divisible by the {n} devices "
                     f"({jax.process_count()} processes): the global batch is split evenly "
                     f"over them; use a multiple of {n}, or change the device count.")


def check_reduction_shards(shards: int, global_batch: int, mesh: Mesh, stage: str) -> None:
  """reduction_shards must be 0, or a power of two dividing the batch and divisible by the devices."""
  if not shards:
    return
  n = mesh.devices.size
  if shards & (shards - 1) or global_batch % shards or shards % n:
    raise ValueError(f"{stage}.reduction_shards={shards} must be a power of two that divides "
                     f"{stage}.batch_size={global_batch} and is a multiple of the {n} devices "
                     "(or 0: off).")


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """Places host values (identical on every host) as replicated global arrays."""
  sharding = replicated(mesh)

  def place(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(place, tree)


def global_batch(mesh: Mesh, *local_arrays: np.ndarray):
  """This host's slice of the batch -> global arrays sharded along "data"."""
  sharding = batch_sharded(mesh)
  return tuple(jax.make_array_from_process_local_data(sharding, np.asarray(a))
               for a in local_arrays)

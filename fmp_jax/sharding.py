"""Device mesh, shardings and global batches: data parallelism through JAX itself.

One 1-D mesh axis "data" spans every device of every host. Model state is
replicated; batches are split along their leading axis. On a pod each host
feeds its own slice of the global batch and `make_array_from_process_local_data`
assembles the global array; nothing here depends on the device count.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed(requested: bool) -> None:
  """Calls `jax.distributed.initialize()` when asked or when the environment is a multi-host job.

  On Cloud TPU pods and SLURM/Open MPI clusters JAX discovers the coordinator
  itself; elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  JAX_PROCESS_ID.
  """
  env = any(os.environ.get(k) for k in ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS"))
  if requested or env:
    jax.distributed.initialize()
    logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())


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
    raise ValueError(f"{what}={global_batch} must be a multiple of the {n} devices "
                     f"({jax.process_count()} hosts); change it or the device count.")


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

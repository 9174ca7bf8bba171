"""Gradients whose float summation order does not depend on the device layout.

A data-parallel mean over a batch is summed in an order set by the layout (one
device sums all rows; N devices sum their rows, then all-reduce), so 1- and
N-device runs round differently and drift apart over many steps. With
`shards=M`, the batch is cut into M fixed micro-shards (M a power of two that
the device count divides), each shard's value and gradient is computed on its
own (same shapes on every layout), and the M results are added in one fixed
pairwise tree: (0+1)+(2+3)... Where the shards live changes only where the
adds run, not which adds. The price: per-shard gradients in memory (M copies
of the gradient tree) and smaller per-shard work.
"""

from __future__ import annotations

from typing import Callable

import jax


def check_shards(shards: int, batch_size: int, what: str) -> None:
  if shards <= 0:
    return
  if shards & (shards - 1):
    raise ValueError(f"{what}.reduction_shards={shards} must be a power of two (or 0: off).")
  if batch_size % shards:
    raise ValueError(f"{what}.reduction_shards={shards} must divide {what}.batch_size="
                     f"{batch_size}.")


def single_device_mesh(axis: str = "data"):
  """A mesh over the default device alone (the notebook API's steps are not sharded)."""
  return jax.make_mesh((1,), (axis,), devices=jax.devices()[:1],
                       axis_types=(jax.sharding.AxisType.Auto,))


def pairwise_sum(x: jax.Array) -> jax.Array:
  """Sum over axis 0 (a power of two long) as the fixed tree (0+1)+(2+3)..."""
  # Explicit elementwise adds of slices: XLA does not reassociate them (a reduce
  # over a reshaped axis could be merged with the next level into one reduce).
  while x.shape[0] > 1:
    x = x[0::2] + x[1::2]
  return x[0]


def sharded_value_and_grad(fn: Callable, shards: int, mesh, axis: str = "data") -> Callable:
  """`value_and_grad(fn, has_aux=True)` of a per-row mean, summed layout-independently.

  fn(diff, lr, hr) -> (mean over the rows of lr/hr, aux). Returns
  g(diff, lr, hr) -> ((value, aux), grads): the mean over `shards`
  micro-shards of the batch, each computed alone (`lax.map`, the same shapes on
  any layout) and added in a fixed pairwise tree: first over the shards each
  device holds, then over the devices (all-gathered, so every device adds the
  same values in the same order). `diff` must be replicated over `mesh`; lr/hr
  sharded along `axis`.
  """
  from jax.sharding import PartitionSpec as P
  devices = mesh.shape[axis]
  if shards % devices:
    raise ValueError(f"reduction_shards={shards} must be a multiple of the {devices} devices.")
  vg = jax.value_and_grad(fn, has_aux=True)

  def checked(diff, lr, hr):
    if lr.shape[0] % shards:
      raise ValueError(f"reduction_shards={shards} must divide the batch ({lr.shape[0]} rows).")
    return mapped(diff, lr, hr)

  def local(diff, lr, hr):
    per_device = shards // devices
    split = lambda x: x.reshape(per_device, x.shape[0] // per_device, *x.shape[1:])
    per = jax.lax.map(lambda xy: vg(diff, *xy), (split(lr), split(hr)))
    mine = jax.tree.map(pairwise_sum, per)
    every = jax.lax.all_gather(mine, axis)          # (devices, ...) in device order
    return jax.tree.map(lambda t: pairwise_sum(t) / shards, every)

  mapped = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(axis), P(axis)), out_specs=P(),
                         check_vma=False)
  return checked

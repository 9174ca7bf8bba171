"""Masks from latents, and the proximal operator that makes latents exactly zero.

A latent entry is pruned when it is exactly zero: channel mask = 1[z != 0],
weight mask = 1[u != 0]. Entries get there through the proximal operator of
the l1 penalty (soft thresholding, FMP.md section 4) plus DHP's pruning
threshold: an entry whose magnitude falls below `prune_threshold` is set to
zero (DHP prunes a channel at the end when |z| < min(5e-3, the 4th largest
|z| of its vector), so at least `min_channels` stay).

With ``channel_multiple`` m > 1 a channel vector has one entry per group of m
consecutive channels; `expand` repeats it to the full width, so every width
the search produces is a multiple of m.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np


def hard(tree):
  """0/1 masks (float32) of the non-zero entries."""
  return jax.tree.map(lambda x: (x != 0).astype(jnp.float32), tree)


def soft_threshold(x, t):
  """The proximal operator of t * |x|: sign(x) * max(|x| - t, 0)."""
  return jnp.sign(x) * jnp.maximum(jnp.abs(x) - t, 0.0)


def shrink(x, t, dead_zone):
  """Soft-threshold by `t`, then zero what is left below `dead_zone` (DHP's threshold)."""
  y = soft_threshold(x, t)
  return jnp.where(jnp.abs(y) <= dead_zone, 0.0, y)


def keep_strongest(before, after, k: int):
  """`after`, but entries of `before` among its k largest |.| stay as they were if `after`
  would leave fewer than k non-zero entries (a group never drops below k)."""
  k = min(k, before.shape[0])
  kth = jnp.sort(jnp.abs(before))[-k]
  forced = (jnp.abs(before) >= kth) & (before != 0)
  too_few = jnp.sum(after != 0) < k
  return jnp.where(too_few & forced & (after == 0), before, after)


def prox_channels(vectors: Mapping, t, dead_zone, min_entries: Mapping[str, int]) -> dict:
  """The proximal step on channel vectors: shrink, keeping `min_entries[g]` per group."""
  return {g: keep_strongest(z, shrink(z, t, dead_zone), min_entries[g])
          for g, z in vectors.items()}


def prox_weights(indicators, t, dead_zone):
  """The proximal step on weight indicators (no minimum: a layer may lose any weight)."""
  return jax.tree.map(lambda u: shrink(u, t, dead_zone), indicators)


def expand(vectors: Mapping, multiple: int) -> dict:
  """Channel vectors with one entry per `multiple` channels, repeated to full width."""
  if multiple == 1:
    return dict(vectors)
  return {g: jnp.repeat(z, multiple) for g, z in vectors.items()}


def indicator_as_kernel(u, kernel_shape, full: bool = True):
  """A layer's weight indicators or masks (HWIO, or (C_in, C_out) with one per channel
  pair, which holds for every kernel tap) in its kernel's HWIO shape.

  full=False gives a pair indicator as (1, 1, C_in, C_out), which broadcasts
  against the kernel (what a product needs; counting needs the full shape).
  numpy stays numpy, jax stays jax.
  """
  if u.ndim == 4:
    return u
  if not full:
    return u[None, None]
  xp = np if isinstance(u, np.ndarray) else jnp
  return xp.broadcast_to(u[None, None], tuple(kernel_shape))

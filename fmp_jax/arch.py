"""The architecture as data.

An `Arch` says which backbone to build (a registered `Backbone`: ESRB or EDSR),
how deep and wide it is,
the upscaling factor, and, after pruning, the width of every prunable channel
group. The same module code builds the dense network (no widths given) and the
physically pruned one (smaller widths), and an `Arch` travels with the params
in checkpoints and exports as a plain dict.

Channel groups
--------------
Every convolution writes into one *channel group* and reads from another. All
layers whose outputs are added together must keep the same channels, so they
share a group (and one channel vector during the search):

* ``stream``: the residual stream. ESRB: head, every ``conv_b`` (added to the
  block input), every ``conv_1x1`` (its output is the next block's input and
  is added to that block's ``conv_b``), the ESA ``expand`` conv (gates the
  stream) and ``body_end`` (added to the head output). EDSR: head, every
  ``conv_b`` and ``body_end``.
* ``block_{i}.inner``: the output of ``conv_a`` inside block ``i``.
* ``block_{i}.esa``: ESRB's ESA inner width ``f`` (prunable only when
  ``prune_esa`` is set).
* fixed groups that are never pruned: ``rgb_in`` (3), ``rgb_out`` (3) and the
  upsampler's internal widths.
* tied groups (EDSR with ``prune_upsampler``, as DHP's ``--prune_upsampler``):
  each upsampler conv's output ``upsample_{j}`` follows the stream, every
  stream channel repeated r*r times (the sub-pixels pixel shuffle gathers
  into that channel), and ``upsample_{j}.shuffled`` is the stream itself.
  They have no channel vector of their own.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping, Optional

import numpy as np

SCALES = (2, 3, 4)


class ArchError(ValueError):
  """An architecture description that cannot be built."""


@dataclasses.dataclass(frozen=True)
class Group:
  """A channel group: `size` is its full (unpruned) width.

  A tied group (``tied_to`` set) keeps the channels of group ``tied_to``, each
  repeated ``repeat`` times in a row (channel k follows channel k // repeat).
  """
  name: str
  size: int
  prunable: bool
  tied_to: Optional[str] = None
  repeat: int = 1


@dataclasses.dataclass(frozen=True)
class Backbone:
  """Everything the package asks of one backbone family, in one entry.

  A backbone is one file under `fmp_jax/models/` that defines its Flax module and
  registers this entry (`register_backbone`), as BasicSR's ``*_arch.py`` files do; nothing
  outside `models/` branches on the model's name.

  Attributes:
    name: `Arch.model`'s value, e.g. "esrb".
    module: the Flax module class, built as ``module(arch)``.
    groups: arch -> its channel groups besides ``rgb_in``, ``rgb_out`` and ``stream``
      (which every backbone has), in a fixed order (the latents' order).
    receptive_radius: arch -> LR pixels of context each side an output pixel needs
      (local layers only; `fmp_jax.inference` tiles with it).
    min_lr_side: the smallest LR side the module accepts.
    latency_block: ``(x, block_params, dtype) -> y``, one block as `Upscaler` runs it,
      for latency tables (`fmp_jax.profiling.build_table` times a model as the rest plus
      its blocks); None: no latency tables for this backbone.
    prunable_upsampler: whether ``Arch.prune_upsampler`` applies (the upsampler's convs
      can follow the stream's channels).
  """
  name: str
  module: Any
  groups: Callable[["Arch"], list]
  receptive_radius: Callable[["Arch"], int]
  min_lr_side: int = 1
  latency_block: Optional[Callable] = None
  prunable_upsampler: bool = False


# Arch.model -> Backbone, filled by the files of `fmp_jax.models` as they are imported.
BACKBONES: dict[str, Backbone] = {}


def register_backbone(backbone: Backbone) -> Backbone:
  BACKBONES[backbone.name] = backbone
  return backbone


@dataclasses.dataclass(frozen=True)
class Arch:
  """Backbone description.

  Attributes:
    model: a registered backbone (`BACKBONES`): "esrb" or "edsr".
    blocks: number of residual blocks B.
    channels: full width C of the residual stream and block interiors.
    scale: upscaling factor (2, 3 or 4).
    esa_channels: ESRB's ESA width f (ignored by EDSR).
    prune_esa: whether ESA's inner width is a prunable group.
    prune_upsampler: EDSR only: the upsampler convs' outputs follow the
      stream's channels (DHP's ``--prune_upsampler``).
    rgb_range: pixel range the model sees, 1.0 for [0,1] or 255.0.
    widths: after pruning, the kept width of each prunable group (missing
      groups keep their full size). ``None`` means dense.
  """
  model: str = "esrb"
  blocks: int = 6
  channels: int = 256
  scale: int = 2
  esa_channels: int = 16
  prune_esa: bool = False
  prune_upsampler: bool = False
  rgb_range: float = 1.0
  widths: Optional[Mapping[str, int]] = None

  def __post_init__(self):
    if self.model not in BACKBONES:
      raise ArchError(f"Arch.model={self.model!r} is unknown; use one of {tuple(BACKBONES)}.")
    if self.scale not in SCALES:
      raise ArchError(f"Arch.scale={self.scale!r} is not supported; use one of {SCALES}.")
    for field in ("blocks", "channels", "esa_channels"):
      value = getattr(self, field)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ArchError(f"Arch.{field}={value!r} must be a positive integer.")
    if self.prune_upsampler and not self.backbone.prunable_upsampler:
      takers = [b.name.upper() for b in BACKBONES.values() if b.prunable_upsampler]
      raise ArchError(f"Arch.prune_upsampler=True applies to {' and '.join(takers)} only; "
                      f"{self.model.upper()}'s upsampler is never pruned (it writes the output "
                      f"sub-pixels directly).")
    if self.rgb_range <= 0:
      raise ArchError(f"Arch.rgb_range={self.rgb_range!r} must be positive (1.0 or 255.0).")
    if self.widths is not None:
      # Freeze into a sorted tuple-backed dict so Arch stays hashable-friendly.
      widths = dict(self.widths)
      groups = self.groups()
      for name, width in widths.items():
        if name not in groups:
          raise ArchError(f"Arch.widths names unknown group {name!r}; known groups: "
                          f"{sorted(g for g in groups if groups[g].prunable)}.")
        if not groups[name].prunable:
          raise ArchError(f"Arch.widths[{name!r}]: group {name!r} is fixed and cannot be pruned.")
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
          raise ArchError(f"Arch.widths[{name!r}]={width!r} must be a positive integer.")
        if width > groups[name].size:
          raise ArchError(f"Arch.widths[{name!r}]={width} exceeds the group's full size "
                          f"{groups[name].size}.")
      object.__setattr__(self, "widths", _FrozenDict(sorted(widths.items())))

  def __hash__(self):
    return hash(json.dumps(self.to_dict(), sort_keys=True))

  @property
  def backbone(self) -> Backbone:
    """The registered `Backbone` of `model`."""
    return BACKBONES[self.model]

  # --- groups -----------------------------------------------------------------
  def groups(self) -> dict[str, Group]:
    """All channel groups of this architecture at full width."""
    groups = [Group("rgb_in", 3, False), Group("rgb_out", 3, False),
              Group("stream", self.channels, True)] + list(self.backbone.groups(self))
    return {g.name: g for g in groups}

  def tied_groups(self) -> dict[str, Group]:
    """The groups whose channels follow another group's (see the module docstring)."""
    return {name: g for name, g in self.groups().items() if g.tied_to is not None}

  def expand_tied(self, vectors: Mapping[str, Any], xp=np) -> dict[str, Any]:
    """`vectors` (group -> (C,) mask or latent) plus the tied groups' repeated copies."""
    out = dict(vectors)
    for name, g in self.tied_groups().items():
      if g.tied_to in vectors:
        out[name] = xp.repeat(vectors[g.tied_to], g.repeat)
    return out

  def prunable_groups(self) -> list[str]:
    return [name for name, g in self.groups().items() if g.prunable]

  def width(self, group: str) -> int:
    """The built width of `group` (its pruned width if one is set)."""
    g = self.groups()[group]
    if g.tied_to is not None:
      return g.repeat * self.width(g.tied_to)
    if self.widths is not None and group in self.widths:
      return int(self.widths[group])
    return g.size

  @property
  def is_pruned(self) -> bool:
    return bool(self.widths) and any(
        w < self.groups()[g].size for g, w in self.widths.items())

  def dense(self) -> "Arch":
    """The same architecture at full width."""
    return dataclasses.replace(self, widths=None)

  def with_widths(self, widths: Mapping[str, int]) -> "Arch":
    return dataclasses.replace(self, widths=dict(widths))

  # --- serialisation ------------------------------------------------------------
  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["widths"] = None if self.widths is None else dict(self.widths)
    return d

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "Arch":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ArchError(f"Unknown Arch field(s) {unknown}; known fields: {sorted(known)}.")
    d = dict(d)
    if d.get("widths") is not None:
      d["widths"] = {str(k): int(v) for k, v in dict(d["widths"]).items()}
    return cls(**d)

  @classmethod
  def from_config(cls, cfg: Any) -> "Arch":
    """Builds an Arch from a config's `model` section (ConfigDict or dict)."""
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    d.setdefault("model", "esrb")
    if "name" in d:  # configs spell the backbone as model.name
      d["model"] = d.pop("name")
    return cls.from_dict(d)


class _FrozenDict(dict):
  """A dict that refuses mutation, so a frozen Arch stays frozen."""

  def _readonly(self, *args, **kwargs):
    raise TypeError("Arch.widths is read-only; use Arch.with_widths().")

  __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly


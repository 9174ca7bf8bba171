"""The backbone's convolutions as a table, traced from the Flax module itself.

`layer_table(arch)` intercepts every `MaskedConv` call under `jax.eval_shape`
(no FLOPs run), so the counter (`fmp_jax.pruning.complexity`), the slicing and
padding code and the search all read one list of layers that cannot drift
from the model code: path, HWIO kernel at the built widths, the channel groups
it reads and writes, and its output size at the counted input size.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from fmp_jax.arch import Arch
from fmp_jax.models import MaskedConv, build_model

HR_CONVENTION = (720, 1280)  # (height, width) of the HR output the paper counts at


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  """One convolution of the backbone, as the counter and the pruning code see it."""
  path: tuple[str, ...]      # param-tree path, e.g. ("block_0", "conv_a")
  kernel: tuple[int, int, int, int]  # HWIO at the built widths
  in_group: str
  out_group: str
  out_hw: tuple[int, int]    # output spatial size at the counted input size
  strides: int
  padding: str

  @property
  def name(self) -> str:
    return "/".join(self.path)

  @property
  def pixels(self) -> int:
    return self.out_hw[0] * self.out_hw[1]


def lr_size_for(scale: int, hr_hw: tuple[int, int] = HR_CONVENTION) -> tuple[int, int]:
  """LR (height, width) whose x`scale` output covers `hr_hw`: floor(hr/scale)."""
  return hr_hw[0] // scale, hr_hw[1] // scale


@functools.lru_cache(maxsize=64)
def layer_table(arch: Arch, lr_hw: Optional[tuple[int, int]] = None) -> tuple[ConvLayer, ...]:
  """Every conv of `arch` in execution order, traced from the module (no FLOPs run)."""
  lr_hw = tuple(lr_hw) if lr_hw is not None else lr_size_for(arch.scale)
  layers: list[ConvLayer] = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    mod = context.module
    if isinstance(mod, MaskedConv) and context.method_name == "__call__":
      x = args[0]
      k = mod.kernel_size
      layers.append(ConvLayer(
          path=tuple(mod.scope.path), kernel=(k, k, int(x.shape[-1]), int(mod.features)),
          in_group=mod.in_group, out_group=mod.out_group,
          out_hw=(int(out.shape[1]), int(out.shape[2])), strides=mod.strides,
          padding=mod.padding))
    return out

  model = build_model(arch)
  x = jax.ShapeDtypeStruct((1, lr_hw[0], lr_hw[1], 3), jnp.float32)
  with nn.intercept_methods(record):
    jax.eval_shape(model.init, jax.random.key(0), x)
  return tuple(layers)

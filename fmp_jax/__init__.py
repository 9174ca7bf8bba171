"""fmp_jax: Flexible Meta Pruning for lightweight super-resolution in JAX/Flax."""

from fmp_jax.arch import Arch, ArchError
from fmp_jax.models import apply, build_model, init_params
from fmp_jax.export import load, save as save_export

__version__ = "0.1.0"

__all__ = ["Arch", "ArchError", "apply", "build_model", "init_params", "load", "save_export"]

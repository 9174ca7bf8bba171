"""fmp_jax: Flexible Meta Pruning for lightweight super-resolution in JAX/Flax.

    import fmp_jax
    arch = fmp_jax.Arch(model="esrb", blocks=6, channels=256, scale=2)
    params = fmp_jax.init_params(arch)
    result = fmp_jax.prune(params, fmp_jax.Budget(0.085, metric="params"), arch=arch)
    sr = fmp_jax.apply(result.params, result.arch, lr)
"""

from fmp_jax.arch import Arch, ArchError
from fmp_jax.data.errors import DataError
from fmp_jax.export import load, save as save_export
from fmp_jax.finetuning import finetune
from fmp_jax.models import ParamsMismatchError, apply, build_model, init_params
from fmp_jax.pruning.api import PruneResult, prune, prune_family, sparsity_report
from fmp_jax.pruning.budget import Budget
from fmp_jax.pruning.errors import BudgetError, BudgetNotReachedError

__version__ = "0.1.0"

__all__ = ["Arch", "ArchError", "Budget", "BudgetError", "BudgetNotReachedError", "DataError",
           "ParamsMismatchError", "PruneResult", "apply", "build_model", "finetune",
           "init_params", "load", "prune", "prune_family", "save_export", "sparsity_report"]

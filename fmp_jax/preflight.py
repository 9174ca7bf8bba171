"""Everything checked before a driver run trains, then its workdir made ready.

A wrong path, an impossible budget, a schedule longer than the step limit, a batch that
does not split over the devices or a config that disagrees with the run already in the
workdir fails here, in seconds, before anything is compiled or written.
"""

from __future__ import annotations

import os

from fmp_jax import finetuning, sharding
from fmp_jax import workdir as workdir_lib
from fmp_jax.arch import Arch
from fmp_jax.config_base import base_config
from fmp_jax.members import StageBook, is_main
from fmp_jax.models import precision_dtype
from fmp_jax.pruning import search
from fmp_jax.pruning.budget import Budget
from fmp_jax.pruning.settings import SearchSettings


def prepare_workdir(config, workdir: str, restart: bool = False, say=print):
  """Checks everything that can be checked before training, then makes `workdir` ready.

  Nothing is written until every check has passed: a refused run leaves an
  existing workdir untouched and creates none. Returns (arch, budget, mesh,
  book, images); images is None when no training stage is left.
  """
  workdir_lib.check_usable(workdir)
  arch = Arch.from_config(config.model)
  budget = Budget.from_config(config.budget)
  settings = SearchSettings.from_config(config.search)
  search.check_budget_needs_pruning(arch, budget)
  search.check_schedule(settings, int(config.search.max_steps))
  # A latency table is read (device and model checked) and the budget's floor judged now.
  search.check_budget_reachable(arch, budget, settings)
  precision_dtype(config.precision)
  if config.finetune.init not in finetuning.FINETUNE_INITS:
    raise ValueError(f"finetune.init={config.finetune.init!r} is unknown; use one of "
                     f"{finetuning.FINETUNE_INITS}.")
  from fmp_jax import data as data_lib
  data_lib.check_sources(config.data, arch.scale)
  mesh = sharding.make_mesh()
  for stage in ("search", "finetune"):
    sharding.check_batch_size(config[stage].batch_size, mesh, f"{stage}.batch_size")
    sharding.check_reduction_shards(config[stage].reduction_shards, config[stage].batch_size,
                                    mesh, stage)
  neutral = [] if restart else workdir_lib.check_config(workdir, config,
                                                          workdir_lib.config_dict(base_config()))
  book = StageBook(workdir) if not restart else None
  images = None
  if book is None or not {"search", "finetune"} <= set(book.done):
    images = data_lib.training_images(config.data, arch.scale)   # fails here, not mid-run
  if restart and is_main():
    moved = workdir_lib.move_aside(workdir)
    if moved:
      say(f"--restart: moved the previous run to {moved}")
  sharding.sync_processes("workdir_moved")
  if is_main():
    os.makedirs(workdir, exist_ok=True)
    if neutral:
      say("note: continuing this workdir with changes that do not alter the result: "
           + workdir_lib.describe(neutral))
    workdir_lib.write_record(workdir, config)
  sharding.sync_processes("workdir_ready")
  return arch, budget, mesh, book or StageBook(workdir), images

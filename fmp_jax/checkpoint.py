"""Orbax checkpoints of one training stage, resumable and tolerant of a broken latest step.

Each stage (search, finetune) keeps its own manager under
``<workdir>/checkpoints/<stage>``. A checkpoint holds the stage's state pytree
and a small JSON record (the step, which is also the data-loader position,
since batches are a pure function of (seed, step)).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging


class StageCheckpoints:
  """Save/restore for one stage. Paths are made absolute (Orbax requires it)."""

  def __init__(self, directory: str, max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state: Any, record: Optional[dict] = None) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        record=ocp.args.JsonSave(dict(record or {}, step=int(step)))))
    self.manager.wait_until_finished()

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore_latest(self, abstract_state: Any) -> Optional[tuple[int, Any, dict]]:
    """(step, state, record) of the newest readable checkpoint, or None.

    A checkpoint that fails to restore (truncated files, a partial write) is
    reported and the previous one is tried.
    """
    for step in reversed(self.steps()):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), record=ocp.args.JsonRestore()))
        return step, restored["state"], dict(restored["record"])
      except Exception as e:  # Orbax/tensorstore raise many types for damaged files
        logging.warning("checkpoint %s/%d is unreadable (%s: %s); trying the previous one.",
                        self.directory, step, type(e).__name__, str(e).splitlines()[0][:200])
        print(f"warning: checkpoint {self.directory}/{step} is unreadable "
              f"({type(e).__name__}); falling back to the previous one.", flush=True)
    return None

  def close(self) -> None:
    self.manager.close()


def abstract_like(tree: Any, sharding) -> Any:
  """ShapeDtypeStructs carrying `sharding`, the restore target for `tree`."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)

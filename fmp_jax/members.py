"""The driver's bookkeeping: which stages are done (stages.json), and the run's models (one,
or a member per keep of ``search.family``) with the paths and stage names of each."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax

from fmp_jax.pruning import search
from fmp_jax.pruning.budget import Budget


def is_main() -> bool:
  return jax.process_index() == 0


class StageBook:
  """stages.json: which stages are done (written atomically by process 0)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "stages.json")
    self.done: dict = {}
    if os.path.exists(self.path):
      with open(self.path) as f:
        self.done = json.load(f)

  def forget(self, *stages: str) -> None:
    for stage in stages:
      self.done.pop(stage, None)

  def mark(self, stage: str, **info) -> None:
    self.done[stage] = dict(info, finished=time.time())
    if is_main():
      tmp = self.path + ".tmp"
      with open(tmp, "w") as f:
        json.dump(self.done, f, indent=1)
      os.replace(tmp, self.path)


@dataclasses.dataclass(frozen=True)
class Member:
  """One model of the run: the budget's own (the paths as without a family), or a member of
  ``search.family`` (under ``<kind>/keep_0.30/``; the deepest also at export/model.msgpack)."""
  index: int
  budget: Budget
  name: str            # "" without a family
  finetune_steps: int

  def dir(self, kind: str) -> str:
    return os.path.join(kind, self.name) if self.name else kind

  def path(self, kind: str, file: str = "model.msgpack") -> str:
    return os.path.join(self.dir(kind), file)

  def stage(self, stage: str) -> str:
    return f"{stage}/{self.name}" if self.name else stage

  @property
  def label(self) -> str:
    return f" {self.name}" if self.name else ""


def member_name(keep: float) -> str:
  return f"keep_{keep:.2f}" if round(keep, 2) == keep else f"keep_{keep:g}"


def members_of(config, budget: Budget) -> list[Member]:
  """The run's models: search.family's members (each with its fine-tune steps), or the budget."""
  family = tuple(config.search.family)
  budgets = search.family_budgets(budget, family)
  steps = tuple(config.finetune.member_steps)
  if steps and len(steps) != len(budgets):
    raise ValueError(f"finetune.member_steps={steps} needs one entry per member of "
                     f"search.family={family}.")
  return [Member(i, b, member_name(b.keep) if family else "",
                 int(steps[i]) if steps else int(config.finetune.steps))
          for i, b in enumerate(budgets)]

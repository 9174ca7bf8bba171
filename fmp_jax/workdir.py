"""A driver workdir's identity: which config produced it, and whether a rerun may continue it.

``<workdir>/config.json`` holds the config of the run in the workdir. A rerun
continues only when its config agrees in every field that changes the result
(model, budget, search, finetune, training data, seed). Fields that only
change how the run is watched or where it reads from may differ; they are
listed in `NEUTRAL_FIELDS` and the record is updated to the new values.
Anything else raises `WorkdirConflictError` naming the fields, unless the
caller asks to restart, which moves the old run aside first.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Optional

CONFIG_FILE = "config.json"

# Changing these does not change what is trained or how it is scored per image.
# search.max_steps is a cap (the trajectory does not depend on it); data.data_dir
# is where the data lives; eval_* pick which benchmarks are scored (re-scored on change).
NEUTRAL_FIELDS = frozenset({
    "search.log_every", "search.checkpoint_every", "search.max_steps",
    "search.checkpoint_every_minutes", "finetune.checkpoint_every_minutes",
    "finetune.log_every", "finetune.checkpoint_every",
    "data.eval_sets", "data.eval_max_images", "data.data_dir", "distributed",
    "report.measure_latency", "report.latency_repeats", "report.baselines",
})


class WorkdirError(ValueError):
  """The workdir cannot be used (not a folder, not writable, not a run of this project)."""


class WorkdirConflictError(WorkdirError):
  """The workdir holds a run of a config that differs in fields that change the result."""


def config_dict(config) -> dict:
  """The config as plain JSON values (tuples become lists), as stored in config.json."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def differences(recorded: dict, current: dict,
                defaults: Optional[dict] = None) -> list[tuple[str, Any, Any]]:
  """(field, recorded value, current value) for every field that differs.

  A field missing from `recorded` (added to the schema after the run started)
  is compared with its value in `defaults`, the schema's default.
  """
  old, new = _flatten(recorded), _flatten(current)
  base = _flatten(defaults or {})
  out = []
  for key in sorted(set(old) | set(new)):
    was = old.get(key, base.get(key))
    if key not in old and key not in base:
      continue
    if was != new.get(key):
      out.append((key, was, new.get(key)))
  return out


def read_record(workdir: str) -> Optional[dict]:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirError(f"{path} is unreadable ({type(e).__name__}: {e}); rerun with --restart "
                       "to move this run aside and start over.") from e


def check_usable(workdir: str) -> None:
  """Raises WorkdirError unless `workdir` is, or can become, a folder of this project's runs."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir {workdir} is a file, not a folder; pick a folder path.")
  parent = workdir
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.access(parent, os.W_OK | os.X_OK):
    raise WorkdirError(f"--workdir {workdir}: {parent} is not writable.")
  if os.path.isdir(workdir) and os.listdir(workdir) and read_record(workdir) is None:
    entries = sorted(os.listdir(workdir))
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    raise WorkdirError(f"--workdir {workdir} is not empty ({shown}) and holds no {CONFIG_FILE}, so "
                       "it is not a run of fmp_jax.main; pick a new or empty folder.")


def describe(diffs: list[tuple[str, Any, Any]]) -> str:
  return "; ".join(f"{k}: {json.dumps(a)} in the workdir, {json.dumps(b)} now" for k, a, b in diffs)


def check_config(workdir: str, config, defaults: dict) -> list[tuple[str, Any, Any]]:
  """The neutral differences between `config` and the workdir's record (raises on others)."""
  recorded = read_record(workdir)
  if recorded is None:
    return []
  diffs = differences(recorded, config_dict(config), defaults)
  changing = [d for d in diffs if d[0] not in NEUTRAL_FIELDS]
  if changing:
    raise WorkdirConflictError(
        f"{workdir} holds a run of another configuration; these fields differ: "
        f"{describe(changing)}. Use another --workdir, or rerun with --restart to move the old "
        f"run aside (to {workdir}.replaced-<time>) and start over.")
  return diffs


def move_aside(workdir: str) -> Optional[str]:
  """Renames an existing, non-empty `workdir` to `<workdir>.replaced-<time>`; returns the new path."""
  if not os.path.isdir(workdir) or not os.listdir(workdir):
    return None
  target = f"{workdir.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
  n = 1
  while os.path.exists(target):
    n += 1
    target = f"{workdir.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
  shutil.move(workdir, target)
  return target


def write_record(workdir: str, config) -> None:
  path = os.path.join(workdir, CONFIG_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(config_dict(config), f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def model_file(path: str) -> str:
  """The export file `path` names: the file itself, or the model a driver workdir holds
  (export/, else finetuned/, else pruned/ model.msgpack). Raises WorkdirError naming it."""
  if os.path.isdir(path):
    for candidate in ("export/model.msgpack", "finetuned/model.msgpack", "pruned/model.msgpack",
                      "model.msgpack"):
      if os.path.isfile(os.path.join(path, candidate)):
        return os.path.join(path, candidate)
    raise WorkdirError(f"{path}: a folder without export/model.msgpack (nor finetuned/, "
                       f"pruned/); give the .msgpack file written by the driver or "
                       f"fmp_jax.save_export.")
  if not os.path.isfile(path):
    raise WorkdirError(f"{path}: no such model file (give an export written by "
                       f"fmp_jax.save_export / the training driver, or the driver's workdir).")
  return path

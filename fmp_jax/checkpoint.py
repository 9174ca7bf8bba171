"""Orbax checkpoints of one training stage, resumable and tolerant of a broken latest step.

Each stage (search, finetune) keeps its own manager under
``<workdir>/checkpoints/<stage>``. A checkpoint holds the stage's state pytree
and a small JSON record (the step, which is also the data-loader position,
since batches are a pure function of (seed, step)).

Next to each step, ``<workdir>/checkpoints/<stage>.manifest/<step>.json``
records the size and SHA-256 of every file Orbax wrote and the state's
signature (every leaf's path, shape and dtype). Restoring checks the
manifest first, so that

* a damaged step (truncated or missing files) is found without handing it to
  Orbax, moved aside to ``<workdir>/checkpoints/unreadable/`` with one warning,
  and the previous step is tried; new saves at that step number then land;
* a step written for another model (a different signature) is refused with
  `CheckpointMismatchError` ("belongs to another configuration"), not
  mistaken for damage and not touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Any, Callable, Optional

import jax
import orbax.checkpoint as ocp

from fmp_jax.sharding import sync_processes

MANIFEST_VERSION = 1


class CheckpointMismatchError(ValueError):
  """A checkpoint holds a state of another shape: it was written by another configuration."""


def signature(tree: Any) -> dict[str, str]:
  """{leaf path: "shape dtype"} of a pytree of arrays or ShapeDtypeStructs."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): f"{tuple(leaf.shape)} {jax.numpy.dtype(leaf.dtype).name}"
          for path, leaf in leaves}


def _file_digests(root: str) -> dict[str, list]:
  out = {}
  for folder, _, files in os.walk(root):
    for name in sorted(files):
      path = os.path.join(folder, name)
      h = hashlib.sha256()
      with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
          h.update(chunk)
      out[os.path.relpath(path, root)] = [os.path.getsize(path), h.hexdigest()]
  return out


def _signature_diff(saved: dict, now: dict, limit: int = 3) -> str:
  lines = []
  for key in sorted(set(saved) | set(now)):
    if saved.get(key) != now.get(key):
      lines.append(f"{key or '<root>'}: saved {saved.get(key, 'absent')}, "
                   f"now {now.get(key, 'absent')}")
  more = f" (and {len(lines) - limit} more)" if len(lines) > limit else ""
  return "; ".join(lines[:limit]) + more


class StageCheckpoints:
  """Save/restore for one stage. Paths are made absolute (Orbax requires it).

  Args:
    directory: ``<workdir>/checkpoints/<stage>``.
    max_to_keep: steps kept on disk.
    warn: prints one warning line (the driver passes its process-0 printer).
  """

  def __init__(self, directory: str, max_to_keep: int = 3,
               warn: Optional[Callable[[str], None]] = None):
    self.directory = os.path.abspath(directory)
    self.manifest_dir = self.directory + ".manifest"
    self.aside_dir = os.path.join(os.path.dirname(self.directory), "unreadable")
    self.max_to_keep = max_to_keep
    self._warn = warn or (lambda msg: print(msg, flush=True))
    self.manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=self.max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(self.directory, options=options)

  def _manifest_path(self, step: int) -> str:
    return os.path.join(self.manifest_dir, f"{int(step)}.json")

  def save(self, step: int, state: Any, record: Optional[dict] = None) -> None:
    """Saves `state` at `step`, replacing a checkpoint already at that step."""
    step = int(step)
    if step in self.manager.all_steps():
      # Orbax skips saves at an existing step; the newer state must win.
      self.manager.delete(step)
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        record=ocp.args.JsonSave(dict(record or {}, step=step))),
        force=True)
    self.manager.wait_until_finished()
    if jax.process_index() == 0:
      self._write_manifest(step, signature(state))

  def _write_manifest(self, step: int, sig: dict) -> None:
    os.makedirs(self.manifest_dir, exist_ok=True)
    manifest = {"version": MANIFEST_VERSION, "step": step, "signature": sig,
                "files": _file_digests(os.path.join(self.directory, str(step)))}
    tmp = self._manifest_path(step) + ".tmp"
    with open(tmp, "w") as f:
      json.dump(manifest, f, indent=0, sort_keys=True)
    os.replace(tmp, self._manifest_path(step))
    kept = {str(s) for s in self.manager.all_steps()}
    for name in os.listdir(self.manifest_dir):   # manifests of steps Orbax has rotated out
      if name.endswith(".json") and name[:-5] not in kept:
        os.remove(os.path.join(self.manifest_dir, name))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def _check(self, step: int, expected_sig: dict) -> Optional[str]:
    """None if `step` looks whole; else why it is unreadable. Raises on a foreign state."""
    path = self._manifest_path(step)
    if not os.path.exists(path):
      return None   # written without a manifest: left to Orbax to judge
    try:
      with open(path) as f:
        manifest = json.load(f)
    except (OSError, ValueError) as e:
      return f"its manifest {path} is unreadable ({type(e).__name__})"
    if manifest.get("signature") != expected_sig:
      raise CheckpointMismatchError(
          f"checkpoint {self.directory}/{step} belongs to another configuration (its state "
          f"differs from this run's: {_signature_diff(manifest.get('signature', {}), expected_sig)}). "
          "Use another workdir, or start this one over (fmp_jax.main --restart).")
    found = _file_digests(os.path.join(self.directory, str(step)))
    for name, (size, digest) in manifest.get("files", {}).items():
      if name not in found:
        return f"{name} is missing"
      if found[name][0] != size:
        return f"{name} has {found[name][0]} bytes, {size} were written"
      if found[name][1] != digest:
        return f"{name} does not match the checksum written with it"
    return None

  def _move_aside(self, step: int, why: str) -> None:
    target = os.path.join(self.aside_dir,
                          f"{os.path.basename(self.directory)}-{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    if jax.process_index() == 0:
      os.makedirs(self.aside_dir, exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)), target)
      if os.path.exists(self._manifest_path(step)):
        os.remove(self._manifest_path(step))
    sync_processes(f"checkpoint_move_aside_{step}")
    self._warn(f"warning: checkpoint {self.directory}/{step} is unreadable ({why}); moved it to "
               f"{target} and resuming from the previous one.")
    self.manager.close()
    self.manager = self._open()

  def restore_latest(self, abstract_state: Any) -> Optional[tuple[int, Any, dict]]:
    """(step, state, record) of the newest readable checkpoint, or None.

    A damaged step is moved aside and the previous one is tried.
    Raises:
      CheckpointMismatchError: the newest step holds a state of other shapes.
    """
    expected = signature(abstract_state)
    for step in reversed(self.steps()):
      why = self._check(step, expected)
      if why is None:
        try:
          restored = self.manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state), record=ocp.args.JsonRestore()))
          return step, restored["state"], dict(restored["record"])
        except Exception as e:  # Orbax/tensorstore raise many types for damaged files
          why = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
      self._move_aside(step, why)
    return None

  def close(self) -> None:
    self.manager.close()


def abstract_like(tree: Any, sharding) -> Any:
  """ShapeDtypeStructs carrying `sharding`, the restore target for `tree`."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)

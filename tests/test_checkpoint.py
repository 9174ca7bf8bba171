"""Stage checkpoints: round trip, damaged steps moved aside, saves that always land, foreign states refused."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from fmp_jax.checkpoint import CheckpointMismatchError, StageCheckpoints


def state(v, n=4):
  return {"w": jnp.full((3, n), v, jnp.float32), "step": jnp.asarray(int(v), jnp.int32)}


def abstract(n=4):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state(0.0, n))


def files_of(root):
  return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
          for d, _, fs in os.walk(root) for f in fs}


def truncate_data_files(step_dir):
  hit = 0
  for root, _, files in os.walk(step_dir):
    if os.path.basename(root) == "d":   # tensorstore's data chunks
      for name in files:
        open(os.path.join(root, name), "wb").close()
        hit += 1
  assert hit, "no data files found to damage"


def test_round_trip(tmp_path):
  ckpts = StageCheckpoints(str(tmp_path / "ck"))
  ckpts.save(1, state(1.0), {"note": "first"})
  ckpts.save(2, state(2.0))
  step, restored, record = ckpts.restore_latest(abstract())
  assert step == 2 and record["step"] == 2
  np.testing.assert_array_equal(restored["w"], np.full((3, 4), 2.0))
  ckpts.close()


@pytest.mark.parametrize("damage", ["truncate", "garbage_everywhere"])
def test_damaged_step_is_moved_aside_once_and_new_save_lands(tmp_path, capfd, damage):
  ckpts = StageCheckpoints(str(tmp_path / "ck"))
  ckpts.save(1, state(1.0), {"note": "first"})
  ckpts.save(2, state(2.0))
  ckpts.close()
  if damage == "truncate":
    truncate_data_files(tmp_path / "ck" / "2")
  else:   # every file of the step overwritten, as a crash mid-write could leave it
    for root, _, files in os.walk(tmp_path / "ck" / "2"):
      for name in files:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"\x00garbage")
  capfd.readouterr()

  ckpts = StageCheckpoints(str(tmp_path / "ck"))
  step, restored, record = ckpts.restore_latest(abstract())
  assert step == 1 and record["note"] == "first"
  np.testing.assert_array_equal(restored["w"], np.full((3, 4), 1.0))
  out, err = capfd.readouterr()
  assert out.count("warning:") == 1 and "is unreadable" in out and "unreadable" not in err, (out, err)
  assert "Traceback" not in err and "Event loop is closed" not in err, err
  # Moved aside, not deleted: the damaged bytes are kept for inspection.
  aside = os.listdir(tmp_path / "unreadable")
  assert len(aside) == 1 and aside[0].startswith("ck-2-")
  assert ckpts.steps() == [1]

  # The rerun's save at the same step number lands and restores.
  ckpts.save(2, state(7.0))
  ckpts.close()
  step, restored, _ = StageCheckpoints(str(tmp_path / "ck")).restore_latest(abstract())
  assert step == 2
  np.testing.assert_array_equal(restored["w"], np.full((3, 4), 7.0))


def test_save_at_existing_step_replaces_it(tmp_path):
  ckpts = StageCheckpoints(str(tmp_path / "ck"))
  ckpts.save(5, state(1.0), {"converged": False})
  ckpts.save(5, state(3.0), {"converged": True})
  step, restored, record = ckpts.restore_latest(abstract())
  assert step == 5 and record["converged"] is True
  np.testing.assert_array_equal(restored["w"], np.full((3, 4), 3.0))


def test_checkpoint_of_other_shapes_belongs_to_another_configuration(tmp_path):
  ckpts = StageCheckpoints(str(tmp_path / "ck"))
  ckpts.save(3, state(1.0, n=4))
  ckpts.close()
  before = files_of(tmp_path)
  with pytest.raises(CheckpointMismatchError, match=r"another configuration.*\['w'\].*\(3, 4\).*\(3, 6\)"):
    StageCheckpoints(str(tmp_path / "ck")).restore_latest(abstract(n=6))
  assert files_of(tmp_path) == before   # refused, nothing moved or deleted


def test_old_manifests_are_rotated_with_their_steps(tmp_path):
  ckpts = StageCheckpoints(str(tmp_path / "ck"), max_to_keep=2)
  for s in (1, 2, 3):
    ckpts.save(s, state(float(s)))
  assert ckpts.steps() == [2, 3]
  assert sorted(os.listdir(tmp_path / "ck.manifest")) == ["2.json", "3.json"]


# What only the manifest can catch: damage that keeps every file's size, or that Orbax would
# restore without complaint. A weight big enough for tensorstore to write it in its own data
# file (small arrays are inlined in the b-tree nodes, whose own checks catch any flip).
BIG = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)


def big_state(v):
  return {"w": jnp.asarray(BIG * v), "step": jnp.asarray(int(v), jnp.int32)}


def big_abstract():
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), big_state(1.0))


def two_steps(tmp_path):
  """Steps 1 and 2 of `big_state` under tmp_path/ck, closed; returns step 2's folder."""
  ckpts = StageCheckpoints(str(tmp_path / "ck"))
  ckpts.save(1, big_state(1.0), {"note": "first"})
  ckpts.save(2, big_state(2.0))
  ckpts.close()
  return tmp_path / "ck" / "2"


def largest_data_file(step_dir):
  """(path relative to step_dir, absolute path) of the step's biggest tensorstore data chunk."""
  chunks = [os.path.join(root, name) for root, _, files in os.walk(step_dir)
            if os.path.basename(root) == "d" for name in files]
  path = max(chunks, key=os.path.getsize)
  return os.path.relpath(path, step_dir), path


def assert_step_2_moved_aside_for(tmp_path, capfd, reason):
  """Restoring finds step 2 damaged for `reason` (a regex), warns once, moves it aside, restores 1."""
  capfd.readouterr()
  ckpts = StageCheckpoints(str(tmp_path / "ck"))
  step, restored, record = ckpts.restore_latest(big_abstract())
  out, err = capfd.readouterr()
  assert step == 1 and record["note"] == "first"
  np.testing.assert_array_equal(restored["w"], BIG)
  assert out.count("warning:") == 1, (out, err)
  assert re.search(r"checkpoint \S+/2 is unreadable \(" + reason + r"\); moved it to", out), out
  assert "Traceback" not in err, err
  aside = os.listdir(tmp_path / "unreadable")
  assert len(aside) == 1 and aside[0].startswith("ck-2-")
  assert ckpts.steps() == [1] and not (tmp_path / "ck.manifest" / "2.json").exists()
  ckpts.close()


def test_same_size_bit_flip_is_a_checksum_mismatch(tmp_path, capfd):
  step_dir = two_steps(tmp_path)
  name, path = largest_data_file(step_dir)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0x01
  with open(path, "wb") as f:
    f.write(data)
  # Orbax itself restores the flipped step without complaint, values silently changed.
  manager = ocp.CheckpointManager(str(tmp_path / "ck"))
  silent = manager.restore(2, args=ocp.args.Composite(state=ocp.args.StandardRestore(big_abstract())))
  manager.close()
  assert not np.array_equal(silent["state"]["w"], BIG * 2.0)
  assert_step_2_moved_aside_for(tmp_path, capfd,
                                re.escape(f"{name} does not match the checksum written with it"))


def test_missing_file_is_named(tmp_path, capfd):
  step_dir = two_steps(tmp_path)
  name, path = largest_data_file(step_dir)
  os.remove(path)
  assert_step_2_moved_aside_for(tmp_path, capfd, re.escape(f"{name} is missing"))


def test_unreadable_manifest_is_named(tmp_path, capfd):
  two_steps(tmp_path)
  manifest = tmp_path / "ck.manifest" / "2.json"
  json.loads(manifest.read_text())   # whole before the damage
  manifest.write_text(manifest.read_text()[:40])   # cut mid-object
  # The step's own files are intact: without its manifest Orbax would restore it.
  assert_step_2_moved_aside_for(
      tmp_path, capfd, r"its manifest \S+/ck\.manifest/2\.json is unreadable \(JSONDecodeError\)")

"""Stage checkpoints: round trip, and a damaged latest step falls back to the previous one."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from fmp_jax.checkpoint import StageCheckpoints


def state(v):
  return {"w": jnp.full((3, 4), v, jnp.float32), "step": jnp.asarray(int(v), jnp.int32)}


def test_round_trip_and_fallback_on_damage(tmp_path, capsys):
  ckpts = StageCheckpoints(str(tmp_path / "ck"))
  ckpts.save(1, state(1.0), {"note": "first"})
  ckpts.save(2, state(2.0))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state(0.0))
  step, restored, record = ckpts.restore_latest(abstract)
  assert step == 2 and record["step"] == 2
  np.testing.assert_array_equal(restored["w"], np.full((3, 4), 2.0))
  ckpts.close()

  # Damage every data file of step 2 (as a crash mid-write or disk corruption would).
  for root, _, files in os.walk(tmp_path / "ck" / "2"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\x00garbage")
  ckpts = StageCheckpoints(str(tmp_path / "ck"))
  step, restored, record = ckpts.restore_latest(abstract)
  assert step == 1 and record["note"] == "first"
  np.testing.assert_array_equal(restored["w"], np.full((3, 4), 1.0))
  assert "unreadable" in capsys.readouterr().out

"""The driver's cheap error paths: each run refuses its input within seconds, leaving nothing behind.

In the default test set (tests/test_driver.py, the end-to-end runs, is all slow).
"""

import subprocess
import sys

import pytest

from test_driver import run_main, tree_hashes


def test_missing_workdir_is_one_clear_line(repo_root):
  out = subprocess.run([sys.executable, "-m", "fmp_jax.main", "--config=configs/tiny.py"],
                       cwd=repo_root, capture_output=True, text=True, timeout=120)
  assert out.returncode != 0 and "--workdir" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("overrides, needle", [
    (["--config.serch.lr=0.1"], "serch"),
    (["--config.data.train=/no/such/folder"], "/no/such/folder"),
    (["--config.budget.keep=1.0"], "already met"),
    (["--config.budget.criterion=fast"], "fast"),
    (["--config.data.eval_sets=('Set5',)", "--config.data.data_dir=/nonexistent"],
     "data.eval_sets: /nonexistent: no such data directory"),
    (["--config.data.eval_sets=('bundled','Set14')"], "'Set14' needs a data directory"),
    # The schedule reaches the budget at pace_steps=400: a shorter run could never land.
    (["--config.search.max_steps=3"], "search.max_steps=3 ends before the schedule reaches "
                                      "the budget at search.pace_steps=400"),
    (["--config.finetune.init=pretrained"], "finetune.init='pretrained' is unknown"),
])
def test_bad_input_fails_fast_and_leaves_no_workdir(repo_root, tmp_path, overrides, needle):
  # The timeout only stops a run that hangs; no test here asserts a duration.
  out = run_main(repo_root, tmp_path / "w", *overrides, timeout=120)
  assert out.returncode != 0
  assert needle in out.stderr and "Traceback" not in out.stderr, out.stderr
  assert not (tmp_path / "w").exists()   # refused before the workdir is created


def test_workdir_that_is_a_file_or_a_foreign_folder_is_refused(repo_root, tmp_path):
  (tmp_path / "file").write_text("x")
  out = run_main(repo_root, tmp_path / "file", timeout=120)
  assert out.returncode != 0 and "is a file, not a folder" in out.stderr, out.stderr
  foreign = tmp_path / "photos"
  foreign.mkdir()
  (foreign / "holiday.jpg").write_bytes(b"...")
  before = tree_hashes(foreign)
  out = run_main(repo_root, foreign, timeout=120)
  assert out.returncode != 0 and "not a run of fmp_jax.main" in out.stderr, out.stderr
  assert tree_hashes(foreign) == before


def test_eval_sets_typed_with_commas_are_several_sets_and_every_missing_one_is_named(
    repo_root, tmp_path):
  (tmp_path / "data" / "Set5" / "HR").mkdir(parents=True)
  out = run_main(repo_root, tmp_path / "w", "--config.data.eval_sets=Set5,Set14, Urban100",
                 f"--config.data.data_dir={tmp_path / 'data'}", timeout=120)
  assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
  # One error for all three sets (Set5's folder holds no images), one prefix.
  assert "data.eval_sets: 3 of 3 set(s) cannot be read" in out.stderr, out.stderr
  for name in ("Set5", "'Set14'", "'Urban100'"):
    assert name in out.stderr
  assert out.stderr.startswith("fmp_jax.main: error:"), out.stderr
  typo = run_main(repo_root, tmp_path / "w", "--config.serch.lr=0.1", timeout=120)
  assert typo.stderr.startswith("fmp_jax.main: error: bad config override"), typo.stderr


def test_eval_set_names_read_the_tuple_and_the_typed_forms():
  import ml_collections
  from fmp_jax.data import eval_set_names
  for value, expected in ((("Set5", "Set14"), ("Set5", "Set14")), ("Set5,Set14", ("Set5", "Set14")),
                          (("Set5,B100", " bundled "), ("Set5", "B100", "bundled")), ((), ())):
    assert eval_set_names(ml_collections.ConfigDict({"eval_sets": value})) == expected


def test_an_unknown_config_preset_is_one_line(repo_root, tmp_path):
  out = subprocess.run([sys.executable, "-m", "fmp_jax.main", "--config=configs/x2.py:smok",
                        f"--workdir={tmp_path / 'w'}"], cwd=repo_root, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
  assert "unknown config preset 'smok'" in out.stderr and "configs/x2.py:smoke" in out.stderr

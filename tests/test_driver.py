"""The training driver end to end on configs/tiny.py, resumability, and its error paths."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import fmp_jax
from fmp_jax import export

pytestmark = pytest.mark.slow


def run_main(repo_root, workdir, *overrides, timeout=600, wait=True):
  cmd = [sys.executable, "-m", "fmp_jax.main", "--config=configs/tiny.py",
         f"--workdir={workdir}", *overrides]
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  if not wait:
    return subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  return subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True,
                        timeout=timeout)


@pytest.fixture(scope="module")
def finished_run(repo_root, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("tiny_run")
  out = run_main(repo_root, workdir)
  assert out.returncode == 0, out.stdout + out.stderr
  return workdir, out.stdout


def test_every_stage_runs_and_report_matches_counter(repo_root, finished_run):
  workdir, stdout = finished_run
  stages = json.loads((workdir / "stages.json").read_text())
  assert set(stages) == {"search", "finetune", "evaluate", "export"}
  report = json.loads((workdir / "report.json").read_text())
  assert "FMP result" in stdout and "bicubic" in stdout
  # The export loads without the training code and its counts agree with tools/count.py.
  path = workdir / "export" / "model.msgpack"
  model = fmp_jax.load(str(path))
  counted = subprocess.run([sys.executable, "tools/count.py", "--export", str(path), "--json"],
                           cwd=repo_root, capture_output=True, text=True, check=True)
  counts = json.loads(counted.stdout)
  assert (counts["params"], counts["flops"]) == (report["pruned"]["params"], report["pruned"]["flops"])
  assert counts["flops_ratio"] <= report["budget"]["keep"] + 1e-9
  assert model.arch.is_pruned
  lr = np.random.default_rng(0).random((1, 21, 17, 3), dtype=np.float32)
  assert fmp_jax.apply(model.params, model.arch, lr).shape == (1, 42, 34, 3)
  for name in ("loss.png", "remaining.png"):
    assert (workdir / "plots" / name).stat().st_size > 1000
  assert (workdir / "metrics.jsonl").read_text().count("\n") > 3


def test_rerun_of_finished_workdir_does_nothing_new(repo_root, finished_run):
  workdir, _ = finished_run
  before = (workdir / "export" / "model.msgpack").read_bytes()
  out = run_main(repo_root, workdir)
  assert out.returncode == 0, out.stderr
  assert "[search] step" not in out.stdout and "[finetune] step" not in out.stdout
  after = fmp_jax.load(str(workdir / "export" / "model.msgpack"))
  jax.tree.map(np.testing.assert_array_equal, export.load(str(workdir / "export" / "model.msgpack")).params,
               after.params)
  assert len(before) > 0


def test_kill_and_resume_reaches_same_params(repo_root, finished_run, tmp_path):
  reference = fmp_jax.load(str(finished_run[0] / "export" / "model.msgpack"))
  workdir = tmp_path / "killed"
  proc = run_main(repo_root, workdir, wait=False)
  ckpt_dir = workdir / "checkpoints" / "search"
  deadline = time.time() + 300
  # Wait for the second search checkpoint, then kill the process without warning.
  while time.time() < deadline:
    steps = [int(p.name) for p in ckpt_dir.glob("*") if p.name.isdigit()] if ckpt_dir.exists() else []
    if len(steps) >= 2 or proc.poll() is not None:
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run finished before it could be interrupted"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (workdir / "export").exists()
  out = run_main(repo_root, workdir)
  assert out.returncode == 0, out.stdout + out.stderr
  assert "resuming from checkpoint" in out.stdout
  resumed = fmp_jax.load(str(workdir / "export" / "model.msgpack"))
  assert resumed.arch == reference.arch
  jax.tree.map(np.testing.assert_array_equal, resumed.params, reference.params)


def test_missing_workdir_is_one_clear_line(repo_root):
  out = subprocess.run([sys.executable, "-m", "fmp_jax.main", "--config=configs/tiny.py"],
                       cwd=repo_root, capture_output=True, text=True, timeout=120)
  assert out.returncode != 0 and "--workdir" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("override, needle", [
    ("--config.serch.lr=0.1", "serch"),
    ("--config.data.train=/no/such/folder", "/no/such/folder"),
    ("--config.budget.keep=1.0", "already met"),
    ("--config.budget.criterion=fast", "fast"),
])
def test_bad_input_is_one_clear_line(repo_root, tmp_path, override, needle):
  out = run_main(repo_root, tmp_path / "w", override, timeout=300)
  assert out.returncode != 0
  assert needle in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_nan_loss_stops_with_message_and_keeps_checkpoint(repo_root, tmp_path):
  workdir = tmp_path / "nan"
  out = run_main(repo_root, workdir, "--config.search.lr=1e30", "--config.search.checkpoint_every=1",
                 timeout=300)
  assert out.returncode != 0
  assert "loss is nan" in out.stderr.lower() or "loss is inf" in out.stderr.lower(), out.stderr
  assert "Traceback" not in out.stderr

"""The driver with search.family: every member fine-tuned, scored, exported; resumable bit for bit."""

import json
import signal
import time

import fmp_jax
import jax
import numpy as np
import pytest

from test_driver import run_main
from test_multiprocess import launch

FAMILY = "--config.search.family=(0.7,0.5)"
pytestmark = pytest.mark.slow


def exports(workdir):
  return {name: (workdir / "export" / name / "model.msgpack").read_bytes()
          for name in ("keep_0.70", "keep_0.50")}


@pytest.fixture(scope="module")
def family_run(repo_root, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("family")
  out = run_main(repo_root, workdir, FAMILY, timeout=900)
  assert out.returncode == 0, out.stdout + out.stderr
  return workdir, out.stdout


def test_every_member_is_finetuned_scored_and_exported(family_run):
  workdir, stdout = family_run
  report = json.loads((workdir / "report.json").read_text())
  rows = report["family"]
  assert [r["member"] for r in rows] == ["keep_0.70", "keep_0.50"]
  for row, keep in zip(rows, (0.7, 0.5)):
    assert keep - 0.03 <= row["flops_ratio"] <= keep + 1e-9
    assert row["eval"]["bundled"]["psnr"] > 0 and "latency_measured" in row
    model = fmp_jax.load(str(workdir / "export" / row["member"] / "model.msgpack"))
    assert model.meta["report"]["pruned"]["params"] == row["pruned"]["params"]
  assert rows[0]["search_steps"] < rows[1]["search_steps"]
  # The deepest member is also the run's export, as without a family.
  assert ((workdir / "export" / "model.msgpack").read_bytes()
          == exports(workdir)["keep_0.50"])
  assert "family (one search" in (workdir / "report.txt").read_text()
  assert (workdir / "plots" / "family.png").stat().st_size > 1000
  # Each member's stages are recorded on their own (a stop after a member keeps it).
  stages = json.loads((workdir / "stages.json").read_text())
  for name in ("keep_0.70", "keep_0.50"):
    assert {f"finetune/{name}", f"evaluate/{name}", f"export/{name}"} <= set(stages)


def test_kill_mid_search_after_the_first_member_and_resume(repo_root, family_run, tmp_path):
  workdir = tmp_path / "killed"
  proc = run_main(repo_root, workdir, FAMILY, wait=False)
  member = workdir / "pruned" / "keep_0.70" / "model.msgpack"
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None and not member.exists():
    time.sleep(0.05)
  time.sleep(3)          # a search checkpoint or two past the member
  assert proc.poll() is None, "the run finished before it could be interrupted"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  out = run_main(repo_root, workdir, FAMILY, timeout=900)
  assert out.returncode == 0, out.stdout + out.stderr
  assert "resuming from checkpoint" in out.stdout
  assert exports(workdir) == exports(family_run[0])


def test_two_processes_reach_the_one_process_family_bit_for_bit(repo_root, family_run, tmp_path):
  two = launch(repo_root, 2, "--config=configs/tiny.py", f"--workdir={tmp_path / 'two'}", FAMILY)
  assert two.returncode == 0, two.stdout + two.stderr
  for name in ("keep_0.70", "keep_0.50"):
    a = fmp_jax.load(str(family_run[0] / "export" / name / "model.msgpack"))
    b = fmp_jax.load(str(tmp_path / "two" / "export" / name / "model.msgpack"))
    assert dict(a.arch.widths) == dict(b.arch.widths)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)

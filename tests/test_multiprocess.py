"""The pod path on one machine: real separate processes (Gloo on CPU) through tools/launch_local.py."""

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
from fmp_jax.data import PatchSampler, bundled_images
from fmp_jax.data import sampler as sampler_lib


def launch(repo_root, n, *args, timeout=900, wait=True, env=None):
  cmd = [sys.executable, "tools/launch_local.py", "--processes", str(n), "--", *args]
  env = dict(os.environ if env is None else env, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  if not wait:
    return subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  return subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True,
                        timeout=timeout)


def driver(repo_root, *args, timeout=300, env_extra=None):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", **(env_extra or {}))
  return subprocess.run([sys.executable, "-m", "fmp_jax.main", "--config=configs/tiny.py", *args],
                        cwd=repo_root, env=env, capture_output=True, text=True, timeout=timeout)


# --- per-host data ----------------------------------------------------------------------

@pytest.mark.parametrize("processes", [2, 4])
def test_each_process_builds_only_its_rows_of_the_same_global_batch(monkeypatch, processes):
  images = list(bundled_images("train").values())[:3]
  whole = PatchSampler(images, 2, 12, 8, seed=5)
  crops = []
  real = sampler_lib.augment_pair
  monkeypatch.setattr(sampler_lib, "augment_pair",
                      lambda *a: crops.append(1) or real(*a))
  for step in (0, 7):
    parts = []
    for i in range(processes):
      crops.clear()
      part = PatchSampler(images, 2, 12, 8, seed=5, process_index=i, process_count=processes)
      parts.append(part.batch(step))
      assert len(crops) == 8 // processes   # only its rows are cut, never the whole batch
    lr, hr = whole.batch(step)
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), lr)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), hr)


# --- bad input: fails fast with one clear line -------------------------------------------

def test_process_id_out_of_range(repo_root, tmp_path):
  out = driver(repo_root, f"--workdir={tmp_path / 'w'}", "--config.distributed=True",
               env_extra=dict(JAX_COORDINATOR_ADDRESS="127.0.0.1:1", JAX_NUM_PROCESSES="2",
                              JAX_PROCESS_ID="2"))
  assert out.returncode != 0
  assert "process id 2 is out of range for 2 processes" in out.stderr, out.stderr
  assert "Traceback" not in out.stderr


def test_coordinator_that_never_comes_up_is_an_error_not_a_hang(repo_root, tmp_path):
  import socket
  with socket.socket() as s:   # a port nobody listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  t0 = time.time()
  out = driver(repo_root, f"--workdir={tmp_path / 'w'}", "--config.distributed=True",
               "--distributed_timeout=5", timeout=120,
               env_extra=dict(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                              JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1"))
  assert out.returncode != 0
  assert f"no coordinator answered at 127.0.0.1:{port} within 5 s" in out.stderr, out.stderr
  assert time.time() - t0 < 60


@pytest.mark.slow
def test_global_batch_not_divisible_by_the_devices(repo_root, tmp_path):
  out = launch(repo_root, 2, "--config=configs/tiny.py", f"--workdir={tmp_path / 'w'}",
               "--config.search.batch_size=3", timeout=300)
  assert out.returncode != 0
  assert "search.batch_size=3 is not divisible by the 2 devices (2 processes)" in out.stdout, \
      out.stdout + out.stderr
  assert not (tmp_path / "w").exists()


# --- the real driver as 2 processes -------------------------------------------------------

@pytest.fixture(scope="module")
def one_and_two_process_runs(repo_root, tmp_path_factory):
  root = tmp_path_factory.mktemp("mp")
  one = driver(repo_root, f"--workdir={root / 'one'}", timeout=900)
  assert one.returncode == 0, one.stdout + one.stderr
  two = launch(repo_root, 2, "--config=configs/tiny.py", f"--workdir={root / 'two'}")
  assert two.returncode == 0, two.stdout + two.stderr
  return root, one.stdout, two.stdout


@pytest.mark.slow
def test_two_processes_reach_the_one_process_export_bit_for_bit(one_and_two_process_runs):
  """configs/tiny.py sums its batches over 4 fixed micro-shards (reduction_shards), so the
  2-process run takes the very steps of the 1-process run: same widths, same params."""
  root, _, _ = one_and_two_process_runs
  one = fmp_jax.load(str(root / "one" / "export" / "model.msgpack"))
  two = fmp_jax.load(str(root / "two" / "export" / "model.msgpack"))
  assert dict(two.arch.widths) == dict(one.arch.widths)
  jax.tree.map(np.testing.assert_array_equal, two.params, one.params)
  jax.tree.map(np.testing.assert_array_equal, two.masks, one.masks)
  reports = [json.loads((root / w / "report.json").read_text()) for w in ("one", "two")]
  assert reports[0]["search_steps"] == reports[1]["search_steps"]
  assert reports[0]["eval"] == reports[1]["eval"]


@pytest.mark.slow
def test_only_process_0_reports_and_exports(one_and_two_process_runs):
  root, _, two = one_and_two_process_runs
  p0 = [l for l in two.splitlines() if l.startswith("[p0]")]
  p1 = [l for l in two.splitlines() if l.startswith("[p1]")]
  assert sum("FMP result" in l for l in p0) == 1 and not any("FMP result" in l for l in p1)
  assert any("export:" in l for l in p0) and not any("export:" in l for l in p1)
  assert not any("[search] step" in l for l in p1)   # progress only from process 0
  assert any("2 cpu device(s), 2 host(s)" in l for l in p0)
  for name in ("report.json", "report.txt", "export/model.msgpack", "plots/loss.png"):
    assert (root / "two" / name).exists()
  lines = (root / "two" / "metrics.jsonl").read_text().splitlines()
  steps = [(json.loads(l)["stage"], json.loads(l)["step"]) for l in lines]
  assert len(steps) == len(set(steps))   # one writer: no step logged twice


@pytest.mark.slow
def test_kill_one_process_then_resume_on_both(repo_root, one_and_two_process_runs, tmp_path):
  root, _, _ = one_and_two_process_runs
  workdir = tmp_path / "killed"
  proc = launch(repo_root, 2, "--config=configs/tiny.py", f"--workdir={workdir}", wait=False)
  ckpt_dir = workdir / "checkpoints" / "search"
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    if ckpt_dir.exists() and any(p.name.isdigit() for p in ckpt_dir.iterdir()):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run finished before it could be interrupted"
  pids = subprocess.run(["pgrep", "-f", f"fmp_jax.main.*--workdir={workdir}"],
                        capture_output=True, text=True).stdout.split()
  assert len(pids) == 2
  # Kill one of the two: the launcher must stop the other and fail.
  victim = [p for p in pids if f"JAX_PROCESS_ID=1" in open(f"/proc/{p}/environ").read().replace("\0", " ")][0]
  os.kill(int(victim), signal.SIGKILL)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode != 0 and "stopping the others" in out, out
  assert not (workdir / "export").exists()
  again = launch(repo_root, 2, "--config=configs/tiny.py", f"--workdir={workdir}")
  assert again.returncode == 0, again.stdout + again.stderr
  assert "[p0] [search] resuming from checkpoint" in again.stdout
  assert ((workdir / "export" / "model.msgpack").read_bytes()
          == (root / "two" / "export" / "model.msgpack").read_bytes())


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step_and_resumes(
    repo_root, one_and_two_process_runs, tmp_path):
  """A preemption notice may reach one host only: every process must stop after the same
  step (a host-agreed flag), checkpoint together, and the rerun must resume both."""
  root, _, _ = one_and_two_process_runs
  workdir = tmp_path / "preempted"
  proc = launch(repo_root, 2, "--config=configs/tiny.py", f"--workdir={workdir}", wait=False)
  seen = []
  for line in proc.stdout:
    seen.append(line)
    if "[p0] " in line and "[search] step 30/" in line:
      break
  pids = subprocess.run(["pgrep", "-f", f"fmp_jax.main.*--workdir={workdir}"],
                        capture_output=True, text=True).stdout.split()
  assert len(pids) == 2, "".join(seen)
  victim = [p for p in pids if "JAX_PROCESS_ID=1" in
            open(f"/proc/{p}/environ").read().replace("\0", " ")][0]
  os.kill(int(victim), signal.SIGTERM)
  rest, _ = proc.communicate(timeout=600)
  assert proc.returncode == 75, "".join(seen) + rest
  import re
  stops = dict(re.findall(r"\[(p\d)\] fmp_jax.main: stopped by .* after search step (\d+)", rest))
  assert set(stops) == {"p0", "p1"} and stops["p0"] == stops["p1"], rest
  assert "stopped by SIGTERM" in rest and "stopped by a signal to another process" in rest
  again = launch(repo_root, 2, "--config=configs/tiny.py", f"--workdir={workdir}")
  assert again.returncode == 0, again.stdout + again.stderr
  assert f"[p0] [search] resuming from checkpoint at step {stops['p0']}" in again.stdout
  assert ((workdir / "export" / "model.msgpack").read_bytes()
          == (root / "two" / "export" / "model.msgpack").read_bytes())

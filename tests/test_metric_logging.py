"""Progress lines (the search's progress is toward its schedule's end, not its step limit)
and where metrics go: JSONL always, TensorBoard with the extra, one line when it cannot."""

import re
import sys
import types

import pytest

from fmp_jax import metric_logging
from fmp_jax.metric_logging import Progress


def test_search_progress_is_toward_the_schedule():
  progress = Progress("search", 400, start=0, expected=True)
  first = progress.line(1, {"loss": 0.5})
  assert re.match(r"\d\d:\d\d:\d\d \[search\] step 1/~400 \(0%\) loss", first), first
  later = progress.line(200, {"loss": 0.1})
  assert "step 200/~400 (50%)" in later and "ETA" in later
  # Past the schedule's end the search is landing: no ETA to a step already passed.
  late = progress.line(430, {"loss": 0.1})
  assert "step 430/~400" in late and "ETA" not in late


def test_fixed_length_stage_shows_its_total_and_eta():
  progress = Progress("finetune", 3000, start=1000)
  assert "[finetune] step 1000/3000 (33%)" in progress.line(1000, {"loss": 0.2})
  assert "ETA" in progress.line(1500, {"loss": 0.2})


def test_durations_keep_their_days():
  assert metric_logging.format_duration(4.8 * 86_400) == "4d 19:12:00"
  assert metric_logging.format_duration(59) == "0:00:59"
  assert metric_logging.format_duration(25 * 3600) == "1d 01:00:00"
  assert metric_logging.format_duration(float("inf")) == "?"


def test_a_slow_run_reads_in_seconds_per_step_and_days(monkeypatch):
  """18 s a step with 19,995 steps to go: 359,910 s = 4 days 3:58:30, not 3:58:30."""
  clock = [1000.0]
  monkeypatch.setattr(metric_logging.time, "time", lambda: clock[0])
  progress = Progress("search", 20_000, start=0)
  progress.line(1, {"loss": 0.5})            # the first report starts the clock
  clock[0] += 4 * 18.0
  line = progress.line(5, {"loss": 0.4})
  assert "18.00 s/step" in line and "ETA 4d 03:58:30" in line, line
  fast = Progress("finetune", 100)
  fast.line(0, {})
  clock[0] += 2.0
  assert "25.00 steps/s" in fast.line(50, {})


def test_tensorboard_events_are_written_with_the_extra(tmp_path):
  pytest.importorskip("tensorflow", reason="TensorBoard extra not installed "
                      "(pip install -e '.[tensorboard]')")
  pytest.importorskip("tensorboard", reason="TensorBoard extra not installed "
                      "(pip install -e '.[tensorboard]')")
  writer = metric_logging.MetricWriter(str(tmp_path))
  assert writer.tensorboard is not None
  writer.write("finetune", 3, {"loss": 0.25})
  writer.flush()
  events = list((tmp_path / "tensorboard").glob("**/events.out.tfevents*"))
  assert events and all(e.stat().st_size > 0 for e in events)
  assert metric_logging.read_metrics(str(tmp_path))[0]["loss"] == 0.25


def test_without_tensorflow_metrics_go_to_jsonl_silently(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "tensorflow", None)   # import tensorflow -> not found
  monkeypatch.setattr(metric_logging, "_warned", False)
  writer = metric_logging.MetricWriter(str(tmp_path))
  writer.write("search", 1, {"loss": 0.5})
  writer.flush()
  assert writer.tensorboard is None
  assert capsys.readouterr() == ("", "")
  rows = metric_logging.read_metrics(str(tmp_path))
  assert [(r["stage"], r["step"], r["loss"]) for r in rows] == [("search", 1, 0.5)]


def test_tensorflow_without_tensorboard_says_why_once(tmp_path, monkeypatch, capsys):
  """TF imports but clu's writer cannot be made: one line naming the cause and the fix."""
  monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
  monkeypatch.setattr(metric_logging, "_warned", False)

  def no_tensorboard(logdir):
    raise ModuleNotFoundError("No module named 'tensorboard'", name="tensorboard")
  monkeypatch.setattr(metric_logging, "_clu_writer", no_tensorboard)
  for run in ("a", "b"):
    (tmp_path / run).mkdir()
    writer = metric_logging.MetricWriter(str(tmp_path / run))
    writer.write("search", 1, {"loss": 0.5})
    assert writer.tensorboard is None
    assert metric_logging.read_metrics(str(tmp_path / run))[0]["loss"] == 0.5
  captured = capsys.readouterr()
  assert captured.out == ""
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1, captured.err
  assert "No module named 'tensorboard'" in lines[0]
  assert "pip install -e '.[tensorboard]'" in lines[0]


def test_interleaved_timings_report_medians_spread_and_a_busy_machine():
  from fmp_jax.profiling import Timing, format_latency
  calm = Timing({"pruned": [0.80, 0.82, 0.81], "dense": [1.0, 1.01, 0.99]})
  s = calm.summary("pruned", "dense")
  assert s["seconds"] == 0.81 and s["dense_seconds"] == 1.0
  # Per round: 0.800, 0.812, 0.818; the median round's ratio, not a ratio of medians.
  assert abs(s["ratio"] - 0.82 / 1.01) < 1e-12 and s["rounds"] == 3 and not s["unreliable"]
  assert format_latency(s) == "81.2 % (3 rounds, 80.0-81.8 %)"
  # A load that slowed the pruned model's rounds (but not the dense one's): the ratio per
  # round swings from 80 % to 139 %; the figure is flagged, not stated as if true.
  busy = Timing({"pruned": [0.80, 1.39, 0.81], "dense": [1.0, 1.0, 1.0]})
  b = busy.summary("pruned", "dense")
  assert b["unreliable"] and b["ratio"] == 0.81
  assert "unreliable: machine busy" in format_latency(b)

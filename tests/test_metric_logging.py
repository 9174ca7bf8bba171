"""Progress lines (the search's progress is toward its schedule's end, not its step limit)
and where metrics go: JSONL always, TensorBoard with the extra, one line when it cannot."""

import sys
import types

import pytest

from fmp_jax import metric_logging
from fmp_jax.metric_logging import Progress


def test_search_progress_is_toward_the_schedule():
  progress = Progress("search", 400, start=0, expected=True)
  first = progress.line(1, {"loss": 0.5})
  assert first.startswith("[search] step 1/~400 (0%)") and "ETA" in first
  assert "step 200/~400 (50%)" in progress.line(200, {"loss": 0.1})
  # Past the schedule's end the search is landing: no ETA to a step already passed.
  late = progress.line(430, {"loss": 0.1})
  assert "step 430/~400" in late and "ETA" not in late


def test_fixed_length_stage_shows_its_total_and_eta():
  progress = Progress("finetune", 3000, start=1000)
  assert progress.line(1000, {"loss": 0.2}).startswith("[finetune] step 1000/3000 (33%)")
  assert "ETA" in progress.line(1500, {"loss": 0.2})


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

"""Progress lines: the search's progress is toward its schedule's end, not its step limit."""

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

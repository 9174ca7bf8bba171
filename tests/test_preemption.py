"""The preemption guard: a signal becomes a flag the loop polls, timed checkpoints fall due,
and the previous handlers come back."""

import os
import signal

from fmp_jax import preemption


def test_sigterm_and_sigint_become_a_stop_after_the_step(monkeypatch):
  before = signal.getsignal(signal.SIGTERM)
  with preemption.Guard() as guard:
    assert guard.poll() == (False, False)
    os.kill(os.getpid(), signal.SIGTERM)        # handled: the test process keeps running
    assert guard.poll() == (True, False) and guard.signal_name == "SIGTERM"
  assert signal.getsignal(signal.SIGTERM) is before
  with preemption.Guard() as guard:
    os.kill(os.getpid(), signal.SIGINT)
    assert guard.poll()[0] and guard.signal_name == "SIGINT"
    # A second Ctrl-C is not caught again: the previous handler (KeyboardInterrupt) is back.
    assert signal.getsignal(signal.SIGINT) is not guard._handle


def test_a_checkpoint_falls_due_by_time_and_the_clock_restarts_when_saved(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(preemption.time, "monotonic", lambda: clock[0])
  guard = preemption.Guard(checkpoint_every_minutes=30)
  clock[0] += 29 * 60
  assert guard.poll() == (False, False)
  clock[0] += 61
  assert guard.poll() == (False, True)
  guard.saved()
  assert guard.poll() == (False, False)
  guard.checkpoint_every(0)                     # 0: by step only
  clock[0] += 10 ** 6
  assert guard.poll() == (False, False)


def test_preempted_says_where_it_stopped_and_how_to_resume():
  e = preemption.Preempted("search", 37, "SIGTERM")
  assert "stopped by SIGTERM after search step 37" in str(e) and "Rerun" in str(e)
  assert preemption.PREEMPTED_EXIT not in (0, 1, 2)

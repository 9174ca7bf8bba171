"""The one step loop of the search, the fine-tuning and the driver.

Each step takes the next (lr, hr) batch, runs the (jitted) step, brings its
scalar metrics to the host once and stops on a non-finite loss with an error
naming the step and what to change. A callback sees every step and may end
the loop (the search stops where its budget holds).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Optional

import jax

from fmp_jax.data.checks import out_of_batches


def run_steps(step_fn: Callable, state: Any, batches: Iterator, first: int, last: int, *,
              args: tuple = (), what: str, hint: str,
              on_step: Optional[Callable[[int, dict, Any], Optional[bool]]] = None,
              say: Optional[Callable[[str], None]] = None):
  """Runs steps `first`..`last` (1-based, inclusive); returns (state, last step run, stopped).

  step_fn(state, *args, lr, hr) -> (state, metrics); metrics hold a "loss" and a
  "finite" flag. on_step(step, metrics, state) is called after every step with
  host floats (plus "step"); a true return value stops the loop there
  (stopped=True). Raises FloatingPointError "<what> step N: loss is nan; <hint>"
  on a non-finite loss, and `DataError` when `batches` ends early. say(line), when
  given, hears `compiling the <what> step ...` before the first step and `compiled in N s`
  after it (the first call compiles; minutes at the paper's width), so that silence is
  explained and the progress rate, which counts from the first report, leaves it out.
  """
  step = first - 1
  for step in range(first, last + 1):
    try:
      lr, hr = next(batches)
    except StopIteration:
      raise out_of_batches(step, last) from None
    if say is not None and step == first:
      say(f"compiling the {what} step ...")
      t0 = time.time()
    state, metrics = step_fn(state, *args, lr, hr)
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if say is not None and step == first:
      say(f"compiled in {time.time() - t0:.0f} s (the first {what} step included)")
    metrics["step"] = step
    if not metrics["finite"]:
      raise FloatingPointError(f"{what} step {step}: loss is {metrics['loss']}; {hint}")
    if on_step is not None and on_step(step, metrics, state):
      return state, step, True
  return state, step, False

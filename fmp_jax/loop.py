"""The one step loop of the search, the fine-tuning and the driver.

Each step takes the next (lr, hr) batch, runs the (jitted) step, brings its
scalar metrics to the host once and stops on a non-finite loss with an error
naming the step and what to change. A callback sees every step and may end
the loop (the search stops where its budget holds).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import jax

from fmp_jax.data.checks import out_of_batches


def run_steps(step_fn: Callable, state: Any, batches: Iterator, first: int, last: int, *,
              args: tuple = (), what: str, hint: str,
              on_step: Optional[Callable[[int, dict, Any], Optional[bool]]] = None):
  """Runs steps `first`..`last` (1-based, inclusive); returns (state, last step run, stopped).

  step_fn(state, *args, lr, hr) -> (state, metrics); metrics hold a "loss" and a
  "finite" flag. on_step(step, metrics, state) is called after every step with
  host floats (plus "step"); a true return value stops the loop there
  (stopped=True). Raises FloatingPointError "<what> step N: loss is nan; <hint>"
  on a non-finite loss, and `DataError` when `batches` ends early.
  """
  step = first - 1
  for step in range(first, last + 1):
    try:
      lr, hr = next(batches)
    except StopIteration:
      raise out_of_batches(step, last) from None
    state, metrics = step_fn(state, *args, lr, hr)
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    metrics["step"] = step
    if not metrics["finite"]:
      raise FloatingPointError(f"{what} step {step}: loss is {metrics['loss']}; {hint}")
    if on_step is not None and on_step(step, metrics, state):
      return state, step, True
  return state, step, False

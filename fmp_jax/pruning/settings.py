"""The search's settings: the static knobs of the step, each checked against its registry.

Every option that names a method choice is a key of a registry (name ->
function or object) in the module that implements it:

=================  ===========================  =====================================
field              registry                     module
=================  ===========================  =====================================
latent_optimizer   `latents.OPTIMIZERS`         the latents' optax transformation
latent_init        `latents.INITS`              the channel vectors' start values
gate               `hyper.GATES`                the kernel's form
indicator          `hyper.INDICATORS`           one indicator per weight or per pair
budget_reg         `regularizer.BUDGET_TERMS`   the differentiable budget term
weight_update      `WEIGHT_UPDATES` (here)      proximal step or l1 penalty on u
zero_crossing      `latents.ZERO_CROSSINGS`     an entry pushed through zero stops or passes
=================  ===========================  =====================================

`LOOP_DEFAULTS` are the search loop's own settings (step limit, batch, patch,
logging); the driver's ``config.search`` (`fmp_jax.config_base`) and
`fmp_jax.prune` both take their defaults from here.
"""

from __future__ import annotations

import dataclasses

from fmp_jax.pruning import hyper, latents, regularizer

# weight_update -> whether the weight indicators' l1 acts (proximal step, penalty in the loss).
WEIGHT_UPDATES = {
    "proximal": {"prox": True, "penalty": False},   # soft-threshold u by latent_lr * weight_l1
    "penalty": {"prox": False, "penalty": True},    # weight_l1 * |u| in u's gradient (FMP's SGD)
}

REGISTRIES = {"latent_optimizer": latents.OPTIMIZERS, "latent_init": latents.INITS,
              "gate": hyper.GATES, "indicator": hyper.INDICATORS,
              "budget_reg": regularizer.BUDGET_TERMS, "weight_update": WEIGHT_UPDATES,
              "zero_crossing": latents.ZERO_CROSSINGS}

# The search loop's settings beside SearchSettings (config.search holds both).
LOOP_DEFAULTS = dict(
    max_steps=100_000,        # error if the budget is not reached by then
    batch_size=16,
    patch_size=48,            # LR patch side
    log_every=50,
    checkpoint_every=1000,
    checkpoint_every_minutes=30.0,  # the driver also checkpoints by time (0: only by step)
    # A family of keeps (descending, budget.keep last): the driver fine-tunes, scores and
    # exports a model at each (fmp_jax.prune_family in a notebook). () = one model.
    family=(),
)


@dataclasses.dataclass(frozen=True)
class SearchSettings:
  """The static knobs of the step (config.search holds these plus loop settings).

  Attributes:
    lr: Adam learning rate of the hypernetwork params and the biases.
    latent_optimizer: "adam" (DHP) or "rms_sgd" (see `latents`).
    latent_lr: the latents' learning rate (also the proximal step size).
    latent_init: channel vectors start at "ones" or "randn" (DHP).
    gate: "none" (DHP's kernel; exact zeros by output masking) or "z" (the
      kernel fades with z_in z_out^T), see `hyper`.
    channel_l1, weight_l1: l1 strengths; one step soft-thresholds by
      latent_lr * l1.
    weight_update: "proximal" (soft-threshold u) or "penalty" (FMP's wording:
      the l1 penalty in u's gradient, then only the pruning threshold).
    prune_threshold: |entry| at or below this becomes zero (DHP: 5e-3).
    min_channels: channels every group keeps at least (DHP: 4).
    max_channel_drop: the largest fraction of the channel-vector entries one
      step may remove (at least one entry).
    channel_multiple: one channel-vector entry per this many channels, so
      every pruned width is a multiple of it.
    free_l1_scale: l1 scale of the kind the criterion does not test
      (weights under Channel, channels under Weight).
    budget_reg: "straight_through" or "off" (see `regularizer`).
    budget_weight: the budget term's initial strength mu.
    budget_ascent: rate of mu's multiplicative dual update per step.
    pace_steps: steps over which the allowed remaining fraction falls to the
      budget (cubic schedule, `pace`); 0: no schedule.
    pace_warmup: fraction of pace_steps before pruning starts.
    rms_decay: decay of the running gradient RMS of "rms_sgd".
    hyper_embed: m, the hypernetwork's per-element embedding size.
    indicator: "weight" (one indicator per kernel weight) or "pair" (one per
      input/output channel pair, a coarser option).
    landing_tol: how far below the target one proximal step may land.
    max_overshoot: a step that cannot progress without crossing its target
      takes the smallest crossing step only if it lands at most this far
      below (the budget's "at most 3 points under"); else it waits.
    landing_iters: bisection steps of the landing search.
    zero_crossing: "stop" (an entry the latents' step carries through zero
      stops in the dead zone, so the proximal step takes it) or "pass" (it
      overshoots; the search before this option), see `latents.propose`.
    reduction_shards: 0, or M (a power of two dividing the batch, a multiple
      of the device count): the data term's value and gradient are summed
      over M micro-shards in a fixed order (`fmp_jax.reduction`), so runs on
      1 or N devices/processes take bit-identical steps (slower per step).
    fill_plan: under a latency budget, the sliced model keeps channels up to
      the table's plan (the widths it runs at; the rest would be zero
      padding), the extra ones freshly initialised and grown in by
      fine-tuning (`surgery.revive_channels`): same predicted time, more
      capacity (on by default: the equal-latency rows of bench/RESULTS.md).
    fill_budget: with fill_plan, the plan is first widened while the table's
      prediction stays within the budget (`LatencyCost.grow`): a search that
      crossed the budget by a whole step of the table spends what it left.
      Off by default: in the paper-regime ablation at equal latency it grew
      FMP's models from 51.3K to 111.9K params within the budget and scored
      −0.16 and +0.03 dB (seeds 0, 1; bench/RESULTS.md).
  """
  lr: float = 2e-4
  latent_optimizer: str = "adam"
  latent_lr: float = 0.01
  latent_init: str = "ones"
  gate: str = "z"
  channel_l1: float = 0.0
  weight_l1: float = 0.0
  weight_update: str = "proximal"
  prune_threshold: float = 5e-3
  min_channels: int = 4
  max_channel_drop: float = 0.02
  channel_multiple: int = 1
  free_l1_scale: float = 0.5
  budget_reg: str = "straight_through"
  budget_weight: float = 0.1
  budget_ascent: float = 0.05
  pace_steps: int = 400
  pace_warmup: float = 0.1
  rms_decay: float = 0.99
  hyper_embed: int = 8
  indicator: str = "weight"
  landing_tol: float = 0.0
  max_overshoot: float = 0.03
  landing_iters: int = 30
  reduction_shards: int = 0
  zero_crossing: str = "stop"
  fill_plan: bool = True
  fill_budget: bool = False

  def __post_init__(self):
    for name, registry in REGISTRIES.items():
      if getattr(self, name) not in registry:
        raise ValueError(f"search.{name}={getattr(self, name)!r} is unknown; use one of "
                         f"{tuple(registry)}.")
    if self.gate == "z" and self.latent_init == "randn":
      raise ValueError("search.gate='z' needs search.latent_init='ones': the Z gate scales "
                       "each kernel by its initial z_in z_out, which randn can put near 0.")
    if self.reduction_shards < 0 or self.reduction_shards & (self.reduction_shards - 1):
      raise ValueError(f"search.reduction_shards={self.reduction_shards} must be 0 (off) or a "
                       "power of two.")
    if self.channel_multiple < 1 or self.min_channels < 1:
      raise ValueError(f"search.channel_multiple={self.channel_multiple} and "
                       f"search.min_channels={self.min_channels} must be >= 1.")

  @classmethod
  def from_config(cls, cfg) -> "SearchSettings":
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})

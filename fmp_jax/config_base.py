"""The config schema shared by every file in configs/.

Config files call `base_config()` and override what differs. Every field is
declared here, so `--config.field=value` typos fail loudly (configs are
locked by the driver) and a notebook user can see every knob in one place.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from fmp_jax.pruning.settings import LOOP_DEFAULTS, SearchSettings


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Backbone (fmp_jax.Arch fields; `name` is the model family).
  c.model = ml_collections.ConfigDict(dict(
      name="esrb", blocks=6, channels=256, scale=2, esa_channels=16,
      prune_esa=False, prune_upsampler=False, rgb_range=1.0))

  # What must REMAIN after pruning (fmp_jax.Budget).
  c.budget = ml_collections.ConfigDict(dict(
      keep=0.085, metric="params", criterion="total",
      channel_keep=ml_collections.FieldReference(None, field_type=float),
      weight_keep=ml_collections.FieldReference(None, field_type=float),
      # metric="latency": a table of this model measured on the target device
      # (tools/profile_latency.py); latency_any_device accepts one from another device.
      latency_table="", latency_any_device=False))

  # FMP search: hypernetwork + latents, proximal steps until the budget holds.
  # The step's knobs and their defaults are SearchSettings', the loop's
  # LOOP_DEFAULTS (max_steps, batch_size, patch_size, log_every,
  # checkpoint_every), both documented in fmp_jax/pruning/settings.py.
  c.search = ml_collections.ConfigDict(dataclasses.asdict(SearchSettings()))
  c.search.update(LOOP_DEFAULTS)

  # Fine-tuning of the physically pruned model (weight masks held fixed).
  c.finetune = ml_collections.ConfigDict(dict(
      steps=300_000, batch_size=16, patch_size=48, lr=2e-4,
      lr_halve_every=100_000, log_every=100, checkpoint_every=5000,
      checkpoint_every_minutes=30.0,   # also checkpoint by time (0: only by step)
      reduction_shards=0,       # as search.reduction_shards (fmp_jax.reduction)
      # What fine-tuning starts from: "search", the kernels the search generated (the paper's
      # and DHP's way), or "scratch", a fresh init of the found widths with its weight masks
      # (bench/RESULTS.md, the paper regime: +1.09 ± 0.39 dB over 3 seeds of ESRB-6-64; the
      # paper configs use it, the small bundled-photo configs keep "search").
      init="search",
      member_steps=()))         # with search.family: fine-tune steps per member (default: steps)

  # Training and evaluation data.
  c.data = ml_collections.ConfigDict(dict(
      train="div2k",            # "div2k" (folders under data_dir), "bundled", "tfds", or a folder
      data_dir="",              # root holding DIV2K/ and the benchmark folders
      tfds_name="",             # e.g. "div2k/bicubic_x2" when train == "tfds"
      # Names under data_dir (or "bundled"): a tuple, or as typed on the command line,
      # --config.data.eval_sets=Set5,Set14 (see `data.eval_set_names`).
      eval_sets=("Set5", "Set14", "B100", "Urban100", "Manga109"),
      eval_max_images=0,        # 0 = all images of each set
      skip_small=False,         # drop training images smaller than a patch (default: error)
  ))

  # What the report adds: the measured latency of the fine-tuned model and of its
  # dense backbone (Upscaler, whole 1280x720-output image, median of latency_repeats).
  # baselines: an ablation JSON (bench/ablation.py or bench/family.py --json) whose arms
  # plots/family.png shows beside a family's members.
  c.report = ml_collections.ConfigDict(dict(measure_latency=True, latency_repeats=3,
                                            baselines=""))

  # Multi-host: call jax.distributed.initialize() (also when the environment asks).
  c.distributed = False
  # "float32", or "bfloat16" for activations and convolutions of the search and
  # fine-tune steps on accelerators (params and optimiser state stay float32).
  c.precision = "float32"
  return c


def bundled_esrb_config() -> ml_collections.ConfigDict:
  """ESRB-3-32 x2 on the bundled photos, keep 30 % of FLOPs: the ablation's recipe.

  A 400-step search (batch 8 of 32x32 LR patches) and 3000 fine-tune steps;
  configs/ablation.py is this, configs/demo.py shortens its fine-tuning.
  """
  c = base_config()
  c.model.update(blocks=3, channels=32, esa_channels=16, scale=2)
  c.budget.update(keep=0.3, metric="flops", criterion="total")
  c.search.update(max_steps=3000, batch_size=8, patch_size=32, lr=1e-3, latent_lr=0.01,
                  pace_steps=400, log_every=25, checkpoint_every=200)
  c.finetune.update(steps=3000, batch_size=8, patch_size=32, lr=1e-3, lr_halve_every=1000,
                    log_every=100, checkpoint_every=500)
  c.data.update(train="bundled", eval_sets=("bundled",))
  return c


def paper_esrb_config(scale: int, arg: str | None = None) -> ml_collections.ConfigDict:
  """ESRB-6-256 at `scale` on DIV2K, keep 8.5 % of params, criterion Total (the paper's
  setting); `arg` "smoke" gives its smoke preset (`smoke_preset`)."""
  c = base_config()
  c.model.scale = scale
  c.search.update(PAPER_SEARCH)
  # In this regime the found structure trains better from a fresh init than from the searched
  # kernels: +1.09 ± 0.39 dB over 3 seeds of configs/paper_proxy.py (bench/RESULTS.md).
  c.finetune.init = "scratch"
  return with_preset(c, arg)


def with_preset(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """The config itself (no arg), or its preset named by `--config=FILE:ARG`."""
  if not arg:
    return c
  if arg == "smoke":
    return smoke_preset(c)
  raise ValueError(f"unknown config preset {arg!r}; the paper configs know 'smoke' "
                   "(e.g. --config=configs/x2.py:smoke).")


def smoke_preset(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The same model, budget, criterion and code path in minutes on a CPU.

  The search's schedule shrinks to SMOKE_PACE steps (max_steps twice that) and the latents'
  step to SMOKE_LATENT_LR, the value the quick ablation's 40-step schedule lands with: the
  paper config's latent travel squeezed into 60 steps (0.33 a step) made ESRB-6-256 diverge
  and stall at 9.1 % of its params, its own 1e-3 removed nothing in 40 steps. Batches of 2
  LR patches of 24x24, a few fine-tune steps, one eval set (Set5, override with
  --config.data.eval_sets=...), a short latency measurement. Its model is not a result: it
  checks data, config and hardware end to end.
  """
  c.search.update(pace_steps=SMOKE_PACE, latent_lr=SMOKE_LATENT_LR, max_steps=2 * SMOKE_PACE,
                  batch_size=2, patch_size=24, log_every=5, checkpoint_every=20)
  c.finetune.update(steps=10, batch_size=2, patch_size=24, lr_halve_every=5, log_every=2,
                    checkpoint_every=5)
  c.data.update(eval_sets=("Set5",), eval_max_images=2)
  c.report.latency_repeats = 2
  return c


SMOKE_PACE = 60
SMOKE_LATENT_LR = 0.05

# The search of the paper-scale configs: the ablation's dynamics (bench/RESULTS.md)
# with a schedule of 20k steps (DHP searches for up to ~60 DIV2K epochs) and a
# latent step 10x smaller than the ablation's 400-step search uses. Not run at
# this scale by the project's own benchmarks.
PAPER_SEARCH = dict(latent_lr=1e-3, pace_steps=20_000, max_steps=40_000)

"""A seconds-long configuration for tests: ESRB-2-16 x2 on the bundled photos.

  python -m fmp_jax.main --config=configs/tiny.py --workdir=/tmp/fmp_tiny
"""

from fmp_jax.config_base import base_config


def get_config(arg=None):
  del arg
  c = base_config()
  c.model.update(blocks=2, channels=16, esa_channels=8, scale=2)
  c.budget.update(keep=0.5, metric="flops", criterion="total")
  c.search.update(max_steps=400, batch_size=4, patch_size=24, lr=1e-3, hyper_embed=4,
                  log_every=10, checkpoint_every=20)
  c.finetune.update(steps=20, batch_size=4, patch_size=24, lr=1e-3, lr_halve_every=10,
                    log_every=5, checkpoint_every=10)
  c.data.update(train="bundled", eval_sets=("bundled",), eval_max_images=2)
  # Fixed-order batch sums: 1- and 2-process runs of this config are bit-identical.
  c.search.reduction_shards = 4
  c.finetune.reduction_shards = 4
  return c

"""The recipe of bench/ablation.py: ESRB-3-32 x2 on the bundled photos, demo-sized batches.

  python bench/ablation.py                       # uses this file (--config to change)

The bench takes from here the search settings (FMP's dynamics, batch, patch,
Adam lr) and the fine-tune recipe (batch, patch, lr and its halving); the
model, budget and step counts come from its own flags. Runnable as a driver
config too (a 400-step search, then 3000 fine-tune steps):

  python -m fmp_jax.main --config=configs/ablation.py --workdir=/tmp/fmp_ablation_recipe
"""

from fmp_jax.config_base import base_config


def get_config(arg=None):
  del arg
  c = base_config()
  c.model.update(blocks=3, channels=32, esa_channels=16, scale=2)
  c.budget.update(keep=0.3, metric="flops", criterion="total")
  c.search.update(max_steps=3000, batch_size=8, patch_size=32, lr=1e-3, latent_lr=0.01,
                  pace_steps=400, log_every=25, checkpoint_every=200)
  c.finetune.update(steps=3000, batch_size=8, patch_size=32, lr=1e-3, lr_halve_every=1000,
                    log_every=100, checkpoint_every=500)
  c.data.update(train="bundled", eval_sets=("bundled",))
  return c

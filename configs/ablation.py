"""The recipe of bench/ablation.py: ESRB-3-32 x2 on the bundled photos, demo-sized batches.

  python bench/ablation.py                       # uses this file (--config to change)

The bench takes from here the search settings (FMP's dynamics, batch, patch,
Adam lr) and the fine-tune recipe (batch, patch, lr and its halving); the
model, budget and step counts come from its own flags. Runnable as a driver
config too (a 400-step search, then 3000 fine-tune steps):

  python -m fmp_jax.main --config=configs/ablation.py --workdir=/tmp/fmp_ablation_recipe
"""

from fmp_jax.config_base import bundled_esrb_config


def get_config(arg=None):
  del arg
  return bundled_esrb_config()

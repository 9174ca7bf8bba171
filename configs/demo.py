"""The embedded default: FMP on the photos bundled with scikit-image, CPU-sized.

  python -m fmp_jax.main --config=configs/demo.py --workdir=/tmp/fmp_demo

ESRB-3-32 x2 (about 75K params) pruned to 30 % of its FLOPs (criterion Total),
fine-tuned, scored on the held-out bundled photos against bicubic, exported.
A few minutes on a 2-core CPU; no dataset download.
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

"""The embedded default: FMP on the photos bundled with scikit-image, CPU-sized.

  python -m fmp_jax.main --config=configs/demo.py --workdir=/tmp/fmp_demo

ESRB-3-32 x2 (90,220 params) pruned to 30 % of its FLOPs (criterion Total)
with the ablation's search dynamics (configs/ablation.py) on 24x24 LR patches
(the ablation: 32x32), fine-tuned for 2000 steps on 32x32 patches (the
ablation: 3000), scored on the held-out bundled photos against bicubic (32.41
vs 31.46 dB), timed against the dense model, exported. No dataset download.
"""

from fmp_jax.config_base import bundled_esrb_config


def get_config(arg=None):
  del arg
  c = bundled_esrb_config()
  c.search.update(patch_size=24)
  c.finetune.update(steps=2000, patch_size=32, lr_halve_every=700)
  return c

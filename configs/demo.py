"""The embedded default: FMP on the photos bundled with scikit-image, CPU-sized.

  python -m fmp_jax.main --config=configs/demo.py --workdir=/tmp/fmp_demo

ESRB-3-32 x2 (90,220 params) pruned to 30 % of its FLOPs (criterion Total)
with the ablation's search (configs/ablation.py), fine-tuned for 1000 steps on
24x24 patches (the ablation: 3000 on 32x32), scored on the held-out bundled
photos against bicubic (32.07 vs 31.46 dB), exported. 3.4 minutes on an idle
2-core CPU; no dataset download.
"""

from fmp_jax.config_base import bundled_esrb_config


def get_config(arg=None):
  del arg
  c = bundled_esrb_config()
  c.finetune.update(steps=1000, patch_size=24, lr_halve_every=400)
  return c

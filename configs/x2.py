"""ESRB-6-256 x2 pruned by FMP to ~8.5 % of its params (criterion Total), on DIV2K.

Launch (GPU/TPU; expects DIV2K and the benchmark sets under data_dir):

  python -m fmp_jax.main --config=configs/x2.py --workdir=/tmp/fmp_x2 \
      --config.data.data_dir=/path/to/sr_data

Dense model: 8,180,876 params, 1,877.75 G FLOPs at 1280x720 output. Paper target
after FMP: 694K params, 153.7 G FLOPs, Set5 38.17 dB. Full run: days on one GPU.
"""

from fmp_jax.config_base import paper_esrb_config


def get_config(arg=None):
  return paper_esrb_config(scale=2, arg=arg)

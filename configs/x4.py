"""ESRB-6-256 x4 pruned by FMP to ~8.5 % of its params (criterion Total), on DIV2K.

Launch (GPU/TPU; expects DIV2K and the benchmark sets under data_dir):

  python -m fmp_jax.main --config=configs/x4.py --workdir=/tmp/fmp_x4 \
      --config.data.data_dir=/path/to/sr_data

Dense model: 8,263,856 params, 474.21 G FLOPs at 1280x720 output. Paper target
after FMP: 704K params, 39.0 G FLOPs, Set5 32.34 dB. Full run: days on one GPU.
"""

from fmp_jax.config_base import paper_esrb_config


def get_config(arg=None):
  return paper_esrb_config(scale=4, arg=arg)

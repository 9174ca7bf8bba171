"""ESRB-6-256 x3 pruned by FMP to ~8.5 % of its params (criterion Total), on DIV2K.

Launch (GPU/TPU; expects DIV2K and the benchmark sets under data_dir):

  python -m fmp_jax.main --config=configs/x3.py --workdir=/tmp/fmp_x3 \
      --config.data.data_dir=/path/to/sr_data

Dense model: 8,215,451 params, 836.78 G FLOPs at 1280x720 output. Paper target
after FMP: 684K params, 67.3 G FLOPs, Set5 34.55 dB. Full run: days on one GPU.
"""

from fmp_jax.config_base import paper_esrb_config


def get_config(arg=None):
  return paper_esrb_config(scale=3, arg=arg)

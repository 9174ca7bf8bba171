"""ESRB-6-256 x3 pruned by FMP to ~8.5 % of its params (criterion Total), on DIV2K.

Launch (GPU/TPU; expects DIV2K and the benchmark sets under data_dir):

  python -m fmp_jax.main --config=configs/x3.py --workdir=/tmp/fmp_x3 \
      --config.data.data_dir=/path/to/sr_data

Dense model: 8,215,451 params, 836.78 G FLOPs at 1280x720 output. Paper target
after FMP: 684K params, 67.3 G FLOPs, Set5 34.55 dB. Full run: days on one GPU.
"""

from fmp_jax.config_base import base_config


def get_config(arg=None):
  del arg
  c = base_config()
  c.model.scale = 3
  c.search.patch_size = 48
  c.finetune.patch_size = 48
  # A long search: unsupported latents reach zero after ~1/(latent_lr*l1) = 20k steps.
  c.search.latent_lr = 1e-4
  return c

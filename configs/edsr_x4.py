"""EDSR-8-128 x4 pruned by FMP (the paper's ablation backbone), Params metric, criterion Total.

  python -m fmp_jax.main --config=configs/edsr_x4.py --workdir=/tmp/fmp_edsr_x4 \
      --config.data.data_dir=/path/to/sr_data

Dense model: 3,696,643 params, 317.64 G FLOPs. Paper ablation (Total): ~60 % of
params remain, Set5 32.03 dB.
"""

from fmp_jax.config_base import PAPER_SEARCH, base_config, with_preset


def get_config(arg=None):
  c = base_config()
  c.model.name = "edsr"
  c.model.blocks = 8
  c.model.channels = 128
  c.model.scale = 4
  c.model.prune_upsampler = True  # DHP's --prune_upsampler: the upsampler follows the stream
  c.budget.keep = 0.6
  c.search.update(PAPER_SEARCH)  # the paper-scale search of the ESRB configs
  return with_preset(c, arg)

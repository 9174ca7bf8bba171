"""One search, a family of models: ESRB-3-32 x2 on the bundled photos at 50, 30 and 15 % FLOPs.

  python -m fmp_jax.main --config=configs/family.py --workdir=/tmp/fmp_family

The ablation's search (configs/ablation.py) to 15 % of the FLOPs, taking the models at
50 % and 30 % on its way down; each member is fine-tuned (1500 steps of 32x32 patches),
scored on the held-out bundled photos against bicubic, timed against the dense model and
exported to export/keep_0.50/, export/keep_0.30/, export/keep_0.15/ (the last also at
export/model.msgpack); plots/family.png shows PSNR against FLOPs, params and latency.
Add an ablation's result with --config.report.baselines=abl.json (bench/family.py --json)
to see the baselines beside it. 9.5 minutes on an idle 2-core CPU that runs configs/demo.py
in 2 min 40 s.
"""

from fmp_jax.config_base import bundled_esrb_config


def get_config(arg=None):
  del arg
  c = bundled_esrb_config()
  c.budget.update(keep=0.15)
  c.search.update(family=(0.5, 0.3, 0.15))
  c.finetune.update(steps=1500, lr_halve_every=500)
  return c

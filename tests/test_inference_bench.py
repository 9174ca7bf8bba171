"""bench/inference.py takes its ratios against the export's own dense backbone and names it."""

import json
import subprocess
import sys

import numpy as np
import pytest

import fmp_jax
from fmp_jax.pruning import complexity


def test_ratios_are_against_the_exports_own_dense_backbone(repo_root, tmp_path):
  arch = fmp_jax.Arch(blocks=2, channels=16, esa_channels=8, scale=2)
  pruned = arch.with_widths({"stream": 8, "block_0.inner": 8, "block_1.inner": 4})
  params = fmp_jax.init_params(pruned, seed=0)
  # Half of one conv's weights masked out: counted MACs fall below executed MACs.
  mask = (np.random.default_rng(0).random((3, 3, 8, 8)) < 0.5).astype(np.float32)
  params["block_0"]["conv_a"]["kernel"] = np.asarray(params["block_0"]["conv_a"]["kernel"]) * mask
  masks = {"block_0": {"conv_a": {"weight": mask}}}
  path = tmp_path / "small.msgpack"
  fmp_jax.save_export(str(path), params, pruned, masks)

  out = subprocess.run([sys.executable, "bench/inference.py", "--export", str(path), "--batch", "0",
                        "--repeats", "1", "--channel-multiples", "1", "--json"],
                       cwd=repo_root, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])

  # The reference is the same ESRB-2-16 (ESA 8) at full widths, not ESRB-6-256.
  dense = dict(arch.to_dict(), widths=None)
  assert result["dense"] == {"choice": "own", "name": "ESRB-2-16 x2 (ESA 8)", "arch": dense}
  assert "compared with: dense ESRB-2-16 x2 (ESA 8), --dense own" in out.stdout
  lr_hw = complexity.lr_size_for(2)
  dense_macs = complexity.count(arch, lr_hw=lr_hw).flops
  counted = complexity.count(pruned, weight_masks=masks, lr_hw=lr_hw).flops
  executed = complexity.count(pruned, lr_hw=lr_hw).flops
  assert counted < executed < dense_macs
  assert result["dense_flops"] == dense_macs
  row = result["results"]["single"]["pruned"]
  assert row["reference"] == "dense"
  assert row["flops_ratio"] == pytest.approx(counted / dense_macs, rel=1e-12)
  assert row["executed_ratio"] == pytest.approx(executed / dense_macs, rel=1e-12)
  dense_s = result["results"]["single"]["dense"]["median_s"]
  assert row["latency_ratio"] == pytest.approx(row["median_s"] / dense_s, rel=1e-12)
  # The table shows the three ratios side by side on the pruned row.
  line = next(l for l in out.stdout.splitlines() if l.split()[:2] == ["single", "pruned"])
  shown = [float(v) for v in line.split()[-4:-1]]
  assert shown == pytest.approx([row["flops_ratio"], row["executed_ratio"], row["latency_ratio"]],
                                abs=5e-5)

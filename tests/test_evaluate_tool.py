"""tools/prepare_data.py and tools/evaluate.py end to end on tiny data."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

import fmp_jax
from fmp_jax import export
from fmp_jax.data import bicubic_downscale


def run(repo_root, *args):
  return subprocess.run([sys.executable, *args], cwd=repo_root, capture_output=True, text=True,
                        timeout=300)


def test_prepare_then_evaluate(repo_root, tmp_path):
  rng = np.random.default_rng(0)
  hr_dir = tmp_path / "data" / "Set5" / "HR"
  hr_dir.mkdir(parents=True)
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (40 + 2 * i, 36, 3), dtype=np.uint8)).save(
        hr_dir / f"im{i}.png")
  out = run(repo_root, "tools/prepare_data.py", "--hr", str(hr_dir), "--scale", "2")
  assert out.returncode == 0, out.stderr
  lr_dir = tmp_path / "data" / "Set5" / "LR_bicubic" / "X2"
  lr = np.asarray(Image.open(lr_dir / "im1x2.png"))
  np.testing.assert_array_equal(lr, bicubic_downscale(np.asarray(Image.open(hr_dir / "im1.png")), 2))

  arch = fmp_jax.Arch(blocks=1, channels=8, esa_channels=4, scale=2)
  model = tmp_path / "model.msgpack"
  export.save(str(model), fmp_jax.init_params(arch), arch)
  out = run(repo_root, "tools/evaluate.py", "--export", str(model), "--data",
            str(tmp_path / "data"), "--sets", "Set5", "--out", str(tmp_path / "eval"))
  assert out.returncode == 0, out.stderr
  results = json.loads((tmp_path / "eval" / "results.json").read_text())
  s = results["Set5"]["summary"]
  assert s["images"] == 3 and 0 < s["psnr"] < 100 and 0 < s["bicubic_ssim"] <= 1
  assert (tmp_path / "eval" / "results.csv").read_text().count("\n") == 4
  assert len(list((tmp_path / "eval").glob("Set5_*.png"))) == 2
  assert "mean" in out.stdout


def test_tools_bad_paths_are_one_line(repo_root, tmp_path):
  for args in (["tools/evaluate.py", "--export", str(tmp_path / "none.msgpack")],
               ["tools/prepare_data.py", "--hr", str(tmp_path / "none")]):
    out = run(repo_root, *args)
    assert out.returncode != 0 and "Traceback" not in out.stderr and "none" in out.stderr

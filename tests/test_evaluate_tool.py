"""tools/prepare_data.py and tools/evaluate.py end to end on tiny data, via subprocess."""

import csv
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import fmp_jax
from fmp_jax import export
from fmp_jax.data import bicubic_downscale, bicubic_upscale, find_benchmark
from fmp_jax.evaluation import evaluate


def run(repo_root, *args):
  return subprocess.run([sys.executable, *args], cwd=repo_root, capture_output=True, text=True,
                        timeout=300)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  arch = fmp_jax.Arch(blocks=1, channels=8, esa_channels=4, scale=2)
  path = tmp_path_factory.mktemp("model") / "model.msgpack"
  export.save(str(path), fmp_jax.init_params(arch, seed=0), arch)
  return path


def write_set(root, name, sizes, seed=0):
  rng = np.random.default_rng(seed)
  hr_dir = root / name / "HR"
  hr_dir.mkdir(parents=True)
  for i, size in enumerate(sizes):
    # Smooth images, so bicubic is good and PSNRs are in a realistic range.
    base = rng.integers(0, 256, (size[0] // 8 + 1, size[1] // 8 + 1, 3), dtype=np.uint8)
    hr = np.kron(base, np.ones((8, 8, 1), np.uint8))[:size[0], :size[1]]
    Image.fromarray(hr).save(hr_dir / f"im{i}.png")
  return hr_dir


def test_prepare_then_evaluate(repo_root, tmp_path, tiny_model):
  hr_dir = write_set(tmp_path / "data", "Set5", [(40, 36), (42, 36), (44, 38)])
  out = run(repo_root, "tools/prepare_data.py", "--hr", str(hr_dir), "--scale", "2")
  assert out.returncode == 0, out.stderr
  lr_dir = tmp_path / "data" / "Set5" / "LR_bicubic" / "X2"
  lr = np.asarray(Image.open(lr_dir / "im1x2.png"))
  hr1 = np.asarray(Image.open(hr_dir / "im1.png"))
  np.testing.assert_array_equal(lr, bicubic_downscale(hr1, 2))
  again = run(repo_root, "tools/prepare_data.py", "--hr", str(hr_dir), "--scale", "2")
  assert again.returncode == 0 and "3 existing kept" in again.stdout

  out_dir = tmp_path / "eval"
  out = run(repo_root, "tools/evaluate.py", "--export", str(tiny_model), "--data",
            str(tmp_path / "data"), "--sets", "Set5,bundled", "--max-images", "3",
            "--scale", "2", "--out", str(out_dir))
  assert out.returncode == 0, out.stderr
  assert "mean" in out.stdout and "Set5 x2" in out.stdout and "bundled x2" in out.stdout

  results = json.loads((out_dir / "results.json").read_text())
  assert results["meta"]["arch"]["channels"] == 8 and results["meta"]["scale"] == 2
  s = results["Set5"]["summary"]
  assert s["images"] == 3 and 0 < s["psnr"] < 100 and 0 < s["bicubic_ssim"] <= 1
  # The bicubic column is MATLAB bicubic of the LR files the tool read, scored here directly.
  pairs = find_benchmark(str(tmp_path / "data"), "Set5", 2)
  direct = evaluate(lambda x: bicubic_upscale((x * 255).round().astype(np.uint8), 2) / 255.0,
                    pairs, 2)
  assert s["bicubic_psnr"] == pytest.approx(direct["summary"]["psnr"], abs=1e-9)
  # An untrained random model is far worse than bicubic on smooth images.
  assert s["psnr"] < s["bicubic_psnr"]

  with open(out_dir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["set"] for r in rows] == ["Set5"] * 3 + ["bundled"] * 3
  assert float(rows[0]["psnr"]) == pytest.approx(results["Set5"]["images"][0]["psnr"])
  with open(out_dir / "summary.csv") as f:
    assert [r["set"] for r in csv.DictReader(f)] == ["Set5", "bundled"]
  crops = sorted(p.name for p in out_dir.glob("*.png"))
  assert len(crops) == 4 and sum(c.startswith("Set5_best_") for c in crops) == 1
  assert sum(c.startswith("bundled_worst_") for c in crops) == 1
  strip = Image.open(next(out_dir.glob("Set5_best_*.png")))
  assert strip.size[0] > 3 * strip.size[1] // 2   # three panels side by side


def test_prepare_tfds_dataset(repo_root, tmp_path):
  hr_dir = write_set(tmp_path / "data", "Set5", [(40, 36), (42, 36)])
  out = run(repo_root, "tools/prepare_data.py", "--hr", str(hr_dir.parent), "--scale", "2",
            "--tfds", "--out", str(tmp_path / "tfds"))
  assert out.returncode == 0, out.stderr
  from fmp_jax.data import tfds_source
  hr, lr, names = tfds_source.read_pairs("fmp_paired_sr/x2", str(tmp_path / "tfds"))
  assert names == ["im0", "im1"]
  np.testing.assert_array_equal(lr[0], bicubic_downscale(hr[0], 2))


def load_tool(repo_root, name):
  spec = importlib.util.spec_from_file_location(f"tool_{name}", repo_root / "tools" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("args, needle", [
    (["evaluate", "--export", "{tmp}/none.msgpack"], "none.msgpack"),
    (["evaluate", "--export", "{model}", "--data", "{tmp}/nodata", "--sets", "Set5"], "nodata"),
    (["evaluate", "--export", "{model}", "--data", "{tmp}", "--sets", "Set14"], "Set14"),
    (["evaluate", "--export", "{model}", "--scale", "3"], "x2"),
    (["evaluate", "--export", "{tmp}/bad.msgpack"], "bad.msgpack"),
    (["evaluate", "--export", "{tmp}"], "export/model.msgpack"),
    (["prepare_data", "--hr", "{tmp}/none"], "none"),
    (["prepare_data", "--hr", "{tmp}", "--scale", "2"], "no images"),
    (["prepare_data", "--hr", "{tmp}", "--scale", "5", "--tfds"], "x2, x3, x4, x8"),
])
def test_tools_bad_input_is_one_clear_line(repo_root, tmp_path, tiny_model, capsys, args, needle):
  """In-process (fast): exit status 2 and one line on stderr naming the culprit."""
  (tmp_path / "bad.msgpack").write_bytes(b"\x00garbage")
  tool, *argv = [a.format(tmp=tmp_path, model=tiny_model) for a in args]
  assert load_tool(repo_root, tool).main(argv) == 2
  err = capsys.readouterr().err
  assert needle in err and err.strip().count("\n") == 0


def test_evaluate_refuses_to_overwrite_results_unless_asked(repo_root, tmp_path, tiny_model,
                                                          capsys):
  tool = load_tool(repo_root, "evaluate")
  out_dir = tmp_path / "eval"
  argv = ["--export", str(tiny_model), "--sets", "bundled", "--max-images", "1",
          "--out", str(out_dir)]
  assert tool.main(argv) == 0
  assert f"wrote results to {out_dir}:" in capsys.readouterr().out   # the absolute folder
  first = {p.name: p.read_bytes() for p in out_dir.iterdir()}
  assert {"results.json", "results.csv", "summary.csv"} <= set(first)

  assert tool.main(argv) == 2
  err = capsys.readouterr().err
  assert err.strip().count("\n") == 0
  assert str(out_dir) in err and "already holds results" in err and "--overwrite" in err
  assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == first

  # --overwrite replaces them: a stand-in for the old table and an old crop of an image
  # no longer best/worst must not survive beside the new results.
  (out_dir / "results.csv").write_text("stale\n")
  (out_dir / "bundled_best_gone.png").write_bytes(b"stale")
  assert tool.main(argv + ["--overwrite"]) == 0
  again = {p.name: p.read_bytes() for p in out_dir.iterdir()}
  assert set(again) == set(first) and again["results.csv"] == first["results.csv"]


def test_evaluate_has_no_checkpoint_flag(repo_root, capsys):
  tool = load_tool(repo_root, "evaluate")
  with pytest.raises(SystemExit):
    tool.main(["--help"])
  assert "--checkpoint" not in capsys.readouterr().out
  with pytest.raises(SystemExit) as exit_info:
    tool.main(["--checkpoint", "somewhere"])
  assert exit_info.value.code == 2
  assert "unrecognized arguments: --checkpoint" in capsys.readouterr().err


def test_tools_report_errors_without_traceback(repo_root, tmp_path):
  """As users run them: a subprocess, no traceback, non-zero exit."""
  for args in (["tools/evaluate.py", "--export", str(tmp_path / "none.msgpack")],
               ["tools/prepare_data.py", "--hr", str(tmp_path / "none")]):
    out = run(repo_root, *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "none" in out.stderr

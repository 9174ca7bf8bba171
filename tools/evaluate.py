"""Score an exported model on SR benchmarks (Y-channel PSNR/SSIM, bicubic beside it).

  python tools/evaluate.py --export workdir/export/model.msgpack --data /data --scale 2
  python tools/evaluate.py --checkpoint workdir --sets bundled --out eval_out

--data holds Set5/HR (+ LR_bicubic/X2), Set14, B100, Urban100, Manga109 in the
BasicSR layout; "bundled" needs no data. Writes results.csv, results.json and,
per set, side-by-side crops (bicubic | model | HR) of the best and worst image.
"""

import argparse
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from fmp_jax import export, metrics  # noqa: E402
from fmp_jax.data import BENCHMARKS, DataError, imresize  # noqa: E402


def model_from_args(args):
  if bool(args.export) == bool(args.checkpoint):
    sys.exit("evaluate.py: give exactly one of --export FILE or --checkpoint WORKDIR.")
  path = args.export
  if args.checkpoint:
    for candidate in ("export/model.msgpack", "finetuned/model.msgpack", "pruned/model.msgpack"):
      if os.path.isfile(os.path.join(args.checkpoint, candidate)):
        path = os.path.join(args.checkpoint, candidate)
        break
    else:
      sys.exit(f"evaluate.py: {args.checkpoint}: no model in this workdir (run the driver first).")
  try:
    return export.load(path)
  except export.ExportError as e:
    sys.exit(f"evaluate.py: {e}")


def crop_strip(pair, sr, scale, out_path, label):
  """bicubic | model | HR crop (the central 128x128 HR pixels or less) side by side, as PNG."""
  from PIL import Image, ImageDraw
  bic = np.clip(np.round(imresize(pair.lr.astype(np.float64), scale=scale)), 0, 255)
  h, w = pair.hr.shape[:2]
  c = min(128, h, w)
  y, x = (h - c) // 2, (w - c) // 2
  panels = [("bicubic", bic), ("model", sr), ("HR", pair.hr.astype(np.float64))]
  strip = Image.new("RGB", (3 * c + 8, c + 16), "white")
  draw = ImageDraw.Draw(strip)
  for i, (name, img) in enumerate(panels):
    crop = img[y:y + c, x:x + c].astype(np.uint8)
    strip.paste(Image.fromarray(crop), (i * (c + 4), 16))
    text = name if name == "HR" else f"{name} {metrics.psnr(img, pair.hr, crop=scale):.2f} dB"
    draw.text((i * (c + 4) + 2, 2), text, fill="black")
  strip.save(out_path)
  return out_path


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--export", help="an exported .msgpack model")
  parser.add_argument("--checkpoint", help="a driver workdir (uses its exported model)")
  parser.add_argument("--data", default="", help="folder holding the benchmark sets")
  parser.add_argument("--scale", type=int, default=None, help="must match the model")
  parser.add_argument("--sets", default=None, help=f"comma list; default {','.join(BENCHMARKS)}"
                      " (or 'bundled' when --data is not given)")
  parser.add_argument("--out", default=None, help="where to write CSV/JSON/PNGs")
  args = parser.parse_args()
  import fmp_jax
  from fmp_jax import data as data_lib
  from fmp_jax.evaluation import evaluate

  model = model_from_args(args)
  scale = model.arch.scale
  if args.scale is not None and args.scale != scale:
    sys.exit(f"evaluate.py: --scale {args.scale} but the model upscales x{scale}.")
  sets = args.sets.split(",") if args.sets else (list(BENCHMARKS) if args.data else ["bundled"])
  out_dir = args.out or os.path.join(os.path.dirname(os.path.abspath(args.export or
                                                                     args.checkpoint)), "eval")
  os.makedirs(out_dir, exist_ok=True)

  class DataCfg:
    data_dir = args.data

  upscale = lambda lr: np.asarray(fmp_jax.apply(model.params, model.arch, lr[None]))[0]
  results, rows = {}, []
  for name in sets:
    try:
      pairs = data_lib.eval_pairs(DataCfg, name, scale)
    except DataError as e:
      sys.exit(f"evaluate.py: {e}")
    res = evaluate(upscale, pairs, scale, model.arch.rgb_range)
    results[name] = res
    print(f"\n{name} (x{scale}, {len(pairs)} images)")
    print(f"  {'image':<24}{'PSNR':>8}{'SSIM':>8}{'bicubic':>10}{'SSIM':>8}")
    for r in res["images"]:
      print(f"  {r['name']:<24}{r['psnr']:>8.2f}{r['ssim']:>8.4f}{r['bicubic_psnr']:>10.2f}"
            f"{r['bicubic_ssim']:>8.4f}")
      rows.append(dict(set=name, **r))
    s = res["summary"]
    print(f"  {'mean':<24}{s['psnr']:>8.2f}{s['ssim']:>8.4f}{s['bicubic_psnr']:>10.2f}"
          f"{s['bicubic_ssim']:>8.4f}")
    ranked = sorted(range(len(pairs)), key=lambda i: res["images"][i]["psnr"] -
                    res["images"][i]["bicubic_psnr"])
    for tag, i in (("worst", ranked[0]), ("best", ranked[-1])):
      lr = pairs[i].lr.astype(np.float32) * np.float32(model.arch.rgb_range / 255.0)
      sr = metrics.quantize(upscale(lr), model.arch.rgb_range)
      crop_strip(pairs[i], sr, scale, os.path.join(out_dir, f"{name}_{tag}_{pairs[i].name}.png"), tag)
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["set", "name", "psnr", "ssim", "bicubic_psnr",
                                           "bicubic_ssim"])
    writer.writeheader()
    writer.writerows(rows)
  print(f"\nresults: {out_dir}/results.csv, results.json, crops *_best_*.png / *_worst_*.png")


if __name__ == "__main__":
  main()

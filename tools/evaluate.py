"""Score an exported model on SR benchmarks: Y-channel PSNR/SSIM, bicubic beside it.

  python tools/evaluate.py --export workdir/export/model.msgpack --data /data/sr --scale 2
  python tools/evaluate.py --export workdir --sets bundled --out eval_out

--data holds the sets in the BasicSR layout: Set5/HR/*.png (+ LR_bicubic/X2/*x2.png;
without it LR is made with MATLAB bicubic), Set14, B100 (or BSD100), Urban100,
Manga109, directly or under benchmark/. "bundled" (scikit-image's held-out
photos) needs no data. --export may also be a driver workdir: its
export/model.msgpack (or finetuned/, pruned/) is used.

Protocol: the model's output is rounded to 8 bits, `scale` px are cropped at
each border, PSNR/SSIM (11x11 Gaussian, sigma 1.5) on BT.601 Y. Bicubic is
MATLAB imresize of the 8-bit LR.

Writes to --out (default: eval/ beside the export file): results.csv (one row
per image), summary.csv (one row per set), results.json (both, plus the
model's arch), and per set <set>_best_<image>.png / <set>_worst_<image>.png: a
crop bicubic | model | HR of the images with the highest and lowest model
PSNR, at the window where bicubic errs most. A folder that already holds such
results is refused unless --overwrite is given, which removes them first.
"""

import argparse
import csv
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from fmp_jax.data.errors import DataError  # noqa: E402

FIELDS = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")


class ToolError(Exception):
  """A user error reported as one line."""


def resolve_export(path: str) -> str:
  """The export file: `path` itself, or the model a driver workdir holds."""
  from fmp_jax.workdir import WorkdirError, model_file
  try:
    return model_file(path)
  except WorkdirError as e:
    raise ToolError(str(e)) from None


def best_window(bic: np.ndarray, hr: np.ndarray, size: int) -> tuple[int, int]:
  """Top-left (y, x) of the size x size HR window where bicubic's error is largest."""
  err = np.abs(bic.astype(np.float64) - hr).mean(axis=-1)
  h, w = err.shape
  step = max(1, size // 4)
  best, where = -1.0, (0, 0)
  for y in list(range(0, h - size + 1, step)) + [h - size]:
    for x in list(range(0, w - size + 1, step)) + [w - size]:
      e = err[y:y + size, x:x + size].mean()
      if e > best:
        best, where = e, (y, x)
  return where


def save_strip(pair, sr: np.ndarray, bic: np.ndarray, row: dict, out_path: str) -> str:
  """bicubic | model | HR crops (up to 128 px, zoomed to >= 96 px) side by side, as PNG."""
  from PIL import Image, ImageDraw
  h, w = pair.hr.shape[:2]
  c = min(128, h, w)
  y, x = best_window(bic, pair.hr, c)
  zoom = max(1, -(-96 // c))
  panels = [(f"bicubic {row['bicubic_psnr']:.2f} dB", bic), (f"model {row['psnr']:.2f} dB", sr),
            ("HR", pair.hr)]
  side, gap, top = c * zoom, 4, 14
  strip = Image.new("RGB", (3 * side + 2 * gap, side + top), "white")
  draw = ImageDraw.Draw(strip)
  for i, (label, img) in enumerate(panels):
    crop = Image.fromarray(np.asarray(img[y:y + c, x:x + c], np.uint8))
    strip.paste(crop.resize((side, side), Image.Resampling.NEAREST), (i * (side + gap), top))
    draw.text((i * (side + gap) + 2, 1), label, fill="black")
  strip.save(out_path)
  return out_path


RESULT_FILES = ("results.json", "results.csv", "summary.csv")
CROP_PATTERNS = ("*_best_*.png", "*_worst_*.png")


def previous_results(out_dir: str) -> list[str]:
  """Files of an earlier run in `out_dir` (the tables and the crops this tool writes)."""
  found = [os.path.join(out_dir, n) for n in RESULT_FILES
           if os.path.exists(os.path.join(out_dir, n))]
  for pattern in CROP_PATTERNS:
    found += sorted(glob.glob(os.path.join(glob.escape(out_dir), pattern)))
  return found


def prepare_out_dir(out_dir: str, overwrite: bool) -> None:
  """Creates `out_dir`; refuses to mix with an earlier run's results unless `overwrite`.

  Checked before any scoring, so a refused run costs nothing. With `overwrite`
  the earlier run's files are removed first: its crops are named after its
  best/worst images and would otherwise sit beside the new ones.
  """
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ToolError(f"--out {out_dir} is a file, not a folder.")
  old = previous_results(out_dir) if os.path.isdir(out_dir) else []
  if old and not overwrite:
    raise ToolError(f"{out_dir} already holds results ({os.path.basename(old[0])}, ...); "
                    f"pass --overwrite to replace them, or choose another --out.")
  for f in old:
    os.remove(f)
  os.makedirs(out_dir, exist_ok=True)


def print_table(name: str, scale: int, res: dict) -> None:
  s = res["summary"]
  print(f"\n{name} x{scale}: {s['images']} images   PSNR (dB) / SSIM on Y, border {scale}")
  print(f"  {'image':<28}{'model':>9}{'SSIM':>8}  {'bicubic':>9}{'SSIM':>8}")
  for r in res["images"]:
    print(f"  {r['name'][:28]:<28}{r['psnr']:>9.2f}{r['ssim']:>8.4f}  {r['bicubic_psnr']:>9.2f}"
          f"{r['bicubic_ssim']:>8.4f}")
  print(f"  {'mean':<28}{s['psnr']:>9.2f}{s['ssim']:>8.4f}  {s['bicubic_psnr']:>9.2f}"
        f"{s['bicubic_ssim']:>8.4f}")


def run(args) -> None:
  from tqdm import tqdm

  from fmp_jax import export
  from fmp_jax.data import BENCHMARKS, find_benchmark
  from fmp_jax.evaluation import evaluate, model_upscaler

  if not args.export:
    raise ToolError("give --export FILE (an exported .msgpack model, or a driver workdir).")
  path = resolve_export(args.export)
  try:
    model = export.load(path)
  except export.ExportError as e:
    raise ToolError(str(e)) from e
  scale = model.arch.scale
  if args.scale is not None and args.scale != scale:
    raise ToolError(f"--scale {args.scale} but {path} upscales x{scale}.")
  sets = [s for s in (args.sets.split(",") if args.sets else
                      (list(BENCHMARKS) if args.data else ["bundled"])) if s]
  out_dir = os.path.abspath(args.out or os.path.join(os.path.dirname(os.path.abspath(path)),
                                                     "eval"))
  prepare_out_dir(out_dir, args.overwrite)
  min_lr = model.arch.backbone.min_lr_side
  upscale = model_upscaler(model.params, model.arch, model.masks or None)

  results, rows, strips = {}, [], []
  for name in sets:
    pairs = find_benchmark(args.data, name, scale, min_lr_size=min_lr)
    if args.max_images:
      pairs = pairs[:args.max_images]
    keep = {}   # "best"/"worst" -> (pair, sr, bic, row): only two outputs held at a time
    bar = tqdm(total=len(pairs), desc=name, unit="img", file=sys.stderr, leave=False)

    def on_image(pair, sr, bic, row, keep=keep, bar=bar):
      bar.update(1)
      if "best" not in keep or row["psnr"] > keep["best"][3]["psnr"]:
        keep["best"] = (pair, sr, bic, row)
      if "worst" not in keep or row["psnr"] < keep["worst"][3]["psnr"]:
        keep["worst"] = (pair, sr, bic, row)

    res = evaluate(upscale, pairs, scale, model.arch.rgb_range, on_image=on_image)
    bar.close()
    results[name] = res
    print_table(name, scale, res)
    rows += [dict(set=name, **r) for r in res["images"]]
    for tag in ("best", "worst"):
      pair, sr, bic, row = keep[tag]
      strips.append(save_strip(pair, sr, bic, row,
                               os.path.join(out_dir, f"{name}_{tag}_{pair.name}.png")))

  meta = {"export": os.path.abspath(path), "arch": model.arch.to_dict(), "scale": scale,
          "protocol": f"8-bit output, border {scale} px cropped, BT.601 Y, SSIM 11x11 sigma 1.5",
          "bicubic": "MATLAB imresize of the 8-bit LR"}
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump({"meta": meta, **results}, f, indent=1)
  with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=("set", "name") + FIELDS)
    writer.writeheader()
    writer.writerows(rows)
  with open(os.path.join(out_dir, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=("set", "images") + FIELDS)
    writer.writeheader()
    writer.writerows(dict(set=n, **r["summary"]) for n, r in results.items())
  print(f"\nwrote results to {out_dir}: results.csv, summary.csv, results.json and "
        f"{len(strips)} crops (*_best_*.png, *_worst_*.png)")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="\n".join(__doc__.splitlines()[1:]))
  parser.add_argument("--export", help="exported .msgpack model (fmp_jax.export), or a workdir")
  parser.add_argument("--data", default="", help="folder holding the benchmark sets")
  parser.add_argument("--scale", type=int, default=None, help="checked against the model")
  parser.add_argument("--sets", default=None,
                      help="comma list, e.g. Set5,Set14,B100,Urban100,Manga109 (default: all "
                           "five with --data, else 'bundled')")
  parser.add_argument("--max-images", type=int, default=0, help="score only the first N per set")
  parser.add_argument("--out", default=None,
                      help="output folder (default: <folder of the export file>/eval)")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace the results of an earlier run in --out (refused otherwise)")
  args = parser.parse_args(argv)
  try:
    run(args)
  except (ToolError, DataError) as e:
    print(f"evaluate.py: error: {e}", file=sys.stderr)
    return 2
  except ValueError as e:   # e.g. an image the model cannot take; no traceback for users
    print(f"evaluate.py: error: {type(e).__name__}: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())

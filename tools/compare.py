"""Paper-style visual comparison as one PNG: HR crop | bicubic | dense | pruned, PSNR under each.

  python tools/compare.py --export pruned.msgpack --bundled chelsea --out cmp.png
  python tools/compare.py --export pruned.msgpack --dense-export dense.msgpack \
      --image photo.png --scale 2 --crop 120,200,96 --out cmp.png

The HR image (a file, or a photo bundled with scikit-image: --bundled NAME,
see fmp_jax.data.bundled; prefer the EVAL ones: chelsea, coffee, camera,
coins) is cropped to a multiple of the scale, downscaled with MATLAB bicubic
(the SR benchmark LR), and upscaled by bicubic and by each model
(fmp_jax.inference, whole image). Each panel shows the same HR-pixel crop
(--crop Y,X,SIZE, default: the SIZE-px square with the most detail) and,
under it, the PSNR in dB on the Y channel (BT.601) of the WHOLE image with
`scale` border pixels cropped and 8-bit outputs, as SR papers report it.
Without --dense-export the dense panel is left out.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROG = "compare.py"


class UserError(Exception):
  """An error to report as one line (no traceback)."""


def parse_crop(text):
  try:
    y, x, size = (int(v) for v in text.split(","))
    if y < 0 or x < 0 or size < 1:
      raise ValueError
    return y, x, size
  except ValueError:
    raise UserError(f"--crop={text!r} must be Y,X,SIZE in HR pixels, e.g. 120,200,96.")


def detailed_crop(hr, size):
  """(y, x) of the size x size window of `hr` (H, W, 3 uint8) with the most gradient energy."""
  import numpy as np
  y = hr.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
  energy = np.abs(np.diff(y, axis=0))[:, :-1] + np.abs(np.diff(y, axis=1))[:-1, :]
  # Window sums via an integral image, on a stride of size/4 (enough for a figure).
  ii = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
  h, w = energy.shape
  best, where = -1.0, (0, 0)
  step = max(1, size // 4)
  for yy in range(0, max(1, h - size + 1), step):
    for xx in range(0, max(1, w - size + 1), step):
      s = ii[yy + size, xx + size] - ii[yy, xx + size] - ii[yy + size, xx] + ii[yy, xx]
      if s > best:
        best, where = s, (yy, xx)
  return where


def load_hr(args):
  from fmp_jax.data import DataError
  from fmp_jax.data.bundled import EVAL, TRAIN, _load
  from fmp_jax.data.images import read_image
  if args.bundled:
    if args.bundled not in EVAL + TRAIN:
      raise UserError(f"--bundled={args.bundled!r} is not a bundled photo; use one of "
                      f"{', '.join(EVAL)} (eval) or {', '.join(TRAIN)} (train).")
    return _load(args.bundled), f"skimage.data.{args.bundled}"
  try:
    return read_image(args.image), os.path.basename(args.image)
  except DataError as e:
    raise UserError(str(e))


def load_model(path, what):
  from fmp_jax import export, inference
  from fmp_jax.arch import ArchError
  from fmp_jax.pruning import complexity
  try:
    exported = export.load(path)
    up = inference.from_export(exported, tile=None)
  except (export.ExportError, ArchError, KeyError, TypeError, ValueError) as e:
    raise UserError(f"{what} {path}: cannot load the model: {e}")
  counts = complexity.count(exported.arch, weight_masks=exported.masks)
  a = exported.arch
  label = f"{a.model.upper()}-{a.blocks}-{a.channels}" + (" pruned" if a.is_pruned else "")
  return up, f"{label}, {counts.params / 1e3:,.0f}K params"


def run(args):
  for path, what in ((args.export, "--export"), (args.dense_export, "--dense-export"),
                     (args.image, "--image")):
    if path and not os.path.isfile(path):
      raise UserError(f"{what} {path}: no such file.")
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  from fmp_jax.cli import quiet_logs
  from fmp_jax.data.imresize import bicubic_downscale, imresize, modcrop
  from fmp_jax.metrics import psnr
  from fmp_jax.models import MIN_LR_SIDE

  quiet_logs()
  pruned, pruned_label = load_model(args.export, "--export")
  scale = args.scale or pruned.scale
  dense, dense_label = load_model(args.dense_export, "--dense-export") if args.dense_export \
      else (None, None)
  for up, what in ((pruned, "--export"), (dense, "--dense-export")):
    if up is not None and up.scale != scale:
      raise UserError(f"{what} model is x{up.scale}, but --scale is {scale}.")

  hr, name = load_hr(args)
  hr = modcrop(hr, scale)
  if min(hr.shape[:2]) < MIN_LR_SIDE * scale:
    raise UserError(f"{name}: image is {hr.shape[0]}x{hr.shape[1]} px; need at least "
                    f"{MIN_LR_SIDE * scale} px per side at x{scale}.")
  lr = bicubic_downscale(hr, scale)
  panels = [("HR", hr, None),
            ("Bicubic", np.clip(np.round(imresize(lr, scale=scale)), 0, 255).astype(np.uint8),
             None)]
  if dense is not None:
    panels.append((f"Dense ({dense_label})", dense.upscale(lr), None))
  panels.append((f"FMP ({pruned_label})", pruned.upscale(lr), None))
  panels = [(title, img, None if title == "HR" else psnr(img, hr, crop=scale, y_channel=True))
            for title, img, _ in panels]

  size = min(args.crop_size, *hr.shape[:2])
  if args.crop:
    y, x, size = parse_crop(args.crop)
    if y + size > hr.shape[0] or x + size > hr.shape[1]:
      raise UserError(f"--crop={args.crop} lies outside the {hr.shape[0]}x{hr.shape[1]} HR image.")
  else:
    y, x = detailed_crop(hr, size)

  fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.6))
  for ax, (title, img, score) in zip(axes, panels):
    ax.imshow(img[y:y + size, x:x + size], interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("reference" if score is None else f"{score:.2f} dB", fontsize=10)
  fig.suptitle(f"{name}, x{scale}, crop {size}x{size} at ({y}, {x}); PSNR of the whole image",
               fontsize=9)
  fig.tight_layout()
  try:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi, format="png")
  except (OSError, ValueError) as e:
    raise UserError(f"--out {args.out}: cannot write the PNG ({e}).")
  plt.close(fig)
  scores = ", ".join(f"{t.split(' (')[0]} {s:.2f} dB" for t, _, s in panels if s is not None)
  print(f"{PROG}: wrote {args.out} ({name} x{scale}: {scores})")


def main(argv=None):
  parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
  parser.add_argument("--export", required=True, help="pruned model export (.msgpack)")
  parser.add_argument("--dense-export", default=None, help="dense model export (optional)")
  src = parser.add_mutually_exclusive_group(required=True)
  src.add_argument("--image", help="HR image file")
  src.add_argument("--bundled", help="a scikit-image photo name, e.g. chelsea")
  parser.add_argument("--scale", type=int, default=None, help="default: the export's scale")
  parser.add_argument("--out", required=True, help="output PNG")
  parser.add_argument("--crop", default=None, help="Y,X,SIZE in HR px (default: most detailed)")
  parser.add_argument("--crop-size", type=int, default=96, help="auto-crop side in HR px")
  parser.add_argument("--dpi", type=int, default=150)
  args = parser.parse_args(argv)
  try:
    run(args)
  except UserError as e:
    print(f"{PROG}: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())

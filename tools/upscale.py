"""Upscales one image with an exported model (inference only, no training code).

  python tools/upscale.py --model model.msgpack input.png output.png
  python tools/upscale.py --model WORKDIR input.png output.png    # a driver run's export
  python tools/upscale.py --model model.msgpack big.png out.png --tile 128 --overlap 16
  python tools/upscale.py --model model.msgpack in.png out.png --tile 0   # whole image

Input: any image Pillow reads, any size (LR side >= 15 px). Grayscale,
palette, 16-bit and RGBA/LA inputs are converted to 8-bit RGB first (alpha is
dropped) and a note says so on stderr. Output: 8-bit RGB, s times larger.
Large inputs are processed in overlapping tiles (fmp_jax.inference); the
default overlap is the model's receptive radius rounded up to 8 LR px.
Errors (missing/corrupt model or image, too small an image) print one line
and exit 1.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROG = "upscale.py"


def read_rgb(path):
  """(H, W, 3) uint8 via fmp_jax.data.images.read_image, and a note if it converted (or None)."""
  from PIL import Image
  from fmp_jax.data import DataError
  from fmp_jax.data.images import read_image

  try:
    img = read_image(path)
    with Image.open(path) as im:
      mode = im.mode
  except (DataError, OSError) as e:
    raise UserError(str(e))
  if mode == "RGB":
    return img, None
  what = {"L": "grayscale", "LA": "grayscale+alpha (alpha dropped)",
          "RGBA": "RGBA (alpha dropped)", "P": "palette", "1": "1-bit", "CMYK": "CMYK",
          "I;16": "16-bit grayscale (scaled to 8 bits)", "I": "32-bit grayscale (scaled to 8 bits)"
          }.get(mode, mode)
  return img, f"converted {what} input to 8-bit RGB"


class UserError(Exception):
  """An error to report as one line (no traceback)."""


def run(args):
  # Cheap checks first, heavy imports (JAX) after, so `--help` and path typos stay instant.
  if not os.path.isfile(args.input):
    raise UserError(f"{args.input}: no such image file.")
  from fmp_jax.workdir import WorkdirError, model_file
  try:
    args.model = model_file(args.model)
  except WorkdirError as e:
    raise UserError(str(e)) from None
  import numpy as np
  from PIL import Image

  from fmp_jax import export
  from fmp_jax.arch import ArchError
  from fmp_jax.cli import quiet_logs
  from fmp_jax import inference

  quiet_logs()
  try:
    exported = export.load(args.model)
  except (export.ExportError, ArchError, KeyError, TypeError, ValueError) as e:
    raise UserError(f"{args.model}: cannot load the model: {e}")
  img, note = read_rgb(args.input)
  if note:
    print(f"{PROG}: note: {args.input}: {note}.", file=sys.stderr)
  try:
    up = inference.from_export(exported, tile=args.tile or None, overlap=args.overlap)
  except (ValueError, KeyError) as e:
    raise UserError(f"{args.model}: {e}")
  h, w, _ = img.shape
  if min(h, w) < inference.MIN_LR_SIDE:
    raise UserError(f"{args.input}: image is {h}x{w} px; the model needs at least "
                    f"{inference.MIN_LR_SIDE}x{inference.MIN_LR_SIDE}.")
  t0 = time.perf_counter()
  try:
    sr = up.upscale(img)
  except ValueError as e:
    raise UserError(f"{args.input}: {e}")
  seconds = time.perf_counter() - t0
  out_dir = os.path.dirname(os.path.abspath(args.output))
  try:
    os.makedirs(out_dir, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(sr), "RGB").save(args.output, format="PNG")
  except (OSError, ValueError) as e:
    raise UserError(f"{args.output}: cannot write the PNG ({e}).")
  tiles = "whole image" if not up.tile or (h <= up.tile and w <= up.tile) else (
      f"{len(inference.tile_windows(h, up.tile, up.overlap))}x"
      f"{len(inference.tile_windows(w, up.tile, up.overlap))} tiles of {up.tile} px, "
      f"overlap {up.overlap}")
  print(f"{PROG}: {args.input} {w}x{h} -> {args.output} {sr.shape[1]}x{sr.shape[0]} "
        f"(x{up.scale}, {tiles}, {seconds:.2f} s incl. compile)")


def main(argv=None):
  parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
  parser.add_argument("--model", required=True,
                      help="exported model (.msgpack), or a driver workdir (its export)")
  parser.add_argument("input", help="LR image (PNG or any format Pillow reads)")
  parser.add_argument("output", help="where to write the upscaled PNG")
  parser.add_argument("--tile", type=int, default=128,
                      help="LR tile side in px (0: whole image at once; default 128)")
  parser.add_argument("--overlap", type=int, default=None,
                      help="LR context px per tile side (default: receptive radius rounded up to 8)")
  args = parser.parse_args(argv)
  if args.tile < 0 or (args.overlap is not None and args.overlap < 0):
    parser.error("--tile and --overlap must be >= 0.")
  try:
    run(args)
  except UserError as e:
    print(f"{PROG}: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())

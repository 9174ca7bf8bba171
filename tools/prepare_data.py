"""Prepare SR data from HR images, offline: LR_bicubic/X{s} folders or a TFDS dataset.

  # LR folders beside the HR folder (MATLAB bicubic of the mod-cropped HR):
  python tools/prepare_data.py --hr /data/Set5/HR --scale 2 3 4   # Set5/LR_bicubic/X2/*x2.png
  python tools/prepare_data.py --hr /data/DIV2K/DIV2K_train_HR --scale 2
                                              # DIV2K/DIV2K_train_LR_bicubic/X2/0001x2.png
  # An array_record TFDS dataset (no TensorFlow needed) for --config.data.train=tfds:
  python tools/prepare_data.py --hr /data/DIV2K --scale 2 --tfds --out /data/tfds
  # A DIV2K-style folder of the bundled photos (TRAIN as DIV2K_train_HR, EVAL as
  # DIV2K_valid_HR), for a smoke run of a paper config without DIV2K:
  python tools/prepare_data.py --from-bundled /tmp/bundled_div2k

--hr is an HR folder, a benchmark set folder (holding HR/) or a DIV2K root.
For --tfds, existing LR images of the layout (e.g. DIV2K's official
DIV2K_train_LR_bicubic/X2) are used when present, else LR is generated.
Existing LR files are kept unless --overwrite. Nothing is downloaded.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fmp_jax.data.errors import DataError  # noqa: E402


def lr_dir_for(hr_dir: str, scale: int) -> str:
  """The LR folder of the SR layouts for an HR folder."""
  hr_dir = os.path.abspath(hr_dir.rstrip("/"))
  parent, base = os.path.split(hr_dir)
  if base == "HR":                      # Set5/HR -> Set5/LR_bicubic/X2
    return os.path.join(parent, "LR_bicubic", f"X{scale}")
  if base.endswith("_HR"):              # DIV2K_train_HR -> DIV2K_train_LR_bicubic/X2
    return os.path.join(parent, base[:-3] + "_LR_bicubic", f"X{scale}")
  return os.path.join(parent, base + "_LR_bicubic", f"X{scale}")


def write_lr_folder(hr_dir: str, scale: int, out_dir: str, overwrite: bool) -> tuple[int, int]:
  """Writes NAMEx{s}.png for every HR image; returns (written, kept)."""
  from PIL import Image
  from tqdm import tqdm

  from fmp_jax.data.images import list_images, read_image
  from fmp_jax.data.imresize import bicubic_downscale, modcrop

  files = list_images(hr_dir)
  os.makedirs(out_dir, exist_ok=True)
  written = kept = 0
  for path in tqdm(files, desc=f"x{scale} LR", unit="img"):
    name = os.path.splitext(os.path.basename(path))[0]
    target = os.path.join(out_dir, f"{name}x{scale}.png")
    if os.path.exists(target) and not overwrite:
      kept += 1
      continue
    hr = modcrop(read_image(path), scale)
    if min(hr.shape[:2]) < scale:
      raise DataError(f"{path}: {hr.shape[1]}x{hr.shape[0]} px is smaller than x{scale}.")
    tmp = target + ".tmp.png"
    Image.fromarray(bicubic_downscale(hr, scale)).save(tmp)
    os.replace(tmp, target)
    written += 1
  return written, kept


def write_bundled(root: str) -> list[str]:
  """The bundled photos as DIV2K's HR-only layout under `root`; returns the files written."""
  from PIL import Image

  from fmp_jax.data.bundled import bundled_images
  written = []
  for split, folder, first in (("train", "DIV2K_train_HR", 1), ("eval", "DIV2K_valid_HR", 801)):
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    for i, image in enumerate(bundled_images(split).values()):
      path = os.path.join(root, folder, f"{first + i:04d}.png")
      Image.fromarray(image).save(path)
      written.append(path)
  return written


def write_tfds(hr: str, scale: int, out: str, split: str, overwrite: bool) -> str:
  from tqdm import tqdm

  from fmp_jax.data import folders, tfds_source
  from fmp_jax.data.images import list_images

  hr_dir, lr_dir = folders.resolve_layout(hr, scale)
  total = len(list_images(hr_dir))

  def pairs_fn():
    return tqdm(folders.iter_pairs(hr_dir, scale, lr_dir), total=total,
                desc=f"x{scale} {split}", unit="img")

  version_dir = os.path.join(out, tfds_source.BUILDER_NAME, f"x{scale}",
                             str(tfds_source.FmpPairedSr.VERSION))
  if os.path.isdir(version_dir) and not overwrite:
    print(f"x{scale}: a dataset already exists under {out}; reusing it (--overwrite rebuilds)")
  else:
    print(f"x{scale}: HR {hr_dir}; LR {lr_dir if lr_dir else 'generated with MATLAB bicubic'}")
  return tfds_source.build_paired_dataset({split: pairs_fn}, out, scale, overwrite=overwrite)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="\n".join(__doc__.splitlines()[1:]))
  parser.add_argument("--hr", help="HR folder, set folder (HR/) or DIV2K root")
  parser.add_argument("--from-bundled", metavar="DIR",
                      help="write the bundled photos as a DIV2K-style folder DIR (no --hr)")
  parser.add_argument("--scale", type=int, nargs="+", default=[2])
  parser.add_argument("--tfds", action="store_true", help="write an array_record TFDS dataset")
  parser.add_argument("--split", default="train", help="TFDS split name (default train)")
  parser.add_argument("--out", default=None,
                      help="TFDS data_dir (default <parent of --hr>/tfds), or the folder that "
                           "gets X{s}/ LR subfolders (default: the layout's LR folder)")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace existing LR files / TFDS dataset")
  args = parser.parse_args(argv)
  if args.from_bundled:
    files = write_bundled(args.from_bundled)
    print(f"{len(files)} bundled photos written under {args.from_bundled} (DIV2K_train_HR, "
          f"DIV2K_valid_HR); use it as --config.data.data_dir")
    return 0
  if not args.hr:
    parser.error("--hr (or --from-bundled) is required")
  try:
    if not os.path.isdir(args.hr):
      raise DataError(f"{args.hr}: no such folder.")
    for scale in args.scale:
      if args.tfds:
        if scale not in (2, 3, 4, 8):
          raise DataError(f"--scale {scale}: the TFDS dataset has configs x2, x3, x4, x8.")
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.hr)), "tfds")
        path = write_tfds(args.hr, scale, out, args.split, args.overwrite)
        print(f"x{scale}: TFDS dataset at {path}\n  train with --config.data.train=tfds "
              f"--config.data.tfds_name={path}")
        continue
      if not 2 <= scale <= 8:
        raise DataError(f"--scale {scale}: use an integer factor from 2 to 8.")
      from fmp_jax.data.folders import resolve_layout
      hr_dir, _ = resolve_layout(args.hr, scale)
      out_dir = os.path.join(args.out, f"X{scale}") if args.out else lr_dir_for(hr_dir, scale)
      written, kept = write_lr_folder(hr_dir, scale, out_dir, args.overwrite)
      print(f"x{scale}: {written} LR images written to {out_dir}"
            + (f", {kept} existing kept (--overwrite replaces them)" if kept else ""))
  except DataError as e:
    print(f"prepare_data.py: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Prepare SR training/eval data from HR images (never downloads anything).

  # LR folders in the DIV2K/BasicSR layout: <parent of HR>/..._LR_bicubic/X2/NAMEx2.png
  python tools/prepare_data.py --hr /data/DIV2K/DIV2K_train_HR --scale 2 3 4
  # Benchmark layout: Set5/HR -> Set5/LR_bicubic/X2
  python tools/prepare_data.py --hr /data/Set5/HR --scale 2
  # A TF-free TFDS dataset (array_record) for data.train='tfds'
  python tools/prepare_data.py --hr /data/DIV2K/DIV2K_train_HR --scale 2 --tfds --out /data/tfds

LR images are MATLAB-style bicubic downscales of the mod-cropped HR images.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from fmp_jax.data import DataError, Pair, bicubic_downscale, modcrop  # noqa: E402
from fmp_jax.data.images import list_images, read_image  # noqa: E402


def lr_dir_for(hr_dir: str, scale: int) -> str:
  hr_dir = os.path.abspath(hr_dir.rstrip("/"))
  parent, base = os.path.split(hr_dir)
  if base == "HR":  # Set5/HR -> Set5/LR_bicubic/X2
    return os.path.join(parent, "LR_bicubic", f"X{scale}")
  if base.endswith("_HR"):  # DIV2K_train_HR -> DIV2K_train_LR_bicubic/X2
    return os.path.join(parent, base[:-3] + "_LR_bicubic", f"X{scale}")
  return os.path.join(parent, base + "_LR_bicubic", f"X{scale}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--hr", required=True, help="folder of HR images")
  parser.add_argument("--scale", type=int, nargs="+", default=[2])
  parser.add_argument("--tfds", action="store_true", help="write an array_record TFDS dataset")
  parser.add_argument("--out", default=None, help="output folder (TFDS data_dir, or LR root)")
  args = parser.parse_args()
  try:
    files = list_images(args.hr)
    for scale in args.scale:
      if scale not in (2, 3, 4):
        raise DataError(f"--scale {scale}: use 2, 3 or 4.")
      if args.tfds:
        from fmp_jax.data import tfds_source

        def pairs_fn(scale=scale):
          for path in tqdm(files, desc=f"x{scale} pairs", unit="img"):
            hr = modcrop(read_image(path), scale)
            yield Pair(os.path.splitext(os.path.basename(path))[0], bicubic_downscale(hr, scale), hr)
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.hr)), "tfds")
        path = tfds_source.build_paired_dataset(pairs_fn, out, f"x{scale}")
        print(f"x{scale}: TFDS dataset written to {path} (use --config.data.train=tfds "
              f"--config.data.tfds_name={path})")
        continue
      out_dir = os.path.join(args.out, f"X{scale}") if args.out else lr_dir_for(args.hr, scale)
      os.makedirs(out_dir, exist_ok=True)
      for path in tqdm(files, desc=f"x{scale} LR", unit="img"):
        name = os.path.splitext(os.path.basename(path))[0]
        lr = bicubic_downscale(modcrop(read_image(path), scale), scale)
        Image.fromarray(lr).save(os.path.join(out_dir, f"{name}x{scale}.png"))
      print(f"x{scale}: {len(files)} LR images in {out_dir}")
  except DataError as e:
    sys.exit(f"prepare_data.py: {e}")


if __name__ == "__main__":
  main()

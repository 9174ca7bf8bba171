"""A DIV2K-style set of real high-resolution photos, built offline from Debian's wallpapers.

  python bench/photo_set.py --out ~/sr_data/wallpapers     # ~1 min after a ~140 MB download
  python -m fmp_jax.main --config=configs/paper_proxy.py --workdir=/tmp/proxy \
      --config.data.data_dir=~/sr_data/wallpapers
  python bench/ablation.py --data_dir ~/sr_data/wallpapers ...

The images come from two Debian packages (bookworm), whose copyright files list each
wallpaper's free licence (`DIR/licences/<package>.copyright`, copied from the packages):

* ``mate-backgrounds`` 1.26.0-1: ``/usr/share/backgrounds/mate/{nature,abstract}/*.jpg``
* ``plasma-workspace-wallpapers`` 4:5.27.5-2: ``/usr/share/wallpapers/<Name>/contents/images/``
  (one wallpaper, several sizes: the largest is taken)

The packages are fetched with ``apt-get download`` into ``--cache`` (nothing is installed;
``apt-get update`` runs first when the package lists are empty) and unpacked there with
``dpkg-deb -x``. Each chosen image is read, turned into 8-bit RGB, and shrunk with a Lanczos
filter so that its long side is at most 2040 px (DIV2K's size; smaller images are kept as
they are). The output has DIV2K's layout, HR only; the project's readers make the LR images
with MATLAB bicubic, as they do for DIV2K's HR-only downloads:

  DIR/DIV2K_train_HR/0001.png ... 0037.png    17 photographs, then 20 illustrations
  DIR/DIV2K_valid_HR/0801.png ... 0806.png    6 photographs, held out
  DIR/manifest.json                           package, version, file, sha256 and size of each
                                              source, and the sha256 of each PNG written

``manifest.json``'s own sha256 (printed at the end, and recorded by bench/ablation.py) names the
exact data of a result. A second run over the same cache writes byte-identical PNGs. A package
of another version, or a wallpaper missing from a package, is an error naming it.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image

# Some wallpapers are larger than PIL's decompression-bomb guard (5640x3172 is fine, but the
# guard also warns on 25M+ pixel images); these files come from a signed Debian archive.
Image.MAX_IMAGE_PIXELS = None

MAX_SIDE = 2040  # DIV2K's long side
FIRST_VALID = 801  # DIV2K numbers its validation images from 0801

PACKAGES = {"mate-backgrounds": "1.26.0-1", "plasma-workspace-wallpapers": "4:5.27.5-2"}
MATE = "mate-backgrounds"
PLASMA = "plasma-workspace-wallpapers"
_MATE_DIR = "usr/share/backgrounds/mate"
_PLASMA_DIR = "usr/share/wallpapers"
_COPYRIGHT = "usr/share/doc/{package}/copyright"


class Source(NamedTuple):
  """One wallpaper: the package it ships in, its name there, and whether it is a photograph."""
  package: str
  name: str        # plasma: the wallpaper's folder; mate: the file under backgrounds/mate
  photo: bool


def _plasma(names: str, photo: bool) -> list[Source]:
  return [Source(PLASMA, n, photo) for n in names.split()]


def _mate(names: str, folder: str, photo: bool) -> list[Source]:
  return [Source(MATE, f"{folder}/{n}", photo) for n in names.split()]


VALID = (_plasma("Grey Path EveningGlow", True)
         + _mate("Wood.jpg LadyBird.jpg Blinds.jpg", "nature", True))
TRAIN = (_plasma("BytheWater ColdRipple ColorfulCups DarkestHour FallenLeaf Kite OneStandsOut "
                 "summer_1am", True)
         + _mate("Aqua.jpg Dune.jpg FreshFlower.jpg Garden.jpg GreenMeadow.jpg RainDrops.jpg "
                 "Storm.jpg TwoWings.jpg YellowFlower.jpg", "nature", True)
         + _plasma("Altai Autumn Canopee Cascade Cluster Elarun Flow FlyingKonqui Honeywave "
                   "IceCold Kay Kokkini MilkyWay Opal PastelHills Patak SafeLanding Shell Volna",
                   False)
         + _mate("Elephants_5640x3172.jpg", "abstract", False))


class PhotoSetError(RuntimeError):
  """A package that cannot be had, of another version, or missing a wallpaper."""


# --- the packages -----------------------------------------------------------------------

def _deb_version(deb: str) -> str:
  return subprocess.run(["dpkg-deb", "-f", deb, "Version"], check=True, capture_output=True,
                        text=True).stdout.strip()


def _find_deb(cache: str, package: str) -> Optional[str]:
  debs = sorted(glob.glob(os.path.join(cache, f"{package}_*.deb")))
  return debs[-1] if debs else None


def _apt_lists_empty() -> bool:
  return not glob.glob("/var/lib/apt/lists/*Packages*")


def _download(cache: str, package: str, version: str) -> None:
  """apt-get download PACKAGE=VERSION into `cache` (apt-get update first if it has no lists)."""
  if shutil.which("apt-get") is None:
    raise PhotoSetError(f"{package} {version} is not in {cache} and this machine has no apt-get "
                        f"to download it; copy {package}_*.deb there by hand.")
  if _apt_lists_empty():
    print("apt-get update (the package lists are empty) ...", flush=True)
    subprocess.run(["apt-get", "update"], check=False, capture_output=True)
  print(f"apt-get download {package}={version} ...", flush=True)
  proc = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=cache,
                        capture_output=True, text=True)
  if proc.returncode != 0:
    raise PhotoSetError(f"apt-get download {package}={version} failed (is {version} still in "
                        f"the archive? `apt-cache policy {package}` says which version it has):\n"
                        + proc.stderr.strip())


def unpack_packages(cache: str, download: bool = True) -> dict[str, str]:
  """{package: unpacked root} for PACKAGES, each at its pinned version, under `cache`."""
  os.makedirs(cache, exist_ok=True)
  roots = {}
  for package, version in PACKAGES.items():
    deb = _find_deb(cache, package)
    if deb is None and download:
      _download(cache, package, version)
      deb = _find_deb(cache, package)
    if deb is None:
      raise PhotoSetError(f"{package}: no {package}_*.deb in {cache}.")
    found = _deb_version(deb)
    if found != version:
      raise PhotoSetError(f"{deb}: {package} is version {found}, this set is made from "
                          f"{version}; a different version may ship other images. Remove the "
                          f"file to download {version}.")
    root = os.path.join(cache, "unpacked", f"{package}_{version.replace(':', '%3a')}")
    if not os.path.isdir(root):
      tmp = root + ".tmp"
      shutil.rmtree(tmp, ignore_errors=True)
      os.makedirs(tmp)
      subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
      os.replace(tmp, root)
    roots[package] = root
  return roots


# --- one image --------------------------------------------------------------------------

def source_file(root: str, source: Source) -> str:
  """The file of `source` in its package's unpacked `root`: for a plasma wallpaper, the image
  in contents/images/ with the most pixels (its largest rendering)."""
  if source.package == MATE:
    path = os.path.join(root, _MATE_DIR, source.name)
    if not os.path.isfile(path):
      raise PhotoSetError(f"{source.package} {PACKAGES[source.package]}: no file "
                          f"{_MATE_DIR}/{source.name}.")
    return path
  folder = os.path.join(root, _PLASMA_DIR, source.name, "contents", "images")
  files = [p for p in sorted(glob.glob(os.path.join(folder, "*")))
           if os.path.isfile(p) and not os.path.islink(p)]
  if not files:
    raise PhotoSetError(f"{source.package} {PACKAGES[source.package]}: no wallpaper "
                        f"{source.name} (no images in {_PLASMA_DIR}/{source.name}/contents/"
                        f"images).")

  def pixels(path):
    with Image.open(path) as im:
      return im.size[0] * im.size[1], os.path.getsize(path)

  return max(files, key=pixels)


def to_hr(path: str, max_side: int = MAX_SIDE) -> Image.Image:
  """The image at `path` as 8-bit RGB, Lanczos-shrunk so that its long side is <= max_side."""
  with Image.open(path) as im:
    im.load()
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
      # Composite transparent pixels on black, as a desktop with no colour set shows them.
      im = im.convert("RGBA")
      rgb = Image.new("RGB", im.size)
      rgb.paste(im, mask=im.getchannel("A"))
      im = rgb
    else:
      im = im.convert("RGB")
  long_side = max(im.size)
  if long_side > max_side:
    w, h = im.size
    size = (max(1, round(w * max_side / long_side)), max(1, round(h * max_side / long_side)))
    im = im.resize(size, Image.Resampling.LANCZOS)
  return im


def _png_bytes(im: Image.Image) -> bytes:
  buf = io.BytesIO()
  im.save(buf, format="PNG", optimize=False, compress_level=6)
  return buf.getvalue()


def _sha256(path_or_bytes) -> str:
  if isinstance(path_or_bytes, bytes):
    return hashlib.sha256(path_or_bytes).hexdigest()
  h = hashlib.sha256()
  with open(path_or_bytes, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


# --- the set ----------------------------------------------------------------------------

def build(out: str, roots: dict[str, str], max_side: int = MAX_SIDE, verbose: bool = True) -> dict:
  """Writes the DIV2K layout and manifest.json under `out` from unpacked package `roots`.

  Every source file is located before anything is written, so a missing wallpaper fails at
  once. Returns the manifest (also written as out/manifest.json).
  """
  plan = []
  for split, sources, first in (("train", TRAIN, 1), ("valid", VALID, FIRST_VALID)):
    for i, source in enumerate(sources):
      plan.append((split, f"{first + i:04d}", source, source_file(roots[source.package], source)))
  entries = []
  for split, stem, source, path in plan:
    folder = os.path.join(out, f"DIV2K_{split}_HR")
    os.makedirs(folder, exist_ok=True)
    with Image.open(path) as im:
      source_size = list(im.size)
    hr = to_hr(path, max_side)
    png = _png_bytes(hr)
    target = os.path.join(folder, stem + ".png")
    with open(target + ".tmp", "wb") as f:
      f.write(png)
    os.replace(target + ".tmp", target)
    entries.append({
        "split": split, "file": os.path.relpath(target, out), "kind":
        "photo" if source.photo else "illustration", "package": source.package,
        "version": PACKAGES[source.package], "source": os.path.relpath(path, roots[source.package]),
        "source_sha256": _sha256(path), "source_bytes": os.path.getsize(path),
        "source_size": source_size, "size": list(hr.size), "sha256": _sha256(png)})
    if verbose:
      print(f"  {entries[-1]['file']}  {hr.size[0]}x{hr.size[1]}  <- {source.package} "
            f"{entries[-1]['source']} ({source_size[0]}x{source_size[1]})", flush=True)
  licences = os.path.join(out, "licences")
  os.makedirs(licences, exist_ok=True)
  for package, root in roots.items():
    copyright_file = os.path.join(root, _COPYRIGHT.format(package=package))
    if os.path.isfile(copyright_file):
      shutil.copyfile(copyright_file, os.path.join(licences, f"{package}.copyright"))
  manifest = {"max_side": max_side, "resampler": "PIL Lanczos", "lr": "MATLAB bicubic of the "
              "mod-cropped HR, made by fmp_jax.data when read", "packages": PACKAGES,
              "images": entries}
  with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
    f.write("\n")
  return manifest


def manifest_sha256(data_dir: str) -> Optional[str]:
  """sha256 of DIR/manifest.json (None without one): names the exact data of a result."""
  path = os.path.join(data_dir, "manifest.json")
  return _sha256(path) if os.path.isfile(path) else None


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="folder to write the DIV2K layout into")
  parser.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache",
                                                      "fmp_jax", "photo_set"),
                      help="where the .deb files are downloaded and unpacked")
  parser.add_argument("--no-download", action="store_true",
                      help="use only the .deb files already in --cache")
  parser.add_argument("--max-side", type=int, default=MAX_SIDE)
  args = parser.parse_args(argv)
  try:
    roots = unpack_packages(os.path.expanduser(args.cache), download=not args.no_download)
    out = os.path.expanduser(args.out)
    manifest = build(out, roots, args.max_side)
  except (PhotoSetError, subprocess.CalledProcessError) as e:
    print(f"photo_set.py: error: {e}", file=sys.stderr)
    return 2
  sizes = np.array([e["size"] for e in manifest["images"]])
  n = {s: sum(e["split"] == s for e in manifest["images"]) for s in ("train", "valid")}
  print(f"wrote {n['train']} train and {n['valid']} valid images to {out} "
        f"({sizes.min()}-{sizes.max()} px a side); manifest sha256 {manifest_sha256(out)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

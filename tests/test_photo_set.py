"""bench/photo_set.py on fake wallpaper packages: layout, choice of file, resize, manifest, errors.

The packages are real .deb files built here with dpkg-deb from tiny images whose colour
encodes which wallpaper (and which of its sizes) they are, so nothing is downloaded.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def _load(repo_root):
  spec = importlib.util.spec_from_file_location("photo_set", repo_root / "bench" / "photo_set.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _colour(i: int) -> tuple:
  return (10 + 5 * i, 200 - 4 * i, (37 * i) % 256)


def _image(path, size, colour, mode="RGB"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fill = colour + (255,) if mode == "RGBA" else colour
  Image.new(mode, size, fill).save(path, format="PNG")  # lossless, whatever the name


def _make_debs(ps, cache, versions=None, drop=()):
  """One .deb per package of ps.PACKAGES, holding every wallpaper of the set but `drop`.

  Wallpaper k (in TRAIN + VALID order) is a flat image of colour _colour(k). Each plasma
  wallpaper also has a smaller rendering in a different colour and a symlink, which must be
  passed over; plasma 'Kay' is 48x36 RGBA (resized and flattened); one mate image is mode P.
  """
  versions = versions or ps.PACKAGES
  trees = {p: cache / f"tree_{i}" for i, p in enumerate(ps.PACKAGES)}
  for k, source in enumerate(ps.TRAIN + ps.VALID):
    if source.name in drop:
      continue
    root = trees[source.package]
    if source.package == ps.MATE:
      path = root / "usr/share/backgrounds/mate" / source.name
      _image(str(path), (20, 14), _colour(k), mode="RGB")
      if source.name.endswith("Storm.jpg"):
        Image.open(path).convert("P", palette=Image.Palette.ADAPTIVE).save(path, format="PNG")  # a palette file named .jpg
    else:
      images = root / "usr/share/wallpapers" / source.name / "contents" / "images"
      size = (48, 36) if source.name == "Kay" else (24, 16)
      _image(str(images / f"{size[0]}x{size[1]}.png"), size, _colour(k),
             mode="RGBA" if source.name == "Kay" else "RGB")
      _image(str(images / "12x8.png"), (12, 8), (0, 0, 0))
      os.symlink(f"{size[0]}x{size[1]}.png", images / "800x600.png")
  debs = []
  for package, root in trees.items():
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {versions[package]}\nArchitecture: all\n"
        f"Maintainer: test <test@example.org>\nDescription: fake wallpapers\n")
    doc = root / "usr/share/doc" / package
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "copyright").write_text(f"{package}: licence text\n")
    deb = cache / f"{package}_{versions[package].replace(':', '%3a')}_all.deb"
    subprocess.run(["dpkg-deb", "-Znone", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    shutil.rmtree(root)
    debs.append(deb)
  return debs


def test_builds_the_div2k_layout_with_a_manifest_and_rebuilds_it_byte_identically(
    repo_root, tmp_path):
  ps = _load(repo_root)
  cache = tmp_path / "cache"
  cache.mkdir()
  _make_debs(ps, cache)
  roots = ps.unpack_packages(str(cache), download=False)
  out = tmp_path / "set"
  manifest = ps.build(str(out), roots, max_side=32, verbose=False)

  train = sorted(os.listdir(out / "DIV2K_train_HR"))
  valid = sorted(os.listdir(out / "DIV2K_valid_HR"))
  assert train == [f"{i:04d}.png" for i in range(1, 38)]
  assert valid == [f"{i:04d}.png" for i in range(801, 807)]
  order = ps.TRAIN + ps.VALID
  for k, name in enumerate([f"DIV2K_train_HR/{n}" for n in train]
                           + [f"DIV2K_valid_HR/{n}" for n in valid]):
    pixels = np.asarray(Image.open(out / name))
    assert pixels.dtype == np.uint8 and pixels.shape[2] == 3, name
    # Each file holds its own wallpaper's largest rendering (not the 12x8 black one).
    assert np.abs(pixels.astype(int) - _colour(k)).max() <= 1, (name, order[k])
    entry = manifest["images"][k]
    assert entry["file"] == name and entry["package"] == order[k].package
    assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert entry["version"] == ps.PACKAGES[order[k].package]
  kay = manifest["images"][[s.name for s in order].index("Kay")]
  # 48x36 shrunk to a long side of 32; the others (24x16, 20x14) are left as they are.
  assert kay["source_size"] == [48, 36] and kay["size"] == [32, 24]
  assert kay["source"].endswith("Kay/contents/images/48x36.png")
  assert {e["kind"] for e in manifest["images"][:17]} == {"photo"}
  assert {e["kind"] for e in manifest["images"][17:37]} == {"illustration"}
  assert {e["kind"] for e in manifest["images"][37:]} == {"photo"}
  assert json.loads((out / "manifest.json").read_text()) == manifest
  assert (out / "licences" / "mate-backgrounds.copyright").read_text().startswith("mate")

  # The project's DIV2K reader takes the set as it is, LR made by MATLAB bicubic.
  from fmp_jax import data
  pairs = data.div2k_pairs(str(out), 2, split="valid")
  assert len(pairs) == 6 and pairs[0].lr.shape == (8, 12, 3) and pairs[0].lr_path is None

  again = tmp_path / "again"
  ps.build(str(again), ps.unpack_packages(str(cache), download=False), max_side=32,
           verbose=False)
  for name in [f"DIV2K_train_HR/{n}" for n in train] + ["manifest.json"]:
    assert (again / name).read_bytes() == (out / name).read_bytes(), name
  assert ps.manifest_sha256(str(again)) == ps.manifest_sha256(str(out))


def test_a_package_of_another_version_is_refused_by_name(repo_root, tmp_path):
  ps = _load(repo_root)
  versions = dict(ps.PACKAGES, **{ps.MATE: "1.28.0-1"})
  _make_debs(ps, tmp_path, versions=versions)
  with pytest.raises(ps.PhotoSetError, match=r"mate-backgrounds is version 1\.28\.0-1.*1\.26\.0-1"):
    ps.unpack_packages(str(tmp_path), download=False)


def test_a_missing_wallpaper_is_named_before_anything_is_written(repo_root, tmp_path):
  ps = _load(repo_root)
  _make_debs(ps, tmp_path, drop=("Path", "nature/Blinds.jpg"))
  roots = ps.unpack_packages(str(tmp_path), download=False)
  with pytest.raises(ps.PhotoSetError, match="no wallpaper Path"):
    ps.build(str(tmp_path / "set"), roots, verbose=False)
  assert not (tmp_path / "set").exists()
  os.makedirs(os.path.join(roots[ps.PLASMA], "usr/share/wallpapers/Path/contents/images"))
  _image(os.path.join(roots[ps.PLASMA], "usr/share/wallpapers/Path/contents/images/4x4.png"),
         (4, 4), (1, 2, 3))
  with pytest.raises(ps.PhotoSetError, match="no file usr/share/backgrounds/mate/nature/Blinds"):
    ps.build(str(tmp_path / "set"), roots, verbose=False)


def test_a_package_that_is_not_there_and_may_not_be_downloaded_is_named(repo_root, tmp_path):
  ps = _load(repo_root)
  with pytest.raises(ps.PhotoSetError, match="mate-backgrounds: no mate-backgrounds_"):
    ps.unpack_packages(str(tmp_path), download=False)

"""Tiny raw datasets in the layouts the converters read, each with a few bad files (TF-free)."""
import io
import os
import tarfile

import numpy as np
from PIL import Image


def jpeg_bytes(rng, height=30, width=40, mode="RGB", fmt="JPEG"):
  channels = {"RGB": 3, "CMYK": 4}[mode]
  image = Image.fromarray(rng.integers(0, 255, (height, width, channels), np.uint8), mode)
  out = io.BytesIO()
  image.save(out, format=fmt)
  return out.getvalue()


def bad_files(rng):
  """{name: bytes}: a CMYK JPEG and a PNG (both convertible), a truncated JPEG and a text file (skipped)."""
  return {"cmyk.JPEG": jpeg_bytes(rng, mode="CMYK"), "png.JPEG": jpeg_bytes(rng, fmt="PNG"),
          "truncated.JPEG": jpeg_bytes(rng, 64, 64)[:300], "text.JPEG": b"not an image"}


def imagenet1k_tree(root, classes=3, per_class=5, val_per_class=2, seed=0):
  """train/<wnid>/, a flat val/ with devkit ground truth + synset order, LOC_val_solution.csv, and a blacklist."""
  rng = np.random.default_rng(seed)
  wnids = [f"n0{i:07d}" for i in range(1, classes + 1)]
  devkit_order = wnids[::-1]  # the devkit's id order is not sorted order
  for w in wnids:
    os.makedirs(root / "train" / w)
    for i in range(per_class):
      (root / "train" / w / f"{w}_{i}.JPEG").write_bytes(jpeg_bytes(rng))
  for name, data in bad_files(rng).items():
    (root / "train" / wnids[0] / name).write_bytes(data)
  os.makedirs(root / "val")
  truth, solution = [], ["ImageId,PredictionString"]
  for i in range(classes * val_per_class):
    w = wnids[i % classes]
    image_id = f"ILSVRC2012_val_{i + 1:08d}"
    (root / "val" / f"{image_id}.JPEG").write_bytes(jpeg_bytes(rng))
    truth.append(str(devkit_order.index(w) + 1))
    solution.append(f"{image_id},{w} 1 2 3 4")
  (root / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(truth) + "\n")
  (root / "ILSVRC2012_synsets.txt").write_text("\n".join(devkit_order) + "\n")
  (root / "LOC_val_solution.csv").write_text("\n".join(solution) + "\n")
  (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} thing {w[-1]}, item\n" for w in wnids))
  (root / "blacklist.txt").write_text("2\n5\n")
  return wnids


def imagenet22k_tree(root, seed=0):
  """fall11-style <wnid>.tar files and winter21-style <wnid>/ folders, with tiny and empty classes.

  sizes: n00000001 tar of 20, n00000002 folder of 9, n00000003 tar of 1 (tiny), n00000004 folder of 2,
  n00000005 empty tar; plus bad files in n00000001.tar.
  """
  rng = np.random.default_rng(seed)
  os.makedirs(root)
  sizes = {"n00000001": 20, "n00000002": 9, "n00000003": 1, "n00000004": 2, "n00000005": 0}
  for i, (wnid, n) in enumerate(sizes.items()):
    files = {f"{wnid}_{k}.JPEG": jpeg_bytes(rng) for k in range(n)}
    if wnid == "n00000001":
      files.update(bad_files(rng))
    if i % 2 == 0:
      with tarfile.open(root / f"{wnid}.tar", "w") as tar:
        for name, data in files.items():
          info = tarfile.TarInfo(name)
          info.size = len(data)
          tar.addfile(info, io.BytesIO(data))
    else:
      os.makedirs(root / wnid)
      for name, data in files.items():
        (root / wnid / name).write_bytes(data)
  (root / "words.txt").write_text("".join(f"{w}\tword {w[-1]}\n" for w in sizes))
  return sizes


def places365_tree(root, seed=0):
  """categories_places365.txt, standard and challenge train lists, val list, data_256/ and val_256/."""
  rng = np.random.default_rng(seed)
  categories = ["/a/airfield", "/b/bakery/shop", "/c/campsite"]
  (root).mkdir(parents=True)
  (root / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(categories)))
  standard, challenge = [], []
  for i, c in enumerate(categories):
    os.makedirs(root / "data_256" / c.lstrip("/"))
    for k in range(4):
      rel = f"{c}/{k + 1:08d}.jpg"
      (root / "data_256" / rel.lstrip("/")).write_bytes(jpeg_bytes(rng))
      (standard if k < 3 else challenge).append(f"{rel} {i}")
  bad = root / "data_256" / "a" / "airfield"
  for name, data in bad_files(rng).items():
    (bad / name).write_bytes(data)
    standard.append(f"/a/airfield/{name} 0")
  (root / "places365_train_standard.txt").write_text("\n".join(standard) + "\n")
  (root / "places365_train_challenge.txt").write_text("\n".join(standard + challenge) + "\n")
  os.makedirs(root / "val_256")
  val = []
  for k in range(6):
    name = f"Places365_val_{k + 1:08d}.jpg"
    (root / "val_256" / name).write_bytes(jpeg_bytes(rng))
    val.append(f"{name} {k % 3}")
  (root / "places365_val.txt").write_text("\n".join(val) + "\n")
  return categories

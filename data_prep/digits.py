"""scikit-learn's bundled digits rendered as an ILSVRC2012-style JPEG tree: the demo's small real dataset.

  python -m data_prep.digits --output_dir=data/digits/raw

Writes `train/<wnid>/<wnid>_<n>.JPEG`, a flat `val/ILSVRC2012_val_<n>.JPEG` with the devkit-style
`ILSVRC2012_validation_ground_truth.txt` (1-based ids in the order of `ILSVRC2012_synsets.txt`) and
`LOC_synset_mapping.txt`, so `python -m data_prep.imagenet1k` converts it exactly as it converts ImageNet.
The 1,797 8×8 digits are upsampled to a seeded random size between 32 and 48 pixels a side (ImageNet
images vary in size and aspect too) and split 80/20 per class with a fixed seed.
"""
import os
import sys

import numpy as np
from absl import app, flags
from PIL import Image

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "data/digits/raw", "Where the JPEG tree goes.")
flags.DEFINE_float("val_fraction", 0.2, "Fraction of each class held out for validation.")
flags.DEFINE_integer("seed", 0, "Seed of the split and of the image sizes.")

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Synthetic ImageNet-style ids; the devkit order below deliberately differs from sorted order (as the
# real devkit's does) so the converter's id mapping is exercised, not assumed.
WNIDS = tuple(f"n9000000{d}" for d in range(10))
DEVKIT_ORDER = WNIDS[1:] + WNIDS[:1]


def render(pixels: np.ndarray, size) -> Image.Image:
  """An 8×8 digit (0..16) as a grey RGB image of the given (width, height)."""
  gray = Image.fromarray(np.uint8(np.round(pixels * 255.0 / 16.0)), mode="L")
  return gray.resize(size, Image.BICUBIC).convert("RGB")


def build(output_dir: str, val_fraction: float = 0.2, seed: int = 0) -> dict:
  """Writes the tree; returns {"train": n, "val": n}."""
  from sklearn.datasets import load_digits  # Bundled with scikit-learn: nothing is downloaded.

  digits = load_digits()
  rng = np.random.default_rng(seed)
  sizes = rng.integers(32, 49, size=(len(digits.target), 2))
  is_val = np.zeros(len(digits.target), bool)
  for d in range(10):
    members = np.flatnonzero(digits.target == d)
    is_val[rng.choice(members, size=round(len(members) * val_fraction), replace=False)] = True

  for wnid in WNIDS:
    os.makedirs(os.path.join(output_dir, "train", wnid), exist_ok=True)
  os.makedirs(os.path.join(output_dir, "val"), exist_ok=True)
  ground_truth = []
  per_class = [0] * 10
  for i, (pixels, d) in enumerate(zip(digits.images, digits.target)):
    image = render(pixels, tuple(int(s) for s in sizes[i]))
    if is_val[i]:
      ground_truth.append(DEVKIT_ORDER.index(WNIDS[d]) + 1)
      path = os.path.join(output_dir, "val", f"ILSVRC2012_val_{len(ground_truth):08d}.JPEG")
    else:
      per_class[d] += 1
      path = os.path.join(output_dir, "train", WNIDS[d], f"{WNIDS[d]}_{per_class[d]}.JPEG")
    image.save(path, format="JPEG", quality=95)

  with open(os.path.join(output_dir, "ILSVRC2012_validation_ground_truth.txt"), "w") as f:
    f.writelines(f"{g}\n" for g in ground_truth)
  with open(os.path.join(output_dir, "ILSVRC2012_synsets.txt"), "w") as f:
    f.writelines(f"{w}\n" for w in DEVKIT_ORDER)
  with open(os.path.join(output_dir, "LOC_synset_mapping.txt"), "w") as f:
    f.writelines(f"{w} digit {n}\n" for w, n in zip(WNIDS, NAMES))
  return {"train": int((~is_val).sum()), "val": int(is_val.sum())}


def main(argv):
  del argv
  counts = build(FLAGS.output_dir, FLAGS.val_fraction, FLAGS.seed)
  print(f"{FLAGS.output_dir}: {counts['train']} train, {counts['val']} val JPEGs in 10 classes", file=sys.stderr)


if __name__ == "__main__":
  app.run(main)

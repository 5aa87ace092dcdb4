"""scikit-learn's bundled digits rendered as an ILSVRC2012-style JPEG tree: the demo's small real dataset.

  python -m data_prep.digits --output_dir=data/digits/raw
  python -m data_prep.digits --task=distorted --output_dir=data/digits_distorted/raw
  python -m data_prep.digits --task=distorted --holdout=tune --output_dir=data/digits_distorted_tune/raw

Writes `train/<wnid>/<wnid>_<n>.JPEG`, a flat `val/ILSVRC2012_val_<n>.JPEG` with the devkit-style
`ILSVRC2012_validation_ground_truth.txt` (1-based ids in the order of `ILSVRC2012_synsets.txt`) and
`LOC_synset_mapping.txt`, so `python -m data_prep.imagenet1k` converts it exactly as it converts ImageNet.

Task `plain`: the 1,797 8×8 digits upsampled to a seeded random size between 32 and 48 pixels a side
(ImageNet images vary in size and aspect too), split 80/20 per class with a fixed seed (359 validation
images: one image is 0.28 points, and a small ResNet reaches 98–99 %).

Task `distorted`: a task hard enough to measure a 1-point effect. Each source digit is split off first
(30 % of each class held out, so no validation image shares a writer's digit with training), then
rendered several times (`--train_copies`, `--val_copies`) with label-preserving distortions: a random
affine map (rotation ±22°, shear ±0.35, scale 0.75–1.1, shift ±3 px on a 32-px canvas), stroke
thinning/thickening, a faint second digit behind it (15–35 % of the real one's contrast), a random light
colour on a random dark one, blur and pixel noise. About 5,000 training and 1,600 validation images (one
image ≈ 0.06 points). `--holdout=tune`
writes a second tree for choosing recipes: its validation images are renderings of a further 20 % of the
*training* sources (and those sources leave its training set), so the reported validation split is never
used to tune anything.
"""
import os
import sys

import numpy as np
from absl import app, flags
from PIL import Image

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "data/digits/raw", "Where the JPEG tree goes.")
flags.DEFINE_enum("task", "plain", ["plain", "distorted"], "plain digits, or the distorted task (module doc).")
flags.DEFINE_float("val_fraction", None, "Fraction of each class held out for validation (default: 0.2 plain, "
                   "0.3 distorted).")
flags.DEFINE_integer("train_copies", 4, "distorted: renderings of each training digit.")
flags.DEFINE_integer("val_copies", 3, "distorted: renderings of each validation digit.")
flags.DEFINE_enum("holdout", "report", ["report", "tune"], "distorted: the reported validation split, or a "
                  "tuning split carved out of the training digits.")
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


def _affine_mask(pixels: np.ndarray, rng: np.random.Generator, canvas: int) -> Image.Image:
  """An 8×8 digit (0..16) as a canvas² grey mask under a random affine map (module doc)."""
  digit = Image.fromarray(np.uint8(np.round(pixels * 255.0 / 16.0)), mode="L").resize((24, 24), Image.BICUBIC)
  angle, shear = np.deg2rad(rng.uniform(-22, 22)), rng.uniform(-0.35, 0.35)
  scale, (dx, dy) = rng.uniform(0.75, 1.1), rng.uniform(-3, 3, size=2)
  # The inverse map (output → input pixel) that PIL's affine transform takes, about the canvas centre.
  c, s = np.cos(angle), np.sin(angle)
  forward = scale * np.array([[c, -s + shear * c], [s, c + shear * s]])
  inverse = np.linalg.inv(forward)
  centre_out = np.array([canvas / 2 + dx, canvas / 2 + dy])
  offset = np.array([12.0, 12.0]) - inverse @ centre_out
  return digit.transform((canvas, canvas), Image.AFFINE, (*inverse[0], offset[0], *inverse[1], offset[1]),
                         resample=Image.BICUBIC)


def render_distorted(pixels: np.ndarray, rng: np.random.Generator, clutter: np.ndarray,
                     canvas: int = 32) -> Image.Image:
  """One label-preserving random rendering of an 8×8 digit (module doc) as an RGB image of canvas² pixels;
  `clutter` is another digit drawn faintly behind it."""
  from PIL import ImageFilter
  mask = _affine_mask(pixels, rng, canvas)
  stroke = rng.integers(3)  # thinner, unchanged, thicker
  if stroke != 1:
    mask = mask.filter(ImageFilter.MinFilter(3) if stroke == 0 else ImageFilter.MaxFilter(3))
  alpha = np.asarray(mask, np.float64)[..., None] / 255.0
  # A faint second digit, shifted, behind the real one: clutter that does not carry the label.
  faint = rng.uniform(0.15, 0.35) * np.asarray(_affine_mask(clutter, rng, canvas), np.float64)[..., None] / 255.0
  # A light digit on a dark ground, each of a random colour (the polarity stays, as ink on paper does).
  background, foreground = rng.uniform(0, 110, 3), rng.uniform(150, 255, 3)
  image = background + np.maximum(alpha, faint) * (foreground - background)
  image = Image.fromarray(np.uint8(np.clip(image + rng.normal(0, rng.uniform(0, 25), image.shape), 0, 255)))
  return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.0)))


def held_out(targets: np.ndarray, fraction: float, rng: np.random.Generator, among=None) -> np.ndarray:
  """A boolean mask holding out `fraction` of each class (of the indices in `among`, default all)."""
  mask = np.zeros(len(targets), bool)
  pool = np.ones(len(targets), bool) if among is None else among
  for d in range(10):
    members = np.flatnonzero((targets == d) & pool)
    mask[rng.choice(members, size=round(len(members) * fraction), replace=False)] = True
  return mask


def build(output_dir: str, val_fraction: float = None, seed: int = 0, task: str = "plain", train_copies: int = 4,
          val_copies: int = 3, holdout: str = "report") -> dict:
  """Writes the tree; returns {"train": images, "val": images, "sources": {"train": […], "val": […]}} (the
  indices of load_digits() each split was rendered from)."""
  from sklearn.datasets import load_digits  # Bundled with scikit-learn: nothing is downloaded.

  digits = load_digits()
  rng = np.random.default_rng(seed)
  if val_fraction is None:
    val_fraction = 0.2 if task == "plain" else 0.3
  sizes = rng.integers(32, 49, size=(len(digits.target), 2))
  is_val = held_out(digits.target, val_fraction, rng)
  in_train = ~is_val
  if task == "distorted" and holdout == "tune":
    # The tuning split: a further 20 % of the training digits, out of this tree's training set.
    is_val = held_out(digits.target, 0.2, rng, among=in_train)
    in_train &= ~is_val

  for wnid in WNIDS:
    os.makedirs(os.path.join(output_dir, "train", wnid), exist_ok=True)
  os.makedirs(os.path.join(output_dir, "val"), exist_ok=True)
  ground_truth = []
  per_class = [0] * 10
  render_rng = np.random.default_rng([seed, 1])  # the renderings, independent of the split's draws
  for i, (pixels, d) in enumerate(zip(digits.images, digits.target)):
    if not (is_val[i] or in_train[i]):
      continue
    if task == "plain":
      images = [render(pixels, tuple(int(s) for s in sizes[i]))]
    else:
      copies = val_copies if is_val[i] else train_copies
      images = [render_distorted(pixels, render_rng, digits.images[render_rng.integers(len(digits.images))])
                for _ in range(copies)]
    for image in images:
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
  return {"train": sum(per_class), "val": len(ground_truth),
          "sources": {"train": np.flatnonzero(in_train).tolist(), "val": np.flatnonzero(is_val).tolist()}}


def main(argv):
  del argv
  counts = build(FLAGS.output_dir, FLAGS.val_fraction, FLAGS.seed, FLAGS.task, FLAGS.train_copies,
                 FLAGS.val_copies, FLAGS.holdout)
  print(f"{FLAGS.output_dir}: {counts['train']} train, {counts['val']} val JPEGs in 10 classes", file=sys.stderr)


if __name__ == "__main__":
  app.run(main)

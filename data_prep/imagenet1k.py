"""ILSVRC2012 (ImageNet-1K) JPEG tree to sharded TFRecords, without TensorFlow.

  python -m data_prep.imagenet1k --raw_dir=/pfs/ILSVRC2012 --output_dir=/local/i1k \
      [--train_shards=1024 --val_shards=128 --num_workers=N --label_offset=0|1]

raw_dir holds `train/<wnid>/*.JPEG` and a validation set in one of three layouts:
  * `val/<wnid>/*.JPEG` (already sorted by class);
  * flat `val/ILSVRC2012_val_XXXXXXXX.JPEG` with the devkit's `ILSVRC2012_validation_ground_truth.txt`
    (1-based ILSVRC2012 ids) and the ids' synsets: the devkit's `data/meta.mat` (found under
    `ILSVRC2012_devkit_t12/`, or `--val_synsets`), or a text file of wnids in id order (id 1 first);
  * flat `val/` with Kaggle's `LOC_val_solution.csv`.
Class names come from `LOC_synset_mapping.txt` or `synset_words.txt` when present. Labels are 0-based
in sorted-wnid order (`--label_offset=1` for the classic 1-based convention).
"""
import csv
import os
import re

from absl import app, flags

from data_prep import cli, shards
from data_prep.listing import find_file, list_images, read_devkit_order, read_synset_words

FLAGS = flags.FLAGS
flags.DEFINE_string("raw_dir", None, "ILSVRC2012 root: train/<wnid>/*.JPEG and val/.")
flags.DEFINE_integer("train_shards", 1024, "Number of training shards.")
flags.DEFINE_integer("val_shards", 128, "Number of validation shards.")
flags.DEFINE_string("val_ground_truth", None,
                    "Devkit ground truth for a flat val/ (default: raw_dir/ILSVRC2012_validation_ground_truth.txt).")
flags.DEFINE_string("val_synsets", None,
                    "The ground truth ids' synsets: the devkit's data/meta.mat, or a text file of wnids in "
                    "ILSVRC2012_ID order (default: raw_dir/ILSVRC2012_synsets.txt, else "
                    "raw_dir/ILSVRC2012_devkit_t12/data/meta.mat).")
flags.DEFINE_string("val_solution_csv", None, "Kaggle LOC_val_solution.csv (default: raw_dir/LOC_val_solution.csv).")
flags.DEFINE_string("synset_words", None,
                    "wnid-to-words file (default: raw_dir/LOC_synset_mapping.txt or synset_words.txt).")
flags.DEFINE_string("val_blacklist", None,
                    "ILSVRC2014 devkit blacklist (1-based val ids); those images go to split validation_blacklisted.")

VAL_ID = re.compile(r"(\d+)\.[A-Za-z]+$")


def validation_wnids(raw_dir, val_dir, listings: dict):
  """[(path, wnid)] for the validation images, whatever layout they come in (`listings`: the devkit files
  the user named, by flag name; None where not given)."""
  subdirs = sorted(d for d in os.listdir(val_dir) if os.path.isdir(os.path.join(val_dir, d)))
  if subdirs:
    return [(os.path.join(val_dir, d, f), d) for d in subdirs for f in list_images(os.path.join(val_dir, d))]
  files = list_images(val_dir)
  solution = find_file(raw_dir, listings.get("val_solution_csv"), "LOC_val_solution.csv")
  if solution:
    with open(solution) as f:
      wnid_of = {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}
    return [(os.path.join(val_dir, f), wnid_of[os.path.splitext(f)[0]]) for f in files
            if os.path.splitext(f)[0] in wnid_of]
  ground_truth = find_file(raw_dir, listings.get("val_ground_truth"), "ILSVRC2012_validation_ground_truth.txt",
                           os.path.join("ILSVRC2012_devkit_t12", "data", "ILSVRC2012_validation_ground_truth.txt"))
  synsets = find_file(raw_dir, listings.get("val_synsets"), "ILSVRC2012_synsets.txt",
                      os.path.join("ILSVRC2012_devkit_t12", "data", "meta.mat"))
  if not (ground_truth and synsets):
    raise app.UsageError(f"{val_dir} is flat: give --val_ground_truth with --val_synsets, or --val_solution_csv")
  with open(ground_truth) as f:
    ids = [int(line) for line in f if line.strip()]
  try:
    devkit_order = read_devkit_order(synsets)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  pairs = []
  for f in files:
    match = VAL_ID.search(f)
    if not match or not 1 <= int(match.group(1)) <= len(ids):
      raise app.UsageError(f"{os.path.join(val_dir, f)}: not one of the {len(ids)} ILSVRC2012_val_<n> images "
                           f"{ground_truth} lists")
    # The devkit numbers images ILSVRC2012_val_00000001 … in ground-truth line order.
    pairs.append((os.path.join(val_dir, f), devkit_order[ids[int(match.group(1)) - 1] - 1]))
  return pairs


def read_blacklist(path):
  with open(path) as f:
    return {int(line) for line in f if line.strip()}


def collect(raw_dir: str, label_offset: int, train_shards: int, val_shards: int, val_blacklist: str = None,
            listings: dict = None):
  """Returns (splits, classes) for `shards.convert`; `listings`: devkit files by flag name (validation_wnids)."""
  listings = listings or {}
  train_dir = os.path.join(raw_dir, "train")
  wnids = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
  words = read_synset_words(find_file(raw_dir, listings.get("synset_words"), "LOC_synset_mapping.txt", "synset_words.txt"))
  label_of = {w: i + label_offset for i, w in enumerate(wnids)}
  entry = lambda path, wnid: shards.Entry(path, label_of[wnid], wnid, words.get(wnid, ""))

  train = [entry(os.path.join(train_dir, w, f), w) for w in wnids for f in list_images(os.path.join(train_dir, w))]
  splits = {"train": shards.Split(train, train_shards)}
  val_dir = os.path.join(raw_dir, "val")
  if os.path.isdir(val_dir):
    pairs = validation_wnids(raw_dir, val_dir, listings)
    unknown = sorted({w for _, w in pairs} - set(label_of))
    if unknown:
      raise app.UsageError(f"validation classes missing from train/: {unknown[:5]}")
    blacklist = read_blacklist(val_blacklist) if val_blacklist else set()
    is_black = lambda p: blacklist and VAL_ID.search(p) and int(VAL_ID.search(p).group(1)) in blacklist
    splits["validation"] = shards.Split([entry(p, w) for p, w in pairs if not is_black(p)], val_shards)
    if blacklist:
      splits["validation_blacklisted"] = shards.Split([entry(p, w) for p, w in pairs if is_black(p)],
                                                      max(1, val_shards // 16))
  classes = [{"synset": w, "text": words.get(w, "")} for w in wnids]
  return splits, classes


def main(argv):
  del argv
  program = "data_prep.imagenet1k"
  if not FLAGS.raw_dir or not os.path.isdir(os.path.join(FLAGS.raw_dir, "train")):
    cli.fail(program, f"--raw_dir must hold train/<wnid>/ (got {FLAGS.raw_dir!r})")
  cli.prepare_output(program)
  listings = {name: FLAGS[name].value for name in ("synset_words", "val_solution_csv", "val_ground_truth",
                                                   "val_synsets")}
  splits, classes = collect(FLAGS.raw_dir, FLAGS.label_offset, FLAGS.train_shards, FLAGS.val_shards,
                            FLAGS.val_blacklist, listings)
  cli.convert("imagenet1k", splits, classes, ("train_shards", "val_shards", "val_blacklist"))


def run():
  app.run(main)


if __name__ == "__main__":
  run()

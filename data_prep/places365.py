r"""Places365 (standard or Challenge lists) to sharded TFRecords, without TensorFlow.

  python -m data_prep.places365 --raw_dir=/pfs/places365 --output_dir=/local/places365 \
      [--variant=standard|challenge --train_shards=1024 --val_shards=128 --num_workers=N]

raw_dir holds the official list files — `categories_places365.txt` ("/a/airfield 0"),
`places365_train_standard.txt` or `places365_train_challenge.txt` ("/a/airfield/00000001.jpg 0") and
`places365_val.txt` ("Places365_val_00000001.jpg 165") — and the images under `data_large/` or `data_256/`
(train) and `val_large/` or `val_256/` (validation), or wherever --train_image_dir / --val_image_dir say.
Labels are the lists' own 0-based class ids (+ --label_offset); the synset is the category path.
"""
import os

from absl import app, flags

from data_prep import cli, shards
from data_prep.listing import find_file

FLAGS = flags.FLAGS
flags.DEFINE_string("raw_dir", None, "Places365 root with the list files.")
flags.DEFINE_enum("variant", "standard", ["standard", "challenge"], "Which training list: 1.8 M or 8 M images.")
flags.DEFINE_string("train_image_dir", None, "Training images root (default: raw_dir/data_large or data_256).")
flags.DEFINE_string("val_image_dir", None, "Validation images root (default: raw_dir/val_large or val_256).")
flags.DEFINE_integer("train_shards", 1024, "Number of training shards.")
flags.DEFINE_integer("val_shards", 128, "Number of validation shards (0: convert the training images only).")


def read_categories(path):
  """[(category path, id)] in id order; '/a/airfield' → text 'airfield', '/b/bakery/shop' → 'bakery/shop'."""
  categories = []
  with open(path) as f:
    for line in f:
      if line.strip():
        name, index = line.split()
        categories.append((name, int(index)))
  categories.sort(key=lambda c: c[1])
  if [i for _, i in categories] != list(range(len(categories))):
    raise app.UsageError(f"{path}: class ids are not 0..{len(categories) - 1}")
  return categories


def read_list(path, image_dir, classes, label_offset):
  """Entries of a 'relative/path.jpg label' list file, in file order."""
  entries = []
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      relative, label = line.split()
      synset, text = classes[int(label)]
      entries.append(shards.Entry(os.path.join(image_dir, relative.lstrip("/")), int(label) + label_offset, synset,
                                  text))
  return entries


def main(argv):
  del argv
  program = "data_prep.places365"
  raw = FLAGS.raw_dir
  if not raw or not os.path.isdir(raw):
    cli.fail(program, f"--raw_dir must be a folder (got {raw!r})")
  categories = find_file(raw, None, "categories_places365.txt")
  train_list = find_file(raw, None, f"places365_train_{FLAGS.variant}.txt")
  val_list = find_file(raw, None, "places365_val.txt")
  train_dir = find_file(raw, FLAGS.train_image_dir, "data_large", "data_256")
  val_dir = find_file(raw, FLAGS.val_image_dir, "val_large", "val_256")
  needed = [("categories_places365.txt", categories), (f"places365_train_{FLAGS.variant}.txt", train_list),
            ("data_large/ or data_256/", train_dir)]
  if FLAGS.val_shards:  # a recipe evaluates on validation: without it a conversion is not done
    needed += [("places365_val.txt", val_list), ("val_large/ or val_256/", val_dir)]
  missing = [name for name, value in needed if not value]
  if missing:
    cli.fail(program, f"{raw} lacks {', '.join(missing)}"
             + (" (--val_shards=0 converts the training images only)" if FLAGS.val_shards else ""))
  cli.prepare_output(program)
  names = read_categories(categories)
  classes = {i: (name, name[3:] if name[2:3] == "/" else name.lstrip("/")) for name, i in names}
  splits = {"train": shards.Split(read_list(train_list, train_dir, classes, FLAGS.label_offset), FLAGS.train_shards)}
  if FLAGS.val_shards:
    splits["validation"] = shards.Split(read_list(val_list, val_dir, classes, FLAGS.label_offset), FLAGS.val_shards)
  cli.convert(f"places365_{FLAGS.variant}", splits, [{"synset": s, "text": t} for s, t in classes.values()],
              ("variant", "train_shards", "val_shards"))


def run():
  app.run(main)


if __name__ == "__main__":
  run()

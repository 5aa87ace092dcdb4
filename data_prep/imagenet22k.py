r"""ImageNet-22K (fall11_whole / winter21_whole) to sharded TFRecords with a hashed, stratified train/test split.

  python -m data_prep.imagenet22k --raw_dir=/pfs/fall11_whole --output_dir=/local/i22k \
      [--train_shards=4096 --test_shards=1024 --test_fraction=0.2105 --min_images_per_class=0 --num_workers=N]

raw_dir holds one entry per synset: `<wnid>.tar` (fall11_whole ships uncompressed tars) or a `<wnid>/`
folder of JPEGs (winter21 unpacked); both may be mixed. Tars are never extracted: their members are
listed once and read with a seek. ImageNet-22K has no official split, so each image goes to `test` by a
seeded hash of `<wnid>/<file name>`: per class, the lowest-hash round(n × test_fraction) images, but
never all of them, so every kept class trains on at least one image. The split depends only on the file
names and the seed — not on listing order, machine or worker count. The default fraction, 2/9.5,
reproduces the ≈ 7.5 M train / 2 M test proportion of the protocol the paper follows. Labels are
sorted-wnid order over the kept classes (all 21,841 of fall11 when nothing is dropped).
"""
import hashlib
import multiprocessing
import os
import re
import tarfile

from absl import app, flags

from data_prep import cli, shards
from data_prep.listing import IMAGE_EXTENSIONS, find_file, read_synset_words

FLAGS = flags.FLAGS
flags.DEFINE_string("raw_dir", None, "Folder of <wnid>.tar files and/or <wnid>/ folders.")
flags.DEFINE_integer("train_shards", 4096, "Number of training shards.")
flags.DEFINE_integer("test_shards", 1024, "Number of test shards.")
flags.DEFINE_float("test_fraction", 2 / 9.5, "Fraction of each class held out for test (default: 7.5M/2M).")
flags.DEFINE_integer("split_seed", 0, "Seed of the hashed train/test split.")
flags.DEFINE_integer("min_images_per_class", 0, "Drop classes with fewer images (listed in the manifest).")
flags.DEFINE_string("synset_words", None, "wnid-to-words file (default: raw_dir/words.txt or synset_words.txt).")


def list_synset(source: str):
  """[(file name, path, offset, size)] of one synset's images, from a tar or a folder, sorted by name."""
  images = []
  if source.endswith(".tar"):
    with tarfile.open(source) as tar:
      for member in tar:
        if member.isfile() and member.name.lower().endswith(IMAGE_EXTENSIONS):
          images.append((os.path.basename(member.name), source, member.offset_data, member.size))
  else:
    for name in os.listdir(source):
      if name.lower().endswith(IMAGE_EXTENSIONS):
        images.append((name, os.path.join(source, name), -1, 0))
  return sorted(images)


def split_rank(seed: int, wnid: str, name: str) -> bytes:
  return hashlib.sha1(f"{seed}:{wnid}/{name}".encode()).digest()


def hashed_split(wnid: str, names, test_fraction: float, seed: int):
  """The set of names that go to test: the lowest-hash share of the class, never the whole class."""
  n_test = min(int(len(names) * test_fraction + 0.5), len(names) - 1)
  ordered = sorted(names, key=lambda name: split_rank(seed, wnid, name))
  return set(ordered[:max(n_test, 0)])


WNID = re.compile(r"n\d{8}")


def synset_sources(raw_dir: str):
  """{wnid: tar or folder path} of the entries named by a WordNet id (n01440764.tar, n01440764/); a wnid
  present as both uses the folder. Anything else — e.g. the unextracted fall11_whole.tar — is not a class."""
  sources = {}
  for entry in sorted(os.listdir(raw_dir)):
    path = os.path.join(raw_dir, entry)
    if entry.endswith(".tar") and WNID.fullmatch(entry[:-4]) and os.path.isfile(path):
      sources.setdefault(entry[:-4], path)
    elif os.path.isdir(path) and WNID.fullmatch(entry):
      sources[entry] = path
  return sources


def collect(raw_dir, label_offset, test_fraction, split_seed, min_images, num_workers, train_shards, test_shards,
            synset_words=None):
  """Returns (splits, classes, dropped classes)."""
  sources = synset_sources(raw_dir)
  if not sources:
    tars = sorted(e for e in os.listdir(raw_dir) if e.endswith(".tar"))
    raise app.UsageError(f"{raw_dir} has no <wnid>.tar files or <wnid>/ folders (n01440764.tar, n01440764/)"
                         + (f"; extract {tars[0]} first" if tars else ""))
  wnids = sorted(sources)
  with multiprocessing.get_context("spawn").Pool(num_workers or os.cpu_count()) as pool:
    listings = pool.map(list_synset, [sources[w] for w in wnids], chunksize=16)
  kept, dropped = [], []
  for wnid, images in zip(wnids, listings):
    if len(images) < max(min_images, 1):
      dropped.append({"synset": wnid, "images": len(images)})
    else:
      kept.append((wnid, images))
  if not kept:
    raise app.UsageError(f"{raw_dir}: no class has --min_images_per_class={min_images} images")
  words = read_synset_words(find_file(raw_dir, synset_words, "words.txt", "synset_words.txt"))
  train, test = [], []
  for label, (wnid, images) in enumerate(kept):
    test_names = hashed_split(wnid, [name for name, *_ in images], test_fraction, split_seed)
    for name, path, offset, size in images:
      entry = shards.Entry(path, label + label_offset, wnid, words.get(wnid, ""), name=name, offset=offset, size=size)
      (test if name in test_names else train).append(entry)
  splits = {"train": shards.Split(train, train_shards), "test": shards.Split(test, test_shards)}
  classes = [{"synset": w, "text": words.get(w, "")} for w, _ in kept]
  return splits, classes, dropped


def main(argv):
  del argv
  program = "data_prep.imagenet22k"
  if not FLAGS.raw_dir or not os.path.isdir(FLAGS.raw_dir):
    cli.fail(program, f"--raw_dir must be a folder (got {FLAGS.raw_dir!r})")
  if not 0 <= FLAGS.test_fraction < 1:
    cli.fail(program, "--test_fraction must be in [0, 1)")
  cli.prepare_output(program)
  splits, classes, dropped = collect(FLAGS.raw_dir, FLAGS.label_offset, FLAGS.test_fraction, FLAGS.split_seed,
                                     FLAGS.min_images_per_class, FLAGS.num_workers, FLAGS.train_shards,
                                     FLAGS.test_shards, FLAGS.synset_words)
  cli.convert("imagenet22k", splits, classes,
              ("train_shards", "test_shards", "test_fraction", "split_seed", "min_images_per_class"),
              extra={"dropped_classes": dropped, "heldout": "per class, lowest sha1(split_seed:wnid/filename)"})


def run():
  app.run(main)


if __name__ == "__main__":
  run()

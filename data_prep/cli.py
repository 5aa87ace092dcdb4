"""Flags and reporting every converter shares; each `python -m data_prep.<dataset>` adds its own."""
import os
import sys

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Where shards, labels.txt and manifest.json go.")
flags.DEFINE_integer("num_workers", 0, "Worker processes (0: one per core).")
flags.DEFINE_integer("label_offset", 0, "Stored label of the first class (0, or 1 for the classic convention).")
flags.DEFINE_integer("resize_shorter", 0, "Resize so the shorter side is at most this (0: keep originals).")
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality when an image is re-encoded (CMYK, PNG, resized).")
flags.DEFINE_integer("seed", 0, "Seed of the training-set shuffle across shards.")

COMMON = ("label_offset", "resize_shorter", "jpeg_quality", "seed")


def fail(program: str, message: str):
  sys.exit(f"{program}: error: {message}")


def prepare_output(program: str) -> str:
  if not FLAGS.output_dir:
    fail(program, "--output_dir is required")
  try:
    os.makedirs(FLAGS.output_dir, exist_ok=True)
  except OSError as e:
    fail(program, f"cannot create --output_dir {FLAGS.output_dir!r}: {e.strerror}")
  return FLAGS.output_dir


def options(*names) -> dict:
  """The converter options recorded in the manifest: the common ones plus `names`."""
  return {k: FLAGS[k].value for k in COMMON + names}


def convert(dataset: str, splits, classes, option_names=(), extra=None) -> dict:
  """shards.convert with the common flags, then the one-line report; returns the manifest."""
  from data_prep import shards
  manifest = shards.convert(dataset, FLAGS.output_dir, splits, classes, FLAGS.label_offset, options(*option_names),
                            num_workers=FLAGS.num_workers, shuffle_seed=FLAGS.seed, extra=extra)
  report(manifest)
  return manifest


def report(manifest: dict):
  counts = ", ".join(f"{s} {v['records']}" for s, v in manifest["splits"].items())
  dropped = manifest.get("dropped_classes")
  classes = f"{manifest['num_classes']} classes" + (f" ({len(dropped)} dropped)" if dropped else "")
  print(f"{FLAGS.output_dir}: {classes}; {counts}; {len(manifest['skipped'])} skipped")

r"""Top-5 classes of image files from an exported ensemble (python -m tfscale.export).

  python -m tfscale.predict --model=exported/demo a.jpg b.png c.jpg

Prints, per image, its five most probable classes with synset, name and probability. A file that is
missing, truncated or not an image gets one line naming it and why; the others still run. Exit status 0
when every file was classified, 1 when some were not.
"""
import os
import sys

from absl import app, flags

import tfscale

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "An exported SavedModel directory (python -m tfscale.export).")
flags.DEFINE_integer("batch_size", 32, "Images per call of the model.")


def readable_images(paths) -> tuple:
  """([(path, bytes)] of files that decode as images, [(path, reason)] of the others)."""
  import tensorflow as tf
  good, bad = [], []
  for path in paths:
    try:
      with open(path, "rb") as f:
        data = f.read()
      tf.io.decode_image(data, channels=3, expand_animations=False)  # truncated JPEGs fail here too
      good.append((path, data))
    except OSError as e:
      bad.append((path, e.strerror or str(e)))
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
      reason = e.message.split("}}")[-1].splitlines()[0].strip(" .")
      bad.append((path, f"not a readable image ({reason})"))
  return good, bad


def predict(model_dir: str, images, batch_size: int = 32) -> list:
  """[(path, [(synset, name, probability, class id)] × 5)] for [(path, encoded bytes)]."""
  import tensorflow as tf
  serve = tf.saved_model.load(model_dir).signatures["serving_default"]
  results = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    out = serve(images=tf.constant([data for _, data in chunk]))
    for i, (path, _) in enumerate(chunk):
      results.append((path, [(s.decode(), n.decode(), float(p), int(c)) for s, n, p, c in zip(
          out["synsets"][i].numpy(), out["names"][i].numpy(), out["probabilities"][i].numpy(),
          out["class_ids"][i].numpy())]))
  return results


def main(argv):
  paths = argv[1:]
  if not FLAGS.model or not paths:
    sys.exit("tfscale.predict: error: usage: python -m tfscale.predict --model=DIR IMAGE [IMAGE …]")
  if not os.path.exists(os.path.join(FLAGS.model, "saved_model.pb")):
    sys.exit(f"tfscale.predict: error: {FLAGS.model} is not an exported model (no saved_model.pb)")
  tfscale.quiet_tensorflow_import()
  good, bad = readable_images(paths)
  for path, reason in bad:
    print(f"{path}: skipped: {reason}", file=sys.stderr)
  for path, top in predict(FLAGS.model, good, FLAGS.batch_size) if good else []:
    print(f"{path}: " + "  ".join(f"{rank}. {synset} {name!r} {p:.4f}" if name else f"{rank}. {synset} {p:.4f}"
                                  for rank, (synset, name, p, _) in enumerate(top, 1)))
  sys.exit(1 if bad else 0)


def run():
  app.run(main)


if __name__ == "__main__":
  run()

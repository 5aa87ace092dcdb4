r"""Export a run's Collapsed Ensemble as one SavedModel that serves encoded images.

  python -m tfscale.export --workdir=runs/demo --output=exported/demo
  python -m tfscale.export --workdir=/pfs/runs/ce72 --output=/pfs/models/ce72 --snapshots=cyc3,collapse --crops=12

The members and views are those of the run's evaluation `--eval` (config.evals; default `val`, or the
run's only one: what tfscale.evaluate reported for the run); --snapshots and --crops choose others.

`serving_default` takes `images`, a batch of encoded images (JPEG, PNG, BMP or GIF bytes, any size), applies
exactly the evaluation preprocessing of the run (center crop of data.eval_crop_fraction × the shorter side,
or the 12/24 multi-crop views), runs every member, averages their softmax probabilities (over views
first), and returns the top 5: `class_ids` (int32, 0-based), `synsets` and `names` (strings, from the
data's manifest), `probabilities` (float32). It loads with TensorFlow alone, no tfscale:

  model = tf.saved_model.load("exported/demo")
  out = model.signatures["serving_default"](images=tf.constant([open("a.jpg", "rb").read()]))

`python -m tfscale.predict --model=DIR a.jpg …` prints those top-5 lists.
"""
import os
import sys

from absl import app, flags

import tfscale
from tfscale import config_base, datasets
from tfscale import workdir as workdir_files

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A training run's workdir.")
flags.DEFINE_string("output", None, "Where the SavedModel goes (a new directory).")
flags.DEFINE_string("eval", None, "The run's evaluation (config.evals) whose members and views to export "
                    "(default: `val`, or the run's only one).")
flags.DEFINE_string("snapshots", None, "'all' or comma-separated snapshot or phase names: the ensemble's members "
                    "(default: the evaluation's).")
flags.DEFINE_enum("crops", None, ["1", "12", "24"], "Views per image (default: the evaluation's).")
flags.DEFINE_string("data_dir", None, "Shards whose manifest names the classes (default: the run's data.dir).")

TOP_K = 5


def class_table(info) -> tuple:
  """(synsets, names) in label order, from the data's manifest (ids as strings where it has none)."""
  from data_prep import shard_format
  manifest = shard_format.read_manifest(info.data_dir) or {}
  classes = sorted(manifest.get("classes", []), key=lambda c: c["label"])
  if len(classes) != info.num_classes:
    return [str(i) for i in range(info.num_classes)], [""] * info.num_classes
  return [c["synset"] for c in classes], [c.get("text", "") for c in classes]


def build_module(models, data_config, crops: int, multicrop_shorter_sides, synsets, names):
  """A tf.Module whose `serve` function maps encoded images to the ensemble's top 5."""
  import tensorflow as tf
  from tfscale import input_pipeline
  config_base.check_views(crops)
  size, fraction, method = data_config.image_size, data_config.eval_crop_fraction, data_config.resize_method
  sides = [s * size for s in multicrop_shorter_sides]

  def views(image_bytes):
    """Evaluation preprocessing of one image: (crops, size, size, 3) uint8. JPEGs take the very function
    evaluation uses (decoded in place); other formats are decoded whole and cut at the same window."""
    if crops > 1:
      image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
      return input_pipeline.to_uint8(input_pipeline.multi_crop(image, size, sides, flips=crops == 24))

    def other_format():
      image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
      return input_pipeline.center_crop_decoded(image, size, fraction, method)
    image = tf.cond(tf.io.is_jpeg(image_bytes), lambda: input_pipeline.center_crop(image_bytes, size, fraction, method),
                    other_format)
    return input_pipeline.to_uint8(image)[None]

  module = tf.Module()
  module.members = models
  module.synsets = tf.constant(synsets)
  module.names = tf.constant(names)
  k = min(TOP_K, len(synsets))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
  def serve(images):
    batch = tf.map_fn(views, images, fn_output_signature=tf.TensorSpec([crops, size, size, 3], tf.uint8))
    flat = tf.reshape(batch, [-1, size, size, 3])
    probabilities = []
    for model in module.members:
      p = tf.nn.softmax(tf.cast(model(flat, training=False), tf.float32))
      probabilities.append(tf.reduce_mean(tf.reshape(p, [tf.shape(images)[0], crops, -1]), axis=1))
    top = tf.math.top_k(tf.reduce_mean(tf.stack(probabilities), axis=0), k)
    return {"class_ids": top.indices, "probabilities": top.values,
            "synsets": tf.gather(module.synsets, top.indices), "names": tf.gather(module.names, top.indices)}

  module.serve = serve
  return module


def export(workdir: str, output: str, chosen: str, crops: int, data_dir=None) -> dict:
  """Writes the SavedModel; returns what it holds."""
  import tensorflow as tf
  config, snapshots = workdir_files.read_run(workdir, chosen)
  info = datasets.load(data_dir or config.data.dir, config.data.label_offset, config.data.num_classes)
  models = [workdir_files.load_snapshot(workdir, entry) for entry in snapshots]
  synsets, names = class_table(info)
  module = build_module(models, config.data, crops, config.eval.multicrop_shorter_sides, synsets, names)
  tf.saved_model.save(module, output, signatures={"serving_default": module.serve})
  size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(output) for f in files)
  return {"members": [s["name"] for s in snapshots], "crops": crops, "classes": len(synsets), "bytes": size}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    if not FLAGS.workdir or not FLAGS.output:
      raise config_base.ConfigError("--workdir and --output are required")
    if os.path.exists(FLAGS.output) and os.listdir(FLAGS.output):
      raise config_base.ConfigError(f"--output {FLAGS.output} exists and is not empty")
    config, _ = workdir_files.read_run(FLAGS.workdir)
    spec = config.evals[config_base.chosen_evaluation(config.evals, FLAGS.eval)]
    chosen, crops = FLAGS.snapshots or spec.snapshots, int(FLAGS.crops or spec.crops)
    config_base.check_views(crops)
    workdir_files.read_run(FLAGS.workdir, chosen)
    tfscale.quiet_tensorflow_import()
    result = export(FLAGS.workdir, FLAGS.output, chosen, crops, FLAGS.data_dir)
  except (config_base.ConfigError, datasets.DataError, workdir_files.WorkdirError) as e:
    sys.exit(f"tfscale.export: error: {e}")
  print(f"{FLAGS.output}: ensemble of {len(result['members'])} ({', '.join(result['members'])}), "
        f"{result['crops']} view(s) per image, {result['classes']} classes, {result['bytes'] / 1e6:.1f} MB")


def run():
  app.run(main)


if __name__ == "__main__":
  run()

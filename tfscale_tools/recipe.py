r"""Print and plot a recipe's phase plan at a world size, without data, TensorFlow or a cluster.

  python -m tfscale_tools.recipe --config=configs/resnet50_i1k_ce72.py                  # at its published batch
  python -m tfscale_tools.recipe --config=configs/resnet50_i1k_ce72.py --global_batch=1024 --out=/tmp/plan.png

Training prints the same table and writes the same picture (workdir/plan.png) at start-up; this shows
them before a job is queued. The training-set size comes from --train_images, else the config's data
directory (manifest.json), else the dataset's published size for the config's class count.
"""
import sys

from absl import app, flags
from ml_collections import config_flags

from data_prep import shard_format
from tfscale import config_base, datasets, plots, schedules

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Recipe file, e.g. configs/resnet50_i1k_ce72.py.", lock_config=True)
flags.DEFINE_integer("global_batch", 0, "Global batch (default: the recipe's train.reference_global_batch).")
flags.DEFINE_integer("train_images", 0, "Training-set size (default: manifest, else the published size).")
flags.DEFINE_string("out", "plan.png", "Where the plan's picture goes.")

def train_images(config) -> int:
  if FLAGS.train_images:
    return FLAGS.train_images
  if config.data.dir and shard_format.has_manifest(config.data.dir):
    return datasets.load(config.data.dir, config.data.label_offset, config.data.num_classes).split("train").records
  if config.data.num_classes in datasets.PUBLISHED_TRAIN_IMAGES:
    return datasets.PUBLISHED_TRAIN_IMAGES[config.data.num_classes]
  raise datasets.DataError(f"no manifest at {config.data.dir!r} and no published size for "
                           f"{config.data.num_classes} classes: pass --train_images")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = FLAGS.config
  try:
    if config is None:
      raise datasets.DataError("--config is required")
    global_batch = FLAGS.global_batch or config.train.get("reference_global_batch") or config.train.batch_per_rank
    images = train_images(config)
    plan = schedules.compile_for(config, images, global_batch)
  except (datasets.DataError, ValueError) as e:
    sys.exit(f"tfscale_tools.recipe: error: {e}")
  print(f"{images:,} training images, global batch {global_batch:,}: {plan.steps_per_epoch:,} steps/epoch, "
        f"{plan.total_steps:,} steps, {plan.total_steps / plan.steps_per_epoch:g} epochs\n")
  print(schedules.plan_table(plan))
  plots.plot_plan(plan, FLAGS.out)
  print(f"\nplot: {FLAGS.out}")


def run():
  app.run(main, flags_parser=config_base.flags_parser("tfscale_tools.recipe"))


if __name__ == "__main__":
  run()

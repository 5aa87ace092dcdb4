r"""Does tfscale's reported images/s agree with the clock? (results: docs/BENCHMARKS.md)

  python -m tfscale_tools.bench_rates --config=tfscale_tools/bench_peer_config.py [--steps=41] [--config.*=…]

Runs `trainer.train_and_evaluate` as `tfscale.train` does, with one extra callback (its `extra_callbacks`) that
reads the clock at every batch end, and compares, per epoch, the images/s of the epoch log line, of
TensorBoard and of metrics.jsonl with the step clock's steady state: (steps − 1) × global batch over the
time from the end of the epoch's first step to the end of its last (the first step, like tfscale's own
figure, leaves out the trace). Unless --nogenerated_shards, the run trains on generated ImageNet-sized
shards of one epoch of --steps steps (bench_peer's) in place of the config's data.dir.
"""
import logging as std_logging
import sys
import tempfile
import time

from absl import app, flags, logging
from ml_collections import config_flags

import tfscale  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tf_keras

from tfscale_tools import bench_peer

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Recipe file (as for tfscale.train).", lock_config=True)
flags.DEFINE_bool("generated_shards", True, "Train on bench_peer's generated shards (one epoch of --steps steps); "
                  "--nogenerated_shards keeps the config's data.dir.")


class EpochClock(tf_keras.callbacks.Callback):
  """The time of every batch end, per epoch."""

  def __init__(self):
    super().__init__()
    self.ends = []

  def on_epoch_begin(self, epoch, logs=None):
    self.ends.append([])

  def on_train_batch_end(self, batch, logs=None):
    self.ends[-1].append(time.perf_counter())


class EpochLines(std_logging.Handler):
  """Keeps the images/s figure of every epoch log line."""

  def __init__(self):
    super().__init__()
    self.rates = []

  def emit(self, record):
    message = record.getMessage()
    if message.startswith("epoch ") and " images/s" in message:
      self.rates.append(float(message.split(" images/s")[0].rsplit(" ", 1)[1]))


def main(argv):
  del argv
  from tfscale import distributed, trainer, workdir as workdir_files
  config = FLAGS.config
  if FLAGS.generated_shards:
    with config.unlocked():
      config.data.dir = bench_peer.peer_shards(FLAGS.steps - 1, config.train.batch_per_rank)
      config.data.num_classes = bench_peer.num_classes(config.data.dir)
  clock, lines = EpochClock(), EpochLines()
  logging.get_absl_logger().addHandler(lines)
  with tempfile.TemporaryDirectory(dir=FLAGS.work_dir) as workdir:
    trainer.train_and_evaluate(config, workdir, extra_callbacks=[clock])
    rows = workdir_files.read_metrics(workdir)
    board = bench_peer.summary_values(workdir_files.path(workdir, workdir_files.TENSORBOARD), "images_per_second")
  if not distributed.is_chief():
    return
  images_per_step = config.train.batch_per_rank * distributed.size()
  print(f"\n{config.model.name} {config.model.dtype}, batch {images_per_step}, {distributed.size()} rank(s)\n")
  print("| epoch | steps | step clock images/s | metrics.jsonl | TensorBoard | epoch line | largest difference |\n"
        "|---:|---:|---:|---:|---:|---:|---:|")
  worst = 0.0
  for epoch, (ends, row) in enumerate(zip(clock.ends, rows)):
    truth = (len(ends) - 1) * images_per_step / (ends[-1] - ends[0])
    reported = [row["images_per_second"], board[epoch], lines.rates[epoch]]
    difference = max(abs(r / truth - 1) for r in reported)
    worst = max(worst, difference)
    print(f"| {epoch + 1} | {len(ends)} | {truth:.3f} | {reported[0]:.3f} | {reported[1]:.3f} | {reported[2]:g} | "
          f"{100 * difference:.2f} % |")
  for epoch, ends in enumerate(clock.ends):
    steps = [b - a for a, b in zip(ends, ends[1:])]
    print(f"epoch {epoch + 1}: seconds of steps 2–6 {' '.join(f'{t:.2f}' for t in steps[:5])}; median of all after "
          f"the first {sorted(steps)[len(steps) // 2] if steps else float('nan'):.2f}")
  print(f"\nlargest difference from the step clock: {100 * worst:.2f} % (the epoch line has 3 significant digits)")
  sys.exit(0 if worst <= 0.02 else 1)


if __name__ == "__main__":
  flags.adopt_module_key_flags(bench_peer)
  FLAGS.set_default("steps", 41)
  app.run(main)

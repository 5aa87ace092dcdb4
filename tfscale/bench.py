r"""Benchmarks, each side by side with its baseline in the same invocation (results: docs/BENCHMARKS.md).

  python -m tfscale.bench pipeline [--images=3000 --rounds=3 --batch=64]
      images/s and CPU-seconds per image of the training input pipeline (fused decode-and-crop) beside a
      naive one (decode the whole JPEG, then crop and resize), on generated ImageNet-sized JPEG shards.
  python -m tfscale.bench steal [--steps=12 --rounds=2 --dtypes=float32,mixed_bfloat16]
      ResNet-50 training step time on those real shards beside the same step on synthetic input: what
      the input pipeline takes from the model when both share the node's cores.
"""
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

import tfscale  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tf_keras

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "/tmp/tfscale-bench", "Generated JPEGs and shards (kept for reuse).")
flags.DEFINE_integer("images", 3000, "Generated training images (500×375 JPEGs, ≈110 KB).")
flags.DEFINE_integer("rounds", 3, "Alternating rounds of contender and baseline.")
flags.DEFINE_integer("batch", 64, "Batch size (pipeline); per-step batch for `steal` is --steal_batch.")
flags.DEFINE_integer("steal_batch", 32, "Batch size of the ResNet-50 training step.")
flags.DEFINE_integer("steps", 12, "Timed training steps per run.")
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps that trace the model before the timed runs.")
flags.DEFINE_list("dtypes", ["float32", "mixed_bfloat16"], "Model dtype policies for `steal`.")
flags.DEFINE_integer("map_parallelism", 0, "data.map_parallelism of the pipeline (0: its pool size).")
flags.DEFINE_integer("threads", 0, "data.threads: tf.data private pool (0: tfscale's default, 1 per 16 cores; "
                     "`pipeline` measures peak throughput, so give it the cores: --threads=2).")


def imagenet_like_shards(work_dir: str, images: int) -> str:
  """Generated 500×375 JPEG shards in the standard layout (converted by data_prep in a subprocess)."""
  from data_prep import synthetic
  raw, shards_dir = os.path.join(work_dir, "raw"), os.path.join(work_dir, f"shards-{images}")
  if not os.path.exists(os.path.join(shards_dir, "manifest.json")):
    synthetic.make_tree(raw, 10, images // 10)
    subprocess.run([sys.executable, "-m", "data_prep.imagenet1k", f"--raw_dir={raw}", f"--output_dir={shards_dir}",
                    f"--train_shards={max(8, images // 250)}", "--val_shards=1"], check=True)
  return shards_dir


def _imagenet_data_config(data_dir):
  """ImageNet training augmentation (scale 0.08–1, aspect 3/4–4/3, flips) at 224²."""
  import ml_collections
  return ml_collections.ConfigDict(dict(
      dir=data_dir, image_size=224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), collapse_crop_fraction=0.875,
      eval_crop_fraction=0.875, flip=True, shuffle_buffer=1024, interleave_files=4, threads=FLAGS.threads,
      map_parallelism=FLAGS.map_parallelism,
      prefetch_batches=2, cache_in_memory=False, skip_corrupt=False, synthetic=False))


def bench_pipeline():
  from tfscale import datasets, input_pipeline
  info = datasets.load(imagenet_like_shards(FLAGS.work_dir, FLAGS.images))
  config = _imagenet_data_config(info.data_dir)
  batches = info.split("train").records // FLAGS.batch
  results = {"fused decode-and-crop (tfscale)": [], "naive: decode, crop, resize (baseline)": []}
  for round_ in range(FLAGS.rounds):
    for name in (list(results) if round_ % 2 == 0 else list(results)[::-1]):
      dataset = input_pipeline.train_dataset(info, config, FLAGS.batch, seed=round_, naive="naive" in name)
      iterator = iter(dataset)
      next(iterator)  # first batch: thread start-up and shuffle-buffer fill
      wall, cpu = time.perf_counter(), time.process_time()
      for _ in range(batches):
        next(iterator)
      wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
      results[name].append((batches * FLAGS.batch / wall, cpu / (batches * FLAGS.batch)))
      print(f"round {round_ + 1}: {name}: {results[name][-1][0]:,.0f} images/s, "
            f"{1000 * results[name][-1][1]:.2f} CPU-ms/image", file=sys.stderr)
      del iterator
  baseline = statistics.median(r[0] for r in results["naive: decode, crop, resize (baseline)"])
  print(f"\n{info.split('train').records} JPEGs of 500×375 (mean ≈110 KB), batch {FLAGS.batch}, 224² random-resized "
        f"crops + flip, median of {FLAGS.rounds} rounds, {os.cpu_count()} cores\n")
  print("| pipeline | images/s | CPU-ms / image | × baseline |\n|---|---:|---:|---:|")
  for name, rows in results.items():
    rate = statistics.median(r[0] for r in rows)
    print(f"| {name} | {rate:,.0f} | {1000 * statistics.median(r[1] for r in rows):.2f} | {rate / baseline:.2f} |")


class _StepClock(tf_keras.callbacks.Callback):
  """Records when each training step ends."""

  def __init__(self):
    super().__init__()
    self.ends, self.cpu = [], []

  def on_train_batch_end(self, batch, logs=None):
    self.ends.append(time.perf_counter())
    self.cpu.append(time.process_time())


def bench_steal():
  from tfscale import datasets, input_pipeline
  from tfscale.lars import LARS, StepTable
  from tfscale.models import create_model

  info = datasets.load(imagenet_like_shards(FLAGS.work_dir, FLAGS.images))
  config = _imagenet_data_config(info.data_dir)
  table = []
  for dtype in FLAGS.dtypes:
    tf_keras.backend.clear_session()
    tf_keras.mixed_precision.set_global_policy(dtype)
    model = create_model("resnet50", info.num_classes, 224)
    model.compile(optimizer=LARS(StepTable([0.1]), weight_decay=StepTable([5e-5])),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    inputs = {"synthetic (baseline)": input_pipeline.synthetic_dataset(FLAGS.steal_batch, 224, info.num_classes),
              "real shards": input_pipeline.train_dataset(info, config, FLAGS.steal_batch)}
    model.fit(inputs["synthetic (baseline)"], steps_per_epoch=FLAGS.warmup_steps, epochs=1, verbose=0)  # tracing
    seconds = {name: [] for name in inputs}
    for round_ in range(FLAGS.rounds):
      for name in (list(inputs) if round_ % 2 == 0 else list(inputs)[::-1]):
        # Timed from the end of the first step to the end of the last: iterator start-up (shuffle-buffer
        # fill) is paid once per run in training, so it stays out of the per-step comparison.
        clock = _StepClock()
        model.fit(inputs[name], steps_per_epoch=FLAGS.steps + 1, epochs=1, verbose=0, callbacks=[clock])
        seconds[name].append((clock.ends[-1] - clock.ends[0]) / FLAGS.steps)
        cpu = (clock.cpu[-1] - clock.cpu[0]) / FLAGS.steps
        print(f"{dtype} round {round_ + 1}: {name}: {FLAGS.steal_batch / seconds[name][-1]:.2f} images/s, "
              f"{cpu:.2f} CPU-s/step", file=sys.stderr)
    synthetic = statistics.median(seconds["synthetic (baseline)"])
    real = statistics.median(seconds["real shards"])
    table.append((dtype, FLAGS.steal_batch / synthetic, FLAGS.steal_batch / real, synthetic / real))
  print(f"\nResNet-50 training step (LARS), batch {FLAGS.steal_batch}, 224², median of {FLAGS.rounds} rounds × "
        f"{FLAGS.steps} steps, {os.cpu_count()} cores\n")
  print("| dtype | synthetic images/s | real-shard images/s | real ÷ synthetic |\n|---|---:|---:|---:|")
  for dtype, syn, real, ratio in table:
    print(f"| {dtype} | {syn:.2f} | {real:.2f} | {ratio:.3f} |")


def main(argv):
  commands = {"pipeline": bench_pipeline, "steal": bench_steal}
  if len(argv) != 2 or argv[1] not in commands:
    raise app.UsageError(f"usage: python -m tfscale.bench {{{'|'.join(commands)}}} [flags]")
  commands[argv[1]]()


if __name__ == "__main__":
  app.run(main)

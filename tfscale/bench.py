r"""Benchmarks, each side by side with its baseline in the same invocation (results: docs/BENCHMARKS.md).

  python -m tfscale.bench pipeline [--images=3000 --rounds=3 --batch=64]
      images/s and CPU-seconds per image of the training input pipeline (fused decode-and-crop) beside a
      naive one (decode the whole JPEG, then crop and resize), on generated ImageNet-sized JPEG shards.
  python -m tfscale.bench steal [--steps=12 --rounds=2 --dtypes=float32,mixed_bfloat16]
      ResNet-50 training step time on those real shards beside the same step on synthetic input: what
      the input pipeline takes from the model when both share the node's cores.
  python -m tfscale.bench model [--models=resnet50,wrn50_2 --batches=32,64 --dtypes=float32,mixed_bfloat16]
      images/s and achieved GFLOP/s of tfscale's full training step (its model, LARS, the Horovod wrapper
      with one rank) on synthetic input, beside a bare tf_keras.applications.ResNet50 `fit` and the
      matrix-multiply ceiling measured in the same run.
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
flags.DEFINE_list("dtypes", ["float32", "mixed_bfloat16"], "Model dtype policies for `steal` and `model`.")
flags.DEFINE_list("models", ["resnet50", "wrn50_2"], "tfscale models for `model`.")
flags.DEFINE_list("batches", ["32", "64"], "Batch sizes for `model`.")
flags.DEFINE_integer("num_classes", 1000, "Classifier width for `model` (21841 for the ImageNet-22K head).")
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


def forward_flops(model) -> int:
  """Multiply-adds × 2 of one image's forward pass through the convolutions and dense layers."""
  flops = 0
  for layer in model.layers:
    if isinstance(layer, tf_keras.layers.Conv2D):
      _, h, w, c_out = layer.output.shape
      kh, kw = layer.kernel_size
      flops += 2 * h * w * kh * kw * layer.input.shape[-1] * c_out
    elif isinstance(layer, tf_keras.layers.Dense):
      flops += 2 * layer.input.shape[-1] * layer.units
  return flops


def gemm_ceiling(dtype, n=2048, repeats=10) -> float:
  """GFLOP/s of an n×n matrix multiply in `dtype` on this process's threads."""
  import tensorflow as tf
  a = tf.random.normal([n, n], dtype=tf.float32)
  a = tf.cast(a, dtype)
  matmul = tf.function(lambda x: tf.linalg.matmul(x, x))
  matmul(a).numpy()
  start = time.perf_counter()
  for _ in range(repeats):
    result = matmul(a)
  result.numpy()
  return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def _timed_fit(model, dataset, steps) -> float:
  """Seconds per step over `steps` steps, after one untimed step (iterator and tracing)."""
  clock = _StepClock()
  model.fit(dataset, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[clock])
  return (clock.ends[-1] - clock.ends[0]) / steps


def bench_model():
  import tensorflow as tf
  from tfscale import distributed, input_pipeline
  from tfscale.lars import LARS, StepTable
  from tfscale.models import create_model

  distributed.init()
  rows = []
  ceilings = {"float32": gemm_ceiling(tf.float32), "mixed_bfloat16": gemm_ceiling(tf.bfloat16)}
  print(f"GEMM ceiling: fp32 {ceilings['float32']:.0f} GFLOP/s, bf16 {ceilings['mixed_bfloat16']:.0f} GFLOP/s",
        file=sys.stderr)
  for dtype in FLAGS.dtypes:
    for batch in map(int, FLAGS.batches):
      tf_keras.backend.clear_session()
      tf_keras.mixed_precision.set_global_policy(dtype)
      bare = tf_keras.applications.ResNet50(weights=None, classes=FLAGS.num_classes)
      bare.compile(optimizer=tf_keras.optimizers.SGD(0.1, momentum=0.9),
                   loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=False))
      images = tf.random.uniform([batch, 224, 224, 3], maxval=255.0)
      labels = tf.random.uniform([batch], maxval=FLAGS.num_classes, dtype=tf.int32)
      bare_data = tf.data.Dataset.from_tensors((images, labels)).repeat()
      bare_seconds = _timed_fit(bare, bare_data, FLAGS.steps)
      bare_rate = batch / bare_seconds
      print(f"{dtype} batch {batch}: bare tf_keras ResNet50: {bare_rate:.2f} images/s", file=sys.stderr)
      for name in FLAGS.models:
        tf_keras.backend.clear_session()
        tf_keras.mixed_precision.set_global_policy(dtype)
        model = create_model(name, FLAGS.num_classes, 224)
        optimizer = distributed.distributed_optimizer(
            LARS(StepTable([0.1]), weight_decay=StepTable([5e-5])), always=True)
        model.compile(optimizer=optimizer, loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        seconds = _timed_fit(model, input_pipeline.synthetic_dataset(batch, 224, FLAGS.num_classes), FLAGS.steps)
        rate = batch / seconds
        gflops = 3 * forward_flops(model) * rate / 1e9
        rows.append((name, dtype, batch, rate, gflops, gflops / ceilings[dtype], rate / bare_rate if name == "resnet50"
                     else None, bare_rate))
        print(f"{dtype} batch {batch}: {name}: {rate:.2f} images/s, {gflops:.0f} GFLOP/s", file=sys.stderr)
  print(f"\nsynthetic 224² uint8 input, {FLAGS.num_classes} classes, {FLAGS.steps} timed steps after one, "
        f"{os.cpu_count()} cores; GEMM ceiling fp32 {ceilings['float32']:.0f}, bf16 {ceilings['mixed_bfloat16']:.0f} "
        "GFLOP/s (2048² matmul, same run); GFLOP/s = 3 × forward FLOPs × images/s\n")
  print("| model | dtype | batch | images/s | GFLOP/s | of GEMM ceiling | × bare ResNet50 (its images/s) |\n"
        "|---|---|---:|---:|---:|---:|---:|")
  for name, dtype, batch, rate, gflops, share, vs_bare, bare_rate in rows:
    versus = f"{vs_bare:.3f} ({bare_rate:.2f})" if vs_bare is not None else ""
    print(f"| {name} | {dtype} | {batch} | {rate:.2f} | {gflops:.0f} | {100 * share:.0f} % | {versus} |")
  import resource
  print(f"\npeak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


def main(argv):
  commands = {"pipeline": bench_pipeline, "steal": bench_steal, "model": bench_model}
  if len(argv) != 2 or argv[1] not in commands:
    raise app.UsageError(f"usage: python -m tfscale.bench {{{'|'.join(commands)}}} [flags]")
  commands[argv[1]]()


if __name__ == "__main__":
  app.run(main)

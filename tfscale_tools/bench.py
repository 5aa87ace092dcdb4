r"""Benchmarks, each side by side with its baseline in the same invocation (results: docs/BENCHMARKS.md).

  python -m tfscale_tools.bench pipeline [--images=3000 --rounds=3 --batch=64]
      images/s and CPU-seconds per image of the training input pipeline (fused decode-and-crop) beside a
      naive one (decode the whole JPEG, then crop and resize), on generated ImageNet-sized JPEG shards.
  python -m tfscale_tools.bench steal [--steps=12 --rounds=2 --dtypes=float32,mixed_bfloat16]
      ResNet-50 training step time on those real shards beside the same step on synthetic input: what
      the input pipeline takes from the model when both share the node's cores.
  python -m tfscale_tools.bench model [--models=resnet50,wrn50_2 --batches=32,64 --dtypes=float32,mixed_bfloat16 --rounds=3]
      images/s and achieved GFLOP/s of tfscale's training step on synthetic input, beside a bare
      tf_keras.applications.ResNet50 `fit` and the matrix-multiply ceiling measured in the same run.
  python -m tfscale_tools.bench knobs [--knobs=…] [--models=resnet50 --batches=32 --dtypes=float32 --rounds=2]
      tfscale's training step under each CPU knob (threads, XLA, oneDNN fpmath/off, momentum SGD,
      allocators, steps per call, grappler bf16, batch 64, 2 ranks × 32) against the default, each setting
      in its own child process, rounds alternating.
  horovodrun -np 2 -H localhost:2 python -m tfscale_tools.bench stopcheck [--models=resnet50 --batches=32 --steps=6]
      what the agreed-stop check (one allreduce of one number per step) costs against the training step.
  python -m tfscale_tools.bench comm | comm_worker
      allreduce bandwidth and weak-scaling efficiency (tfscale_tools/bench_comm.py).

"tfscale's training step" is the trainer's own: `trainer.compile_model` builds and compiles it for the
--config recipe (default configs/resnet50_i1k_lars.py: its optimizer, loss and metrics; at one rank no
Horovod wrapper, as tfscale.train) with --models, --dtypes and --batches as its model, dtype and per-rank
batch; `--config.optim.name=sgd` and other overrides change it as they would a training run.
"""
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags
from ml_collections import config_flags

import tfscale  # (TF_USE_LEGACY_KERAS before TensorFlow)

tfscale.quiet_tensorflow_import()  # the tables, without TensorFlow's C++ start-up lines (tf_keras imports it)
import tf_keras  # noqa: E402

from tfscale_tools import bench_comm  # noqa: E402

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
config_flags.DEFINE_config_file("config", os.path.join(REPO, "configs", "resnet50_i1k_lars.py"),
                                "The recipe whose training step `steal`, `model`, `knobs` and `stopcheck` time "
                                "(its train.backend, threads and wire too: --config.train.intra_op_threads=1 …).",
                                lock_config=True)
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
flags.DEFINE_integer("map_parallelism", 0, "data.map_parallelism of the pipeline (0: its pool size).")
flags.DEFINE_bool("bare", True, "`model`: also time the bare tf_keras ResNet50 (off in `knobs` children).")
flags.DEFINE_bool("jit_compile", False, "`model`: compile the training step with XLA (no trainer setting: "
                  "the trainer's model and optimizer, recompiled).")
flags.DEFINE_bool("gemm_ceiling", True, "`model`: measure the matmul ceiling first (off in weak-scaling children).")
flags.DEFINE_integer("steps_per_execution", 1, "`model`: training steps per tf.function call (Keras compile; "
                     "no trainer setting, as --jit_compile).")
flags.DEFINE_bool("grappler_bf16", False, "`model`: mixed_bfloat16 rows by grappler's oneDNN auto-mixed-precision "
                  "on the fp32 model instead of the Keras policy.")
LIB = "/usr/lib/x86_64-linux-gnu"
# CPU knobs for `knobs`: name → (what it is, flags of the `model` child, environment of the child).
KNOBS = {
    "default": ("tfscale's defaults (intra-op = cores, inter-op 2; the recipe's LARS, no wrapper at 1 rank)", [], {}),
    "intra1": ("intra-op threads 1", ["--config.train.intra_op_threads=1"], {}),
    "inter1": ("inter-op threads 1", ["--config.train.inter_op_threads=1"], {}),
    "xla": ("XLA: model.compile(jit_compile=True)", ["--jit_compile"], {}),
    "fpmath-bf16": ("ONEDNN_DEFAULT_FPMATH_MODE=BF16", [], {"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}),
    "onednn-off": ("TF_ENABLE_ONEDNN_OPTS=0 (Eigen kernels)", [], {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "sgd": ("tfscale's momentum SGD (optim.name=sgd: LARS's update unadapted)", ["--config.optim.name=sgd"], {}),
    "jemalloc": ("jemalloc (Debian libjemalloc2, LD_PRELOAD)", [], {"LD_PRELOAD": f"{LIB}/libjemalloc.so.2"}),
    "tcmalloc": ("tcmalloc (Debian libtcmalloc-minimal4, LD_PRELOAD)", [],
                 {"LD_PRELOAD": f"{LIB}/libtcmalloc_minimal.so.4"}),
    "spe4": ("4 steps per tf.function call (steps_per_execution=4)", ["--steps_per_execution=4"], {}),
    "grappler-bf16": ("bf16 by grappler's oneDNN auto-mixed-precision rewrite instead of the Keras policy",
                      ["--grappler_bf16"], {}),
    "2x32": ("2 ranks × batch 32, 1 core each (horovodrun; node images/s): the other side of b64 at equal "
             "global batch", ["--batches=32", "--config.train.intra_op_threads=1"], {}),
    "b64": ("per-rank batch 64 instead of 32 (same images per node-step when 2 ranks × 32 become 1 × 64)",
            ["--batches=64"], {}),
}
# Knobs whose child runs as 2 ranks under horovodrun (their node images/s is every rank's).
TWO_RANK_KNOBS = {"2x32"}
flags.DEFINE_list("knobs", list(KNOBS), "`knobs`: settings to compare, each against 'default' (names of KNOBS).")
flags.DEFINE_integer("threads", 0, "data.threads: tf.data private pool (0: tfscale's default, 1 per 16 cores; "
                     "`pipeline` measures peak throughput, so give it the cores: --threads=2).")


def imagenet_like_shards(work_dir: str, images: int) -> str:
  """Generated 500×375 JPEG shards in the standard layout (converted by data_prep in a subprocess)."""
  from data_prep import shard_format, synthetic
  raw, shards_dir = os.path.join(work_dir, "raw"), os.path.join(work_dir, f"shards-{images}")
  if not shard_format.has_manifest(shards_dir):
    synthetic.make_tree(raw, 10, images // 10)
    subprocess.run([sys.executable, "-m", "data_prep.imagenet1k", f"--raw_dir={raw}", f"--output_dir={shards_dir}",
                    f"--train_shards={max(8, images // 250)}", "--val_shards=1"], check=True)
  return shards_dir


def _imagenet_data_config(data_dir, **overrides):
  """The --config recipe's data section (the default's: scale 0.08–1, aspect 3/4–4/3, flips, 224²) on these
  shards."""
  data = FLAGS.config.data.copy_and_resolve_references()
  data.update(dict(dir=data_dir, shuffle_buffer=1024, interleave_files=4, threads=FLAGS.threads,
                   map_parallelism=FLAGS.map_parallelism, **overrides))
  return data


# `pipeline` contenders: name → (data-section overrides, naive decode).
PIPELINES = {
    "fused": ("fused decode-and-crop, Inception crop, bilinear (tfscale default)", {}, False),
    "caffe-bicubic": ("fused, Intel Caffe crop, bicubic (seed recipes)",
                      dict(crop="intel_caffe", resize_method="bicubic"), False),
    "caffe-bilinear": ("fused, Intel Caffe crop, bilinear", dict(crop="intel_caffe"), False),
    "naive": ("naive: decode, crop, resize (baseline)", {}, True),
}
flags.DEFINE_list("pipelines", ["fused", "naive"], f"`pipeline`: contenders ({', '.join(PIPELINES)}); the "
                  "last is the baseline.")


def naive_train_dataset(info, data_config, batch_size: int, seed: int):
  """The baseline: tfscale's training stream with the Inception crop taken after decoding the whole JPEG
  (decode, sample the same box, slice, resize), as most input pipelines do it."""
  import tensorflow as tf
  from tfscale import input_pipeline
  size, scale, ratio = data_config.image_size, tuple(data_config.scale), tuple(data_config.ratio)

  def preprocess(index, record):
    image_bytes, label = input_pipeline.parse_record(record[0], info, record[1])
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(tf.stack([seed, index]), 2))
    image = tf.io.decode_jpeg(image_bytes, channels=3)
    begin, crop_size = input_pipeline.sample_crop(tf.shape(image), scale, ratio, crop_seed)
    image = tf.image.resize(tf.slice(image, begin, crop_size), [size, size], method="bilinear")
    return tf.image.stateless_random_flip_left_right(input_pipeline.to_uint8(image), flip_seed), label

  records = input_pipeline.train_records(info, data_config, seed=seed, deterministic=False).enumerate()
  return input_pipeline.batches(records.map(preprocess, num_parallel_calls=input_pipeline.pipeline_threads(data_config)),
                                data_config, batch_size, False)


def bench_pipeline():
  from tfscale import datasets, input_pipeline
  info = datasets.load(imagenet_like_shards(FLAGS.work_dir, FLAGS.images))
  batches = info.split("train").records // FLAGS.batch
  results = {PIPELINES[key][0]: [] for key in FLAGS.pipelines}
  configs = {PIPELINES[key][0]: (_imagenet_data_config(info.data_dir, **PIPELINES[key][1]), PIPELINES[key][2])
             for key in FLAGS.pipelines}
  for round_ in range(FLAGS.rounds):
    for name in (list(results) if round_ % 2 == 0 else list(results)[::-1]):
      config, naive = configs[name]
      dataset = (naive_train_dataset(info, config, FLAGS.batch, round_) if naive else
                 input_pipeline.train_dataset(info, config, FLAGS.batch, seed=round_, deterministic=False))
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
  baseline = statistics.median(r[0] for r in results[PIPELINES[FLAGS.pipelines[-1]][0]])
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


def _timed_fit(model, dataset, steps) -> tuple:
  """(wall seconds, process CPU seconds) per step over `steps` steps, timed from the end of one untimed
  first call (iterator start-up, shuffle-buffer fill and tracing stay out of the per-step numbers). With
  k steps per execution Keras ends a batch every k steps: `steps` is rounded up to a multiple of k."""
  k = model._steps_per_execution.numpy().item() if model._steps_per_execution is not None else 1
  steps = -(-steps // k) * k
  clock = _StepClock()
  model.fit(dataset, steps_per_epoch=steps + k, epochs=1, verbose=0, callbacks=[clock])
  return (clock.ends[-1] - clock.ends[0]) / steps, (clock.cpu[-1] - clock.cpu[0]) / steps


def bench_steal():
  from tfscale import datasets, distributed, trainer
  distributed.start(FLAGS.config.train)  # the recipe's backend and threads, as tfscale.train's
  info = datasets.load(imagenet_like_shards(FLAGS.work_dir, FLAGS.images))
  table = []
  for dtype in FLAGS.dtypes:
    tf_keras.backend.clear_session()
    model, config, plan = shards_step(FLAGS.config.model.name, FLAGS.steal_batch, dtype, info)
    # The same step on the trainer's own input (tfscale.train's batches) and on random tensors.
    inputs = {"synthetic (baseline)": synthetic_input(config),
              "real shards": trainer.create_train_data(config, info, plan, start_step=0)}
    model.fit(inputs["synthetic (baseline)"], steps_per_epoch=FLAGS.warmup_steps, epochs=1, verbose=0)  # tracing
    seconds = {name: [] for name in inputs}
    for round_ in range(FLAGS.rounds):
      for name in (list(inputs) if round_ % 2 == 0 else list(inputs)[::-1]):
        step_seconds, cpu = _timed_fit(model, inputs[name], FLAGS.steps)
        seconds[name].append(step_seconds)
        print(f"{dtype} round {round_ + 1}: {name}: {FLAGS.steal_batch / seconds[name][-1]:.2f} images/s, "
              f"{cpu:.2f} CPU-s/step", file=sys.stderr)
    synthetic = statistics.median(seconds["synthetic (baseline)"])
    real = statistics.median(seconds["real shards"])
    # Each round's two runs are adjacent in time, so their ratio cancels the slow drift of a shared machine
    # that the ratio of medians still carries.
    paired = [s / r for s, r in zip(seconds["synthetic (baseline)"], seconds["real shards"])]
    table.append((dtype, FLAGS.steal_batch / synthetic, FLAGS.steal_batch / real, synthetic / real,
                  statistics.median(paired), paired))
  print(f"\n{FLAGS.config.model.name} training step ({FLAGS.config.optim.name}), batch {FLAGS.steal_batch}, "
        f"{FLAGS.config.data.image_size}², median of {FLAGS.rounds} rounds × {FLAGS.steps} steps, "
        f"{os.cpu_count()} cores\n")
  print("| dtype | synthetic images/s | real-shard images/s | ratio of medians | median of per-round ratios "
        "| per-round real ÷ synthetic |\n|---|---:|---:|---:|---:|---|")
  for dtype, syn, real, ratio, paired_median, paired in table:
    print(f"| {dtype} | {syn:.2f} | {real:.2f} | {ratio:.3f} | {paired_median:.3f} | "
          f"{' '.join(f'{p:.2f}' for p in paired)} |")


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


def gemm_ceiling(dtype, n=2048, repeats=10, trials=5) -> float:
  """GFLOP/s of an n×n matrix multiply in `dtype` on this process's threads: the best of `trials` timings
  of `repeats` multiplies (a ceiling is what the machine can do; a neighbour's burst only lowers a trial)."""
  import tensorflow as tf
  a = tf.random.normal([n, n], dtype=tf.float32)
  a = tf.cast(a, dtype)
  matmul = tf.function(lambda x: tf.linalg.matmul(x, x))
  matmul(a).numpy()
  best = 0.0
  for _ in range(trials):
    start = time.perf_counter()
    for _ in range(repeats):
      result = matmul(a)
    result.numpy()
    best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9)
  return best


# Steps per epoch of the plan a benchmark's step is compiled with: its LR, WD and momentum tables are
# looked up once a step whatever their length, and ImageNet's 40,000 steps × 90 epochs would hold 3.6M
# Python floats per table in this process (≈ 0.3 GB for the three) to measure nothing more.
PLAN_STEPS_PER_EPOCH = 10


def require_num_classes(config):
  if config.data.num_classes is None:  # the recipe reads it from its dataset's manifest; there is none here
    raise app.UsageError("the recipe leaves data.num_classes to its dataset: give --config.data.num_classes=N")


def step_config(model_name: str, batch: int, dtype: str):
  """The --config recipe with this model, per-rank batch and dtype."""
  config = FLAGS.config.copy_and_resolve_references()
  config.model.name, config.model.dtype, config.train.batch_per_rank = model_name, dtype, batch
  return config


def tfscale_step(config, train_images: int = 0) -> tuple:
  """(model, plan): the training step tfscale.train runs for `config`, built and compiled by the trainer's
  own trainer.compile_model (the plan: `train_images`, or PLAN_STEPS_PER_EPOCH global batches, per epoch).
  XLA and several steps per call have no trainer setting (measured slower or level, docs/BENCHMARKS.md):
  their flags recompile that same model and optimizer, with the same loss and metrics."""
  from tfscale import trainer
  require_num_classes(config)
  plan = trainer.create_plan(config, train_images or PLAN_STEPS_PER_EPOCH * trainer.global_batch_size(config))
  model, optimizer, _ = trainer.compile_model(config, plan, config.data.num_classes)
  if FLAGS.jit_compile or FLAGS.steps_per_execution != 1:
    loss, metrics = trainer.loss_and_metrics(config)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=FLAGS.jit_compile,
                  steps_per_execution=FLAGS.steps_per_execution)
  return model, plan


def shards_step(model_name: str, batch: int, dtype: str, info) -> tuple:
  """(model, config, plan): tfscale_step for the recipe on these shards (its data section, their classes);
  trainer.create_train_data(config, info, plan, 0) is then the trainer's own input."""
  config = step_config(model_name, batch, dtype)
  config.data = _imagenet_data_config(info.data_dir, num_classes=info.num_classes)
  model, plan = tfscale_step(config, info.split("train").records)
  return model, config, plan


def synthetic_input(config):
  """Random uint8 images and labels in the shape and label form (sparse or one-hot) `config` trains on."""
  from tfscale import input_pipeline, trainer
  return input_pipeline.synthetic_dataset(config.train.batch_per_rank, config.data.image_size,
                                          config.data.num_classes, one_hot=trainer.one_hot_labels(config))


def tfscale_model(name: str, batch: int, dtype: str) -> tuple:
  """(model, dataset): the trainer's step for the recipe with this model, batch and dtype, synthetic input."""
  config = step_config(name, batch, dtype)
  return tfscale_step(config)[0], synthetic_input(config)


def _bare_resnet50(batch):
  """(model, dataset): tf_keras.applications.ResNet50 as its users write it (float input, SGD)."""
  import tensorflow as tf
  size = FLAGS.config.data.image_size  # the input tfscale's step gets
  bare = tf_keras.applications.ResNet50(weights=None, input_shape=(size, size, 3),
                                        classes=FLAGS.config.data.num_classes)
  bare.compile(optimizer=tf_keras.optimizers.SGD(0.1, momentum=0.9),
               loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=False))
  images = tf.random.uniform([batch, size, size, 3], maxval=255.0)
  labels = tf.random.uniform([batch], maxval=FLAGS.config.data.num_classes, dtype=tf.int32)
  return bare, tf.data.Dataset.from_tensors((images, labels)).repeat()


BARE = "bare tf_keras ResNet50"


def bench_model():
  """Under horovodrun/mpirun with several ranks the step really allreduces (the recipe's backend); rank 0
  reports."""
  import tensorflow as tf
  from tfscale import distributed

  require_num_classes(FLAGS.config)  # before the ceiling and the bare model, which need it too
  distributed.start(FLAGS.config.train)  # the recipe's backend and threads, as tfscale.train's
  say = (lambda text: print(text, file=sys.stderr)) if distributed.is_chief() else (lambda text: None)
  rows = []
  ceilings = ({"float32": gemm_ceiling(tf.float32), "mixed_bfloat16": gemm_ceiling(tf.bfloat16)}
              if FLAGS.gemm_ceiling else {"float32": float("nan"), "mixed_bfloat16": float("nan")})
  say(f"GEMM ceiling: fp32 {ceilings['float32']:.0f} GFLOP/s, bf16 {ceilings['mixed_bfloat16']:.0f} GFLOP/s")
  for dtype in FLAGS.dtypes:
    for batch in map(int, FLAGS.batches):
      tf_keras.backend.clear_session()
      # --grappler_bf16: bf16 from grappler's oneDNN auto-mixed-precision rewrite of the fp32 graph (its own
      # cast and op placement) instead of the Keras policy's per-layer casts.
      grappler = FLAGS.grappler_bf16 and dtype == "mixed_bfloat16"
      tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": grappler})
      policy = "float32" if grappler else dtype
      tf_keras.mixed_precision.set_global_policy(policy)  # the bare model's (the trainer sets tfscale's)
      # Every contender is built once and timed once per round, the order alternating between rounds.
      contenders = {BARE: _bare_resnet50(batch)} if FLAGS.bare else {}
      contenders.update({name: tfscale_model(name, batch, policy) for name in FLAGS.models})
      rates = {name: [] for name in contenders}
      for round_ in range(FLAGS.rounds):
        for name in (list(contenders) if round_ % 2 == 0 else list(contenders)[::-1]):
          rates[name].append(batch / _timed_fit(*contenders[name], FLAGS.steps)[0])
          say(f"{dtype} batch {batch} round {round_ + 1}: {name}: {rates[name][-1]:.2f} images/s")
      flops = {name: forward_flops(model) for name, (model, _) in contenders.items()}
      for name in FLAGS.models:
        rate = statistics.median(rates[name])
        gflops = 3 * flops[name] * rate / 1e9
        vs_bare = (statistics.median(a / b for a, b in zip(rates[name], rates[BARE]))
                   if FLAGS.bare and name == "resnet50" else None)
        # tf_keras's ResNet50 is v1 (stride on the first 1×1 conv): 7.72 GFLOP forward against v1.5's 8.18,
        # so images/s alone undersells v1.5 by 6 %; the per-FLOP ratio compares the work done.
        work = flops[name] / flops[BARE] if vs_bare else None
        rows.append({"model": name, "dtype": dtype, "batch": batch, "images_per_second": rate, "gflops": gflops,
                     "ceiling_share": gflops / ceilings[dtype], "vs_bare": vs_bare,
                     "vs_bare_per_flop": vs_bare * work if vs_bare else None,
                     "bare_images_per_second": statistics.median(rates[BARE]) if FLAGS.bare else None,
                     "ranks": distributed.size()})
  if not distributed.is_chief():
    return
  print(f"\nsynthetic {FLAGS.config.data.image_size}² uint8 input, {FLAGS.config.data.num_classes} classes, "
        f"median of {FLAGS.rounds} round(s) of "
        f"{FLAGS.steps} timed steps after one; × bare = median of per-round ratios; {os.cpu_count()} cores; GEMM "
        f"ceiling fp32 {ceilings['float32']:.0f}, bf16 {ceilings['mixed_bfloat16']:.0f} GFLOP/s (2048² matmul, same "
        f"run); GFLOP/s = 3 × forward FLOPs × images/s; {distributed.size()} rank(s), images/s per rank\n")
  print("| model | dtype | batch | images/s | GFLOP/s | of GEMM ceiling | × bare ResNet50 (its images/s) | "
        "× bare per FLOP |\n|---|---|---:|---:|---:|---:|---:|---:|")
  for row in rows:
    versus = f"{row['vs_bare']:.3f} ({row['bare_images_per_second']:.2f})" if row["vs_bare"] is not None else ""
    per_flop = f"{row['vs_bare_per_flop']:.3f}" if row["vs_bare_per_flop"] is not None else ""
    print(f"| {row['model']} | {row['dtype']} | {row['batch']} | {row['images_per_second']:.2f} | "
          f"{row['gflops']:.0f} | {100 * row['ceiling_share']:.0f} % | {versus} | {per_flop} |")
  import resource
  print(f"\npeak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
  bench_comm.write_result(rows)


class _TimedStopCheck(tf_keras.callbacks.Callback):
  """The trainer's agreed-stop check (callbacks.AgreedStop, as StepEnd calls it) at every batch end, and the
  seconds each took."""

  def __init__(self):
    super().__init__()
    from tfscale import callbacks
    self.stop, self.seconds = callbacks.AgreedStop(every_steps=1), []

  def on_train_batch_end(self, batch, logs=None):
    start = time.perf_counter()
    self.stop.requested_at(int(self.model.optimizer.iterations.numpy()))
    self.seconds.append(time.perf_counter() - start)


def bench_stopcheck():
  """The agreed-stop check (callbacks.AgreedStop: one allreduce of one number per step) against the
  ResNet-50 training step it rides on, in the same run; under horovodrun with several ranks."""
  from tfscale import distributed
  distributed.start(FLAGS.config.train)  # the recipe's backend and threads, as tfscale.train's
  batch = int(FLAGS.batches[0])
  model, dataset = tfscale_model(FLAGS.models[0], batch, FLAGS.dtypes[0])
  check = _TimedStopCheck()
  clock = _StepClock()
  model.fit(dataset, steps_per_epoch=FLAGS.steps + 1, epochs=1, verbose=0, callbacks=[clock, check])
  steps = (clock.ends[-1] - clock.ends[0]) / FLAGS.steps
  checks = statistics.median(check.seconds[1:])
  if distributed.is_chief():
    print(f"{FLAGS.models[0]} {FLAGS.dtypes[0]} batch {batch}, {distributed.size()} rank(s), {FLAGS.steps} steps: "
          f"step {steps:.3f} s, stop check median {1000 * checks:.2f} ms (max {1000 * max(check.seconds[1:]):.2f}), "
          f"{100 * checks / steps:.3f} % of a step")


def bench_knobs():
  """Each knob's tfscale training step against the default, in child processes (some knobs are environment
  variables read once at TensorFlow start-up), rounds alternating the order."""
  require_num_classes(FLAGS.config)  # once here, not once per child
  unknown = sorted(set(FLAGS.knobs) - set(KNOBS))
  if unknown:
    raise app.UsageError(f"unknown knobs {unknown}; known: {sorted(KNOBS)}")
  if len(FLAGS.batches) != 1:
    raise app.UsageError("knobs compares at one batch size: give --batches=B (the b64 knob changes it)")
  missing = [path for knob in FLAGS.knobs for path in KNOBS[knob][2].get("LD_PRELOAD", "").split(":")
             if path and not os.path.exists(path)]
  if missing:
    raise app.UsageError(f"not installed: {', '.join(missing)} (scripts/install.sh installs them)")
  knobs = ["default"] + [k for k in FLAGS.knobs if k != "default"]
  # Every child times the same recipe, with the overrides this command was given.
  recipe = [f"--config={config_flags.get_config_filename(FLAGS['config'])}",
            *(f"--config.{path}={value}" for path, value in config_flags.get_override_values(FLAGS["config"]).items())]
  common = [*recipe, f"--models={','.join(FLAGS.models)}", f"--batches={','.join(FLAGS.batches)}",
            f"--dtypes={','.join(FLAGS.dtypes)}", f"--steps={FLAGS.steps}", "--nobare", "--rounds=1",
            "--nogemm_ceiling"]
  rates = {knob: [] for knob in knobs}
  for round_ in range(FLAGS.rounds):
    for knob in (knobs if round_ % 2 == 0 else knobs[::-1]):
      _, argv, env = KNOBS[knob]
      try:
        module_argv = ["tfscale_tools.bench", "model", *common, *argv]
        rows = bench_comm.run_child(bench_comm.horovodrun("gloo", module_argv) if knob in TWO_RANK_KNOBS
                                    else [sys.executable, "-m", *module_argv], env)
      except RuntimeError as error:
        print(f"round {round_ + 1}: {knob}: failed\n{error}", file=sys.stderr)
        rates[knob].append({})
        continue
      # Keyed without the batch (a knob may change it); node images/s (a knob may change the ranks).
      rates[knob].append({(r["model"], r["dtype"]): r["images_per_second"] * r.get("ranks", 1) for r in rows})
      print(f"round {round_ + 1}: {knob}: " + ", ".join(f"{'/'.join(k)} {v:.2f}" for k, v in rates[knob][-1].items()),
            file=sys.stderr)
  keys = sorted({k for runs in rates["default"] for k in runs})
  print(f"\nimages/s of tfscale's training step (synthetic input, batch {','.join(FLAGS.batches)} unless the knob "
        f"says otherwise), median of {FLAGS.rounds} rounds of child processes; × default = median of per-round "
        "ratios\n")
  print("| knob | " + " | ".join(f"{m} {d}" for m, d in keys) + " |\n|---|" + "---:|" * len(keys))
  for knob in knobs:
    cells = []
    for key in keys:
      pairs = [(run.get(key), base.get(key)) for run, base in zip(rates[knob], rates["default"])]
      pairs = [(a, b) for a, b in pairs if a and b]
      if not pairs:
        cells.append("failed")
        continue
      rate = statistics.median(a for a, _ in pairs)
      cells.append(f"{rate:.2f}" if knob == "default" else f"{rate:.2f} ({statistics.median(a / b for a, b in pairs):.3f}×)")
    print(f"| {KNOBS[knob][0]} | " + " | ".join(cells) + " |")


def main(argv):
  commands = {"pipeline": bench_pipeline, "steal": bench_steal, "model": bench_model, "knobs": bench_knobs,
              "comm": bench_comm.bench_comm, "comm_worker": bench_comm.comm_worker, "stopcheck": bench_stopcheck}
  if len(argv) != 2 or argv[1] not in commands:
    raise app.UsageError(f"usage: python -m tfscale_tools.bench {{{'|'.join(commands)}}} [flags]")
  commands[argv[1]]()


if __name__ == "__main__":
  app.run(main)

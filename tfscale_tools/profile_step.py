r"""Where tfscale's training step spends its time: the TensorFlow profiler's op events, bucketed.

  python -m tfscale_tools.profile_step [--models=resnet50 --batches=32 --dtypes=float32,mixed_bfloat16 --steps=4]
                                       [--input=synthetic|shards]

For each dtype: the trainer's training step (trainer.compile_model for bench's --config recipe: its
optimizer, loss and metrics; no Horovod wrapper at one rank) on synthetic input or the trainer's own input,
a few untimed steps, then --steps steps under `tf.profiler.experimental`.
The host plane of the trace (xplane.pb) holds an event per executed op kernel, named "<op name>:<op type>"
(and tf.data's nested stage spans, "Iterator::…", which are skipped); their durations are summed per
bucket: convolution/matmul, batch norm, elementwise, layout and casts, pooling, the optimizer update (ops
under the optimizer's name scope), Horovod, input, other. With 2 inter-op threads ops overlap,
so the buckets add up to more than the step's wall time; the table gives both, and the time during which no
op ran at all (host work between ops).
"""
import collections
import glob
import os
import sys
import tempfile
import time

from absl import app, flags

import tfscale
import tf_keras

FLAGS = flags.FLAGS

BUCKETS = (
    ("Horovod", ("Horovod",)),
    ("input", ("Iterator", "Decode", "ParseExample", "ParseSingleExample", "Resize", "SampleDistortedBoundingBox",
               "TFRecord", "ParallelMap", "MapAndBatch", "Prefetch", "Shuffle", "Interleave", "StatelessRandom")),
    ("conv / matmul", ("Conv2D", "MatMul", "Conv3D", "DepthwiseConv")),
    ("batch norm", ("BatchNorm",)),
    ("layout / casts", ("Cast", "Transpose", "ToTf", "Reshape", "Pad", "Identity", "ConcatV2", "Slice")),
    ("pooling", ("Pool",)),
    ("elementwise", ("Relu", "Add", "Mul", "Sub", "Div", "Sqrt", "Square", "Neg", "Maximum", "Minimum", "Select",
                     "Sum", "Mean", "BiasAdd", "Softmax", "Log", "Exp", "Equal", "Greater", "Less", "Sign", "Tile",
                     "Fill", "ZerosLike", "OnesLike", "Prod", "ArgMax", "Pow", "Reciprocal", "Norm", "Abs")),
)


def bucket_of(name: str, op_type: str, optimizer_scopes) -> str:
  if any(scope in name for scope in optimizer_scopes) or op_type.startswith(("ResourceApply", "Assign")):
    return "optimizer update"
  for bucket, needles in BUCKETS:
    if any(needle in op_type for needle in needles):
      return bucket
  return "other (host, variables, control)"


OTHER = collections.Counter()  # op types of the "other" bucket, for the report


flags.DEFINE_enum("input", "synthetic", ["synthetic", "shards"], "Synthetic tensors, or tfscale's input pipeline "
                  "on bench's generated ImageNet-sized shards (--images of them).")


def union_seconds(intervals) -> float:
  """Seconds during which at least one of the (start, end) picosecond intervals is running."""
  total, end = 0, None
  for start, stop in sorted(intervals):
    if end is None or start > end:
      total, end = total + stop - start, stop
    elif stop > end:
      total, end = total + stop - end, stop
  return total / 1e12


def op_times(logdir: str, optimizer_scopes) -> dict:
  """Seconds per bucket summed over the op events of the host plane, and under "busy" the time during which
  any op of the step ran (tf.data's threads left out; what is left of the wall time is host work between
  ops: dispatch, Python, callbacks)."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  totals, intervals = collections.Counter(), []
  for path in glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")):
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
      space.ParseFromString(f.read())
    for plane in space.planes:
      if not plane.name.startswith("/host:CPU"):
        continue
      for line in plane.lines:
        pipeline_thread = "tf_data" in line.name  # tf.data's own threads: input, outside the step's ops
        for event in line.events:
          name = plane.event_metadata[event.metadata_id].name
          if ":" not in name or name.startswith(("EagerExecute", "ExecutorState", "FunctionRun", "tf_",
                                                 "Iterator::")):  # Iterator::…: nested tf.data stage spans
            continue
          op_name, op_type = name.rsplit(":", 1)
          op_type = op_type.strip()
          if op_type.startswith("__inference") or op_type == "Run":  # the whole step, around the ops
            continue
          bucket = bucket_of(op_name, op_type, optimizer_scopes)
          totals[bucket] += event.duration_ps / 1e12
          if not pipeline_thread:
            start = line.timestamp_ns * 1000 + event.offset_ps
            intervals.append((start, start + event.duration_ps))
          if bucket.startswith("other"):
            OTHER[op_type] += event.duration_ps / 1e12
  totals["busy"] = union_seconds(intervals)
  return totals


class ProfileAfter(tf_keras.callbacks.Callback):
  """Starts the profiler at the end of the `warm`-th step."""

  def __init__(self, warm: int, logdir: str):
    super().__init__()
    self.warm, self.logdir, self.start = warm, logdir, None

  def on_train_batch_end(self, batch, logs=None):
    if batch + 1 == self.warm:
      import tensorflow as tf
      tf.profiler.experimental.start(self.logdir)
      self.start = time.perf_counter()


def profile(model_name: str, batch: int, dtype: str) -> tuple:
  """(bucket seconds per step, wall seconds per step)."""
  import tensorflow as tf
  from tfscale_tools import bench
  tf_keras.backend.clear_session()
  if FLAGS.input == "shards":
    from tfscale import datasets, trainer
    info = datasets.load(bench.imagenet_like_shards(FLAGS.work_dir, FLAGS.images))
    model, config, plan = bench.shards_step(model_name, batch, dtype, info)
    dataset = trainer.create_train_data(config, info, plan, start_step=0)  # tfscale.train's own input
  else:
    model, dataset = bench.tfscale_model(model_name, batch, dtype)
  logdir = tempfile.mkdtemp(prefix="tfscale-profile-")
  window = ProfileAfter(3, logdir)  # one fit, one iterator: the pipeline is warm when profiling starts
  model.fit(dataset, steps_per_epoch=3 + FLAGS.steps, epochs=1, verbose=0, callbacks=[window])
  wall = (time.perf_counter() - window.start) / FLAGS.steps
  tf.profiler.experimental.stop()
  scopes = [model.optimizer.name, type(model.optimizer).__name__, "LARS", "SGD"]
  return {k: v / FLAGS.steps for k, v in op_times(logdir, scopes).items()}, wall


def main(argv):
  del argv
  tfscale.quiet_tensorflow_import()
  from tfscale import distributed
  distributed.start(FLAGS.config.train)  # bench's recipe: its backend and threads
  names = [b for b, _ in BUCKETS[2:]] + ["optimizer update", BUCKETS[0][0], BUCKETS[1][0],
                                          "other (host, variables, control)"]
  results = {}
  for dtype in FLAGS.dtypes:
    for batch in map(int, FLAGS.batches):
      results[(dtype, batch)] = profile(FLAGS.models[0], batch, dtype)
      print(f"{dtype} batch {batch}: {results[(dtype, batch)]}", file=sys.stderr)
      print("largest 'other' op types:", OTHER.most_common(8), file=sys.stderr)
      OTHER.clear()
  print(f"\n{FLAGS.models[0]}, {FLAGS.steps} profiled steps after 3, {FLAGS.input} input, "
        f"{FLAGS.config.optim.name}, {os.cpu_count()} cores; "
        "seconds of op time per step (share of all op time)\n")
  columns = list(results)
  print("| bucket | " + " | ".join(f"{d} b{b}" for d, b in columns) + " |\n|---|" + "---:|" * len(columns))
  for name in names:
    cells = []
    for key in columns:
      buckets, _ = results[key]
      total = sum(v for k, v in buckets.items() if k != "busy") or 1
      cells.append(f"{buckets.get(name, 0):.3f} ({100 * buckets.get(name, 0) / total:.0f} %)")
    print(f"| {name} | " + " | ".join(cells) + " |")
  print("| **all ops** | " + " | ".join(f"{sum(v for n, v in results[k][0].items() if n != 'busy'):.3f}"
                                      for k in columns) + " |")
  print("| **wall time per step** | " + " | ".join(f"{results[k][1]:.3f}" for k in columns) + " |")
  print("| **some op running** | " + " | ".join(f"{results[k][0]['busy']:.3f}" for k in columns) + " |")
  print("| **no op running (host between ops)** | " + " | ".join(
      f"{results[k][1] - results[k][0]['busy']:.3f} ({100 * (1 - results[k][0]['busy'] / results[k][1]):.0f} %)"
      for k in columns) + " |")


if __name__ == "__main__":
  from tfscale_tools import bench  # noqa: F401  (its flags: --config (the recipe, its backend and threads),
  #                                   --models, --batches, --dtypes, --steps)
  app.run(main)

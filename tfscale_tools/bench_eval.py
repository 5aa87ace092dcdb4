r"""Evaluation and export benchmarks (results: docs/BENCHMARKS.md).

  python -m tfscale_tools.bench_eval memory [--memory_images=2000,20000]
      peak RSS of a 21,841-class, 3-member evaluation at two split sizes (one child process each).
  python -m tfscale_tools.bench_eval throughput [--images=… --eval_images=64]
      images/s of `ensemble.evaluate` for a 3-member ResNet-50 ensemble at 1 and 12 views on generated
      ImageNet-sized JPEG shards, beside the members' forward-only rate on synthetic input, in the same run.
  python -m tfscale_tools.bench_eval export
      size of the exported 3-member ResNet-50 SavedModel, and its images/s at batch 1 and 32.
The members are randomly initialised snapshots written with tfscale.workdir: speed and memory do not depend
on the weights.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

import tfscale
from data_prep import shard_format
from tfscale import workdir as workdir_files
from tfscale_tools import bench  # its flags too: --work_dir, --images (generated shards), --rounds

FLAGS = flags.FLAGS
flags.DEFINE_list("memory_images", ["2000", "20000"], "`memory`: validation split sizes.")
flags.DEFINE_integer("members", 3, "Ensemble members.")
flags.DEFINE_integer("eval_images", 64, "`throughput`: validation images evaluated per contender.")
flags.DEFINE_string("child", "", "Internal: the run to measure in this process (prints JSON).")
flags.DEFINE_string("child_data", "", "Internal: the child's data directory.")


def random_run(workdir: str, model: str, num_classes: int, image_size: int, data_dir: str, members: int) -> list:
  """A workdir with config.json and `members` randomly initialised snapshots of `model`; their entries."""
  import tf_keras
  from tfscale import config_base
  from tfscale.models import create_model
  config = config_base.base_config()
  config.data.dir, config.data.image_size, config.model.name = data_dir, image_size, model
  workdir_files.write_config(workdir, config)
  entries = []
  for k in range(members):
    tf_keras.utils.set_random_seed(k)
    network = create_model(config.model, num_classes, image_size)
    entry = workdir_files.snapshot_entry(f"member{k + 1}", k + 1, float(k + 1), {"top1": 0.0, "top5": 0.0})
    entries.append(entry)
    workdir_files.save_snapshot(workdir, network, entry, entries, config)
  return entries


def wide_head_shards(directory: str, images: int, classes: int = 21841) -> str:
  """A validation split of `images` copies of one small JPEG with labels spread over `classes` classes,
  written with the `tfrecord` package in a child process (TensorFlow is already imported here)."""
  if shard_format.has_manifest(directory):
    return directory
  script = f"""
import io, os, numpy as np
from PIL import Image
from tfrecord import TFRecordWriter
from data_prep import shard_format
os.makedirs({directory!r}, exist_ok=True)
buffer = io.BytesIO(); Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(buffer, "JPEG"); jpeg = buffer.getvalue()
shards = []
for index in range(4):
  name = shard_format.shard_name("validation", index, 4)
  writer = TFRecordWriter(os.path.join({directory!r}, name))
  count = 0
  for i in range(index, {images}, 4):
    writer.write(shard_format.imagenet_record(image=jpeg, label=(i * 7919) % {classes}))
    count += 1
  writer.close()
  shards.append({{"name": name, "records": count}})
shard_format.write_manifest({directory!r}, {{"dataset": "wide_head", "num_classes": {classes}, "label_offset": 0,
    "splits": {{"validation": {{"records": {images}, "shards": shards}}}}, "skipped": []}})
"""
  subprocess.run([sys.executable, "-c", script], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  return directory


def evaluate_in_this_process(workdir: str, crops: int) -> dict:
  """ensemble.evaluate over the run's validation split: {seconds, images, peak_rss_gb}."""
  from tfscale import config_base, datasets, ensemble
  config, snapshots = workdir_files.read_run(workdir)
  info = datasets.load(config.data.dir)
  spec = config_base.evaluation(("validation",), crops)
  start = time.perf_counter()
  result = ensemble.evaluate(workdir, config, info, {"val": spec}, {"val": snapshots})
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "images": result["val"]["count"],
          "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def child(*args) -> dict:
  out = subprocess.run([sys.executable, "-m", "tfscale_tools.bench_eval", *args], capture_output=True, text=True,
                       check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  return json.loads(out.stdout.strip().splitlines()[-1])


def bench_memory():
  rows = []
  for images in map(int, FLAGS.memory_images):
    data = wide_head_shards(os.path.join(FLAGS.work_dir, f"wide-{images}"), images)
    workdir = os.path.join(FLAGS.work_dir, "wide-run")
    if not os.path.exists(workdir_files.path(workdir, workdir_files.SNAPSHOT_INDEX)):
      tfscale.quiet_tensorflow_import()
      random_run(workdir, "resnet_cifar8", 21841, 32, data, FLAGS.members)
    rows.append({"images": images, **child("memory", f"--child={workdir}", f"--child_data={data}")})
    print(f"{images} images: {rows[-1]}", file=sys.stderr)
  print(f"\n21,841 classes, {FLAGS.members} members (resnet_cifar8, 32²), one child process per split size\n")
  print("| validation images | peak RSS | seconds |\n|---:|---:|---:|")
  for row in rows:
    print(f"| {row['images']:,} | {row['peak_rss_gb']:.3f} GB | {row['seconds']:.1f} |")
  print(f"\nratio of peak RSS, {rows[-1]['images']:,} / {rows[0]['images']:,} images: "
        f"{rows[-1]['peak_rss_gb'] / rows[0]['peak_rss_gb']:.3f}")


def main(argv):
  command = argv[1] if len(argv) > 1 else ""
  if FLAGS.child:
    tfscale.quiet_tensorflow_import()
    if command == "memory":
      config = workdir_files.read_config(FLAGS.child)
      config.data.dir = FLAGS.child_data
      workdir_files.write_config(FLAGS.child, config)
      print(json.dumps(evaluate_in_this_process(FLAGS.child, 1)))
    return
  commands = {"memory": bench_memory, "throughput": bench_throughput, "export": bench_export}
  if command not in commands:
    raise app.UsageError(f"usage: python -m tfscale_tools.bench_eval {{{'|'.join(commands)}}} [flags]")
  commands[command]()


def imagenet_run(members: int) -> tuple:
  """(workdir, data dir): generated ImageNet-sized shards and a run of `members` random ResNet-50s."""
  data = bench.imagenet_like_shards(FLAGS.work_dir, FLAGS.images)
  workdir = os.path.join(FLAGS.work_dir, f"resnet50-{members}")
  if not os.path.exists(workdir_files.path(workdir, workdir_files.SNAPSHOT_INDEX)):
    random_run(workdir, "resnet50", 10, 224, data, members)
  return workdir, data


def bench_throughput():
  """Evaluation images/s against the members' forward-only images/s on synthetic input, same views."""
  tf = tfscale.quiet_tensorflow_import()
  from tfscale import datasets, input_pipeline, metrics
  workdir, data = imagenet_run(FLAGS.members)
  config, snapshots = workdir_files.read_run(workdir)
  models = [workdir_files.load_snapshot(workdir, s) for s in snapshots]
  info = datasets.load(data)
  batch = config.eval.batch_size = 8
  rows = []
  for crops in (1, 12):
    predict = metrics.prediction_fn(models, crops)
    shape = [batch, 224, 224, 3] if crops == 1 else [batch, crops, 224, 224, 3]
    synthetic = tf.cast(tf.random.uniform(shape, maxval=256, dtype=tf.int32), tf.uint8)
    predict(synthetic)  # trace
    forward, evaluation = [], []
    n = FLAGS.eval_images // (1 if crops == 1 else 4)
    for round_ in range(FLAGS.rounds):
      for name in (("forward", "evaluate") if round_ % 2 == 0 else ("evaluate", "forward")):
        start = time.perf_counter()
        if name == "forward":
          for _ in range(n // batch):
            predict(synthetic)[1].numpy()
          forward.append(n // batch * batch / (time.perf_counter() - start))
        else:
          dataset = input_pipeline.eval_dataset(info, config.data, "train", batch, crops=crops,
                                                multicrop_shorter_sides=config.eval.multicrop_shorter_sides)
          metrics.count(predict, dataset.take(n // batch), len(models))
          evaluation.append(n // batch * batch / (time.perf_counter() - start))
    ratio = statistics.median(e / f for e, f in zip(evaluation, forward))
    rows.append((crops, statistics.median(evaluation), statistics.median(forward), ratio))
    print(f"{crops} view(s): evaluate {evaluation}, forward {forward}", file=sys.stderr)
  print(f"\n{FLAGS.members}-member ResNet-50 ensemble, batch {batch}, 500×375 JPEGs from the generated shards, "
        f"median of {FLAGS.rounds} alternating rounds\n")
  print("| views | evaluation images/s | forward-only images/s (synthetic) | ratio |\n|---:|---:|---:|---:|")
  for crops, e, f, r in rows:
    print(f"| {crops} | {e:.2f} | {f:.2f} | {r:.3f} |")


def bench_export():
  """Exported SavedModel: size on disk, images/s at batch 1 and 32 through serving_default."""
  tf = tfscale.quiet_tensorflow_import()
  from tfscale import export
  workdir, data = imagenet_run(FLAGS.members)
  output = os.path.join(FLAGS.work_dir, f"exported-{FLAGS.members}")
  if not os.path.exists(os.path.join(output, "saved_model.pb")):
    export.export(workdir, output, "all", 1)
  size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(output) for f in files)
  serve = tf.saved_model.load(output).signatures["serving_default"]
  records = [r.numpy() for r in tf.data.TFRecordDataset(shard_format.shards_by_split(data)["train"]).take(64)]
  image_key = shard_format.RECORD_KEYS["imagenet"][0]
  jpegs = [tf.io.parse_single_example(r, {image_key: tf.io.FixedLenFeature([], tf.string)})[image_key]
           for r in records]
  print(f"\n{output}: {size / 1e6:.1f} MB ({FLAGS.members}-member ResNet-50 ensemble, 1 view)\n")
  print("| batch | images/s | seconds per call |\n|---:|---:|---:|")
  for batch in (1, 32):
    images = tf.stack(jpegs[:batch])
    serve(images=images)  # first call
    calls = max(1, 32 // batch)
    start = time.perf_counter()
    for _ in range(calls):
      serve(images=images)["class_ids"].numpy()
    seconds = (time.perf_counter() - start) / calls
    print(f"| {batch} | {batch / seconds:.2f} | {seconds:.3f} |")


if __name__ == "__main__":
  app.run(main)

r"""Conversion throughput: tfscale's TF-free converter with 1 and 2 workers beside the classic
single-process TensorFlow loop, on the same generated ImageNet-sized JPEGs, in one invocation.

  python -m tfscale_tools.bench_convert [--images=2000 --shards=16 --repeats=3 --work_dir=/tmp/tfscale-convert-bench]

Each repeat runs all three in a rotated order; every run writes a fresh output directory. Times are
measured inside each run (interpreter and TensorFlow start-up excluded for both sides; the converter's
worker-pool start-up is included). Prints a Markdown table with the median images/s and the ratios.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from absl import app, flags

from data_prep import shards, synthetic

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 2000, "Images in the generated tree (10 classes).")
flags.DEFINE_integer("shards", 16, "Output shards per run.")
flags.DEFINE_integer("repeats", 3, "Rounds of the three contenders.")
flags.DEFINE_string("work_dir", "/tmp/tfscale-convert-bench", "Tree and outputs (the tree is kept for reuse).")


def run_converter(entries, output_dir, workers):
  start = time.perf_counter()
  shards.convert("bench", output_dir, {"train": shards.Split(entries, FLAGS.shards)},
                 [{"synset": f"n{c + 1:08d}", "text": ""} for c in range(10)], 0, {}, num_workers=workers)
  return time.perf_counter() - start


def run_tf_baseline(list_file, output_dir):
  result = subprocess.run([sys.executable, "-m", "tfscale_tools.bench_convert_tf", list_file, output_dir,
                           str(FLAGS.shards)], capture_output=True, text=True, check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


def main(argv):
  del argv
  paths = synthetic.make_tree(FLAGS.work_dir, 10, FLAGS.images // 10)
  entries = [shards.Entry(p, int(os.path.basename(os.path.dirname(p))[1:]) - 1, os.path.basename(os.path.dirname(p)))
             for p in paths]
  list_file = os.path.join(FLAGS.work_dir, "list.tsv")
  with open(list_file, "w") as f:
    f.writelines(f"{e.path}\t{e.label}\t{e.synset}\n" for e in entries)
  mean_kb = statistics.mean(os.path.getsize(p) for p in paths) / 1000
  contenders = {
      "TF loop, 1 process (baseline)": lambda out: run_tf_baseline(list_file, out),
      "tfscale converter, 1 worker": lambda out: run_converter(entries, out, 1),
      "tfscale converter, 2 workers": lambda out: run_converter(entries, out, 2),
  }
  names = list(contenders)
  seconds = {name: [] for name in names}
  for repeat in range(FLAGS.repeats):
    for name in names[repeat % 3:] + names[:repeat % 3]:
      out = os.path.join(FLAGS.work_dir, "out")
      shutil.rmtree(out, ignore_errors=True)
      seconds[name].append(contenders[name](out))
      print(f"repeat {repeat + 1}: {name}: {len(entries) / seconds[name][-1]:,.0f} images/s", file=sys.stderr)
  shutil.rmtree(os.path.join(FLAGS.work_dir, "out"), ignore_errors=True)
  baseline = statistics.median(seconds[names[0]])
  print(f"\n{len(entries)} JPEGs of 500×375, mean {mean_kb:.0f} KB, {FLAGS.shards} shards, "
        f"median of {FLAGS.repeats}, {os.cpu_count()} cores\n")
  print("| contender | images/s | × baseline |\n|---|---:|---:|")
  for name in names:
    median = statistics.median(seconds[name])
    print(f"| {name} | {len(entries) / median:,.0f} | {baseline / median:.2f} |")


if __name__ == "__main__":
  app.run(main)

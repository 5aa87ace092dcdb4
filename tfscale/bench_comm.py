r"""Communication benchmarks: what allreduce costs a ResNet-50 step, and how close to linear ranks scale.

  python -m tfscale.bench comm [--rounds=3 --comm_repeats=5 --weak_models=resnet50,wrn50_2 --weak_steps=3]
      1. allreduce of ResNet-50's gradient set (161 tensors, 25,557,032 floats) with 2 ranks under
         horovodrun --mpi and --gloo: one flat buffer, Horovod's grouped allreduce (tensor fusion, what the
         optimizer does) and one blocking allreduce per variable; fp32 and fp16 on the wire. Beside it,
         memcpy bandwidth of the same bytes, measured by the same worker in the same run.
      2. weak scaling of the real training step: 2 ranks × 1 thread (mpirun, one core each) against
         1 rank × 1 thread, for each of --weak_models; efficiency = per-rank images/s ratio.
  python -m tfscale.bench comm_worker [--comm_sizes=…]
      the allreduce measurement itself, run under any launcher (the parent above, or the network-namespace
      hosts of scripts/netns/); rank 0 prints a table and one `BENCH_RESULT {json}` line.

Bandwidths follow the NCCL-tests convention: algorithm bandwidth = payload bytes / time, bus bandwidth =
algorithm bandwidth × 2(n−1)/n, the bytes each rank's link carries in a ring allreduce; with 2 ranks the
two are equal.
"""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("comm_repeats", 5, "`comm`: timed allreduces per measurement (median reported).")
flags.DEFINE_list("comm_sizes", [], "`comm_worker`: also time flat fp32 allreduces of these many bytes "
                  "(e.g. 4096,65536,1048576,16777216): the α-β calibration of `python -m tfscale.plan`.")
flags.DEFINE_list("weak_models", ["resnet50", "wrn50_2"], "`comm`: models of the weak-scaling measurement.")
flags.DEFINE_integer("weak_steps", 3, "`comm`: timed training steps per weak-scaling run.")
flags.DEFINE_integer("weak_batch", 32, "`comm`: per-rank batch of the weak-scaling runs.")

RESULT_PREFIX = "BENCH_RESULT "


def gradient_shapes(name: str = "resnet50"):
  """Shapes of the model's trainable variables: the tensors its optimizer allreduces every step."""
  import tf_keras
  from tfscale.models import create_model
  model = create_model(name, 1000, 224)
  shapes = [tuple(v.shape) for v in model.trainable_variables]
  del model
  tf_keras.backend.clear_session()
  return shapes


def memcpy_gbps(nbytes: int, repeats: int = 5) -> float:
  """GB/s of copying `nbytes` between two resident buffers (bytes copied per second, the memcpy figure)."""
  source = np.ones(nbytes // 4, np.float32)
  target = np.empty_like(source)
  np.copyto(target, source)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    np.copyto(target, source)
    times.append(time.perf_counter() - start)
  return nbytes / statistics.median(times) / 1e9


def _median_seconds(run, repeats):
  run()  # warm-up: Horovod negotiates the tensors' names and sizes once
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure_allreduce(shapes, repeats, sizes=()):
  """Rows {mode, wire, tensors, bytes, seconds} for each way of allreducing `shapes`, plus the flat sweep."""
  import tensorflow as tf
  import horovod.tensorflow as hvd
  rng = np.random.default_rng(hvd.rank())
  grads = [tf.constant(rng.standard_normal(shape, np.float32)) for shape in shapes]
  flat = tf.concat([tf.reshape(g, [-1]) for g in grads], 0)
  floats = int(flat.shape[0])

  def cast_sum(tensor, wire):
    return tf.cast(hvd.allreduce(tf.cast(tensor, wire), op=hvd.Sum), tf.float32)

  flat_fn = {wire: tf.function(lambda x, wire=wire: cast_sum(x, wire)) for wire in (tf.float32, tf.float16)}
  grouped_fn = {wire: tf.function(lambda ts, wire=wire: [tf.cast(t, tf.float32) for t in hvd.grouped_allreduce(
      [tf.cast(t, wire) for t in ts], op=hvd.Sum)]) for wire in (tf.float32, tf.float16)}

  def per_variable(wire):
    for g in grads:  # eager: each call blocks until its allreduce is done, so nothing is fused
      cast_sum(g, wire).numpy()

  rows = []
  for wire, wire_name, width in ((tf.float32, "fp32", 4), (tf.float16, "fp16", 2)):
    for mode, tensors, run in (
        ("one flat buffer", 1, lambda: flat_fn[wire](flat).numpy()),
        ("grouped (tensor fusion)", len(grads), lambda: [t.numpy() for t in grouped_fn[wire](grads)][-1]),
        ("one allreduce per variable", len(grads), lambda: per_variable(wire))):
      rows.append({"mode": mode, "wire": wire_name, "tensors": tensors, "bytes": floats * width,
                   "fp32_bytes": floats * 4, "seconds": _median_seconds(run, repeats)})
  try:
    hvd.allreduce(tf.zeros([8], tf.bfloat16), op=hvd.Sum).numpy()
    bf16 = "supported"
  except Exception as error:  # Horovod 0.28.1 registers its allreduce for int and float16/32/64 only
    bf16 = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
  sweep = []
  for nbytes in sorted(int(s) for s in sizes):
    buffer = tf.constant(rng.standard_normal(max(1, nbytes // 4), np.float32))
    sweep.append({"bytes": nbytes, "seconds": _median_seconds(lambda: flat_fn[tf.float32](buffer).numpy(),
                                                              max(repeats, 10))})
  return {"floats": floats, "tensors": len(grads), "rows": rows, "bf16": bf16, "sweep": sweep}


def comm_worker():
  """One allreduce measurement under whatever launcher started this process; rank 0 reports."""
  from tfscale import distributed
  import horovod.tensorflow as hvd
  distributed.init()
  shapes = gradient_shapes("resnet50")
  result = measure_allreduce(shapes, FLAGS.comm_repeats, FLAGS.comm_sizes)
  memcpy = memcpy_gbps(result["floats"] * 4)
  result.update(ranks=hvd.size(), memcpy_gbps=memcpy, controller="mpi" if hvd.mpi_enabled() and
                not hvd.gloo_enabled() else "gloo", local_size=hvd.local_size())
  if hvd.rank() == 0:
    print(allreduce_table([result]))
    print(RESULT_PREFIX + json.dumps(result))


def bus_gbps(row, ranks):
  return row["bytes"] / row["seconds"] / 1e9 * 2 * (ranks - 1) / ranks


def allreduce_table(results) -> str:
  """Markdown: one row per (controller, wire, mode)."""
  lines = ["| controller | on the wire | mode | tensors | ms | bus GB/s | fp32 gradient GB/s | of memcpy |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
  for result in results:
    for row in result["rows"]:
      bus = bus_gbps(row, result["ranks"])
      effective = row["fp32_bytes"] / row["seconds"] / 1e9
      lines.append(f"| {result['controller']} | {row['wire']} | {row['mode']} | {row['tensors']} | "
                   f"{1e3 * row['seconds']:.1f} | {bus:.2f} | {effective:.2f} | "
                   f"{100 * bus / result['memcpy_gbps']:.0f} % |")
  return "\n".join(lines)


def run_child(argv, env=None):
  """Runs a benchmark child; returns the JSON of its BENCH_RESULT line (raises with its stderr if none)."""
  child = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
  for line in child.stdout.splitlines():
    if line.startswith(RESULT_PREFIX):
      return json.loads(line[len(RESULT_PREFIX):])
  raise RuntimeError(f"{' '.join(argv[:6])}… exited {child.returncode} without a result:\n{child.stderr[-3000:]}")


MPI_ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def horovodrun(controller, module_argv):
  return ["horovodrun", "-np", "2", "-H", "localhost:2", f"--{controller}", sys.executable, "-m", *module_argv]


def weak_scaling_argv(model, ranks):
  """1 rank pinned to core 0, or 2 ranks pinned one core each by mpirun; 1 intra- and 1 inter-op thread."""
  bench = [sys.executable, "-m", "tfscale.bench", "model", f"--models={model}", f"--batches={FLAGS.weak_batch}",
           "--dtypes=float32", "--nobare", "--rounds=1", f"--steps={FLAGS.weak_steps}", "--intra_op_threads=1",
           "--inter_op_threads=1", "--gemm_ceiling=False"]
  if ranks == 1:
    return ["taskset", "-c", "0", *bench]
  return ["mpirun", "-np", str(ranks), "--map-by", "core", "--bind-to", "core", *bench]


def bench_comm():
  results = []
  for controller in ("mpi", "gloo"):
    result = run_child(horovodrun(controller, ["tfscale.bench", "comm_worker",
                                               f"--comm_repeats={FLAGS.comm_repeats}"]), MPI_ROOT_ENV)
    results.append(result)
    print(f"allreduce under {controller}: done (memcpy {result['memcpy_gbps']:.1f} GB/s)", file=sys.stderr)
  first = results[0]
  print(f"\nallreduce of ResNet-50's gradients ({first['tensors']} tensors, {first['floats']:,} floats, "
        f"{first['floats'] * 4 / 1e6:.1f} MB in fp32), {first['ranks']} ranks on one host, median of "
        f"{FLAGS.comm_repeats}; memcpy of the same bytes in the same workers: "
        + ", ".join(f"{r['controller']} run {r['memcpy_gbps']:.1f} GB/s" for r in results) + "\n")
  print(allreduce_table(results))
  print(f"\nbf16 on the wire: {first['bf16']}")

  print("\nweak scaling: per-rank images/s of the training step (fp32, batch "
        f"{FLAGS.weak_batch} per rank, 1 thread per rank), rounds alternating\n")
  print("| model | 1 rank × 1 thread | 2 ranks × 1 thread (per rank) | efficiency | per round |\n"
        "|---|---:|---:|---:|---|")
  for model in FLAGS.weak_models:
    rates = {1: [], 2: []}
    for round_ in range(FLAGS.rounds):
      for ranks in ((1, 2) if round_ % 2 == 0 else (2, 1)):
        rows = run_child(weak_scaling_argv(model, ranks), MPI_ROOT_ENV)
        rates[ranks].append(rows[0]["images_per_second"])
        print(f"{model} round {round_ + 1}: {ranks} rank(s): {rates[ranks][-1]:.3f} images/s per rank",
              file=sys.stderr)
    ratios = [two / one for one, two in zip(rates[1], rates[2])]
    print(f"| {model} | {statistics.median(rates[1]):.3f} | {statistics.median(rates[2]):.3f} | "
          f"**{100 * statistics.median(ratios):.1f} %** | {' '.join(f'{100 * r:.1f}' for r in ratios)} |")

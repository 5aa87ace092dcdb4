r"""Communication benchmarks: what allreduce costs a ResNet-50 step, and how close to linear ranks scale.

  python -m tfscale_tools.bench comm [--rounds=3 --comm_repeats=5 --weak_models=resnet50,wrn50_2 --weak_steps=3]
      1. allreduce of ResNet-50's gradient set (161 tensors, 25,557,032 floats) with 2 ranks under
         horovodrun --mpi and --gloo: one flat buffer, Horovod's grouped allreduce (tensor fusion, what the
         optimizer does) and one blocking allreduce per variable; fp32 and fp16 on the wire. Beside it,
         memcpy bandwidth of the same bytes, measured by the same worker in the same run.
      2. weak scaling of the real training step: 2 ranks × 1 thread (mpirun, one core each) against
         1 rank × 1 thread, for each of --weak_models; efficiency = per-rank images/s ratio.
  python -m tfscale_tools.bench comm_worker [--comm_sizes=…]
      the allreduce measurement itself, run under any launcher (the parent above, or the network-namespace
      hosts of scripts/netns/); rank 0 prints a table and writes the numbers to --result_file as JSON.

Bandwidths follow the NCCL-tests convention: algorithm bandwidth = payload bytes / time, bus bandwidth =
algorithm bandwidth × 2(n−1)/n, the bytes each rank's link carries in a ring allreduce; with 2 ranks the
two are equal.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("comm_repeats", 5, "`comm`: timed allreduces per measurement (median reported).")
flags.DEFINE_list("comm_sizes", [], "`comm_worker`: also time flat fp32 allreduces of these many bytes "
                  "(e.g. 4096,65536,1048576,16777216): the α-β calibration of `python -m tfscale_tools.cost_model`.")
flags.DEFINE_list("weak_models", ["resnet50", "wrn50_2"], "`comm`: models of the weak-scaling measurement.")
flags.DEFINE_bool("allreduce", True, "`comm`: run the allreduce part (--noallreduce: weak scaling only).")
flags.DEFINE_integer("weak_steps", 3, "`comm`: timed training steps per weak-scaling run.")
flags.DEFINE_integer("weak_batch", 32, "`comm`: per-rank batch of the weak-scaling runs.")
flags.DEFINE_enum("backend", "horovod", ["horovod", "tf"], "`comm_worker`: what carries the collectives (`model` "
                  "takes --config.train.backend); tf runs under mpirun or srun, not horovodrun.")
flags.DEFINE_string("result_file", None, "`model`, `comm_worker`: rank 0 also writes its numbers here as JSON "
                    "(how parent benchmarks read their children: launchers mangle long stdout lines).")


def write_result(result):
  if FLAGS.result_file:
    with open(FLAGS.result_file, "w") as f:
      json.dump(result, f)


def gradient_shapes(name: str = "resnet50"):
  """Shapes of the model's trainable variables: the tensors its optimizer allreduces every step."""
  import tf_keras
  from tfscale.config_base import model_config
  from tfscale.models import create_model
  model = create_model(model_config(name=name), 1000, 224)
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
  """Rows {mode, wire, tensors, bytes, seconds} for each way of allreducing `shapes`, plus the flat sweep.

  "the training step's" is `tfscale.distributed.mean_gradients` traced into one tf.function, the very
  reduction the optimizer runs (Horovod: one grouped allreduce, its tensor fusion; tf: packed buffers of
  ≤ 64 MB); "one flat buffer" is the same call on the gradients concatenated. Under Horovod the raw
  per-variable allreduce is timed too (this tool calls Horovod itself for it: the library has no use for it)."""
  import tensorflow as tf
  from tfscale import distributed
  rng = np.random.default_rng(distributed.rank())
  grads = [tf.constant(rng.standard_normal(shape, np.float32)) for shape in shapes]
  flat = tf.concat([tf.reshape(g, [-1]) for g in grads], 0)
  floats = int(flat.shape[0])
  mean = {wire: tf.function(lambda ts, wire=wire: distributed.mean_gradients(ts, wire)) for wire in ("none", "fp16")}
  runs = {wire: [("one flat buffer", 1, lambda wire=wire: mean[wire]([flat])[0].numpy()),
                 ("the training step's (distributed.mean_gradients)", len(grads),
                  lambda wire=wire: mean[wire](grads)[-1].numpy())] for wire in ("none", "fp16")}
  bf16 = "supported"
  if distributed.backend_name() == "horovod":
    import horovod.tensorflow as hvd
    per_variable = tf.function(lambda t, wire: tf.cast(hvd.allreduce(tf.cast(t, wire), op=hvd.Sum), tf.float32))

    def each_variable(wire):
      for g in grads:  # each call blocks until its allreduce is done, so nothing is fused
        per_variable(g, wire).numpy()
    for wire, dtype in (("none", tf.float32), ("fp16", tf.float16)):
      runs[wire].append(("one allreduce per variable", len(grads), lambda dtype=dtype: each_variable(dtype)))
    try:
      hvd.allreduce(tf.zeros([8], tf.bfloat16), op=hvd.Sum).numpy()
    except Exception as error:  # Horovod 0.28.1 registers its allreduce for int and float16/32/64 only
      bf16 = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
  rows = []
  for wire, wire_name, width in (("none", "fp32", 4), ("fp16", "fp16", 2)):
    for mode, tensors, run in runs[wire]:
      rows.append({"mode": mode, "wire": wire_name, "tensors": tensors, "bytes": floats * width,
                   "fp32_bytes": floats * 4, "seconds": _median_seconds(run, repeats)})
  sweep = []
  for nbytes in sorted(int(s) for s in sizes):
    buffer = tf.constant(rng.standard_normal(max(1, nbytes // 4), np.float32))
    sweep.append({"bytes": nbytes, "seconds": _median_seconds(lambda: mean["none"]([buffer])[0].numpy(),
                                                              max(repeats, 10))})
  return {"floats": floats, "tensors": len(grads), "rows": rows, "bf16": bf16, "sweep": sweep}


def comm_worker():
  """One allreduce measurement under whatever launcher started this process, on --backend; rank 0 reports."""
  from tfscale import distributed
  distributed.init(FLAGS.backend)
  distributed.configure_threads(0, 0)
  shapes = gradient_shapes("resnet50")
  result = measure_allreduce(shapes, FLAGS.comm_repeats, FLAGS.comm_sizes)
  versions = distributed.software()
  controller = (f"horovod {versions['controller']}" if versions["backend"] == "horovod"
                else f"tf ({versions['launcher']})")
  result.update(ranks=distributed.size(), memcpy_gbps=memcpy_gbps(result["floats"] * 4), controller=controller,
                backend=versions["backend"], local_size=distributed.local_size())
  if distributed.is_chief():
    print(allreduce_table([result]))
    write_result(result)


def bus_gbps(row, ranks):
  return row["bytes"] / row["seconds"] / 1e9 * 2 * (ranks - 1) / ranks


def allreduce_table(results) -> str:
  """Markdown: one row per (controller, wire, mode)."""
  lines = ["| backend | on the wire | mode | tensors | ms | bus GB/s | fp32 gradient GB/s | of memcpy |",
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
  """Runs a benchmark child with --result_file appended; returns that JSON (raises with its stderr if none)."""
  with tempfile.TemporaryDirectory() as scratch:
    path = os.path.join(scratch, "result.json")
    child = subprocess.run([*argv, f"--result_file={path}"], capture_output=True, text=True,
                           env={**os.environ, **(env or {})})
    if child.returncode == 0 and os.path.exists(path):
      with open(path) as f:
        return json.load(f)
  raise RuntimeError(f"{' '.join(argv[:8])}… exited {child.returncode} without a result:\n{child.stderr[-3000:]}")


def run_children_at_once(argvs):
  """images/s of `model` children started together (each with its own --result_file)."""
  with tempfile.TemporaryDirectory() as scratch:
    paths = [os.path.join(scratch, f"{i}.json") for i in range(len(argvs))]
    children = [subprocess.Popen([*argv, f"--result_file={path}"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for argv, path in zip(argvs, paths)]
    errors = [child.communicate()[1] for child in children]
    rates = []
    for child, path, error in zip(children, paths, errors):
      if child.returncode != 0 or not os.path.exists(path):
        raise RuntimeError(f"a concurrent benchmark child failed ({child.returncode}):\n{error[-3000:]}")
      with open(path) as f:
        rates.append(json.load(f)[0]["images_per_second"])
    return rates


MPI_ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def horovodrun(controller, module_argv, python=sys.executable):
  """2 ranks on this host under `python`'s venv's horovodrun (another venv's: tfscale_tools/bench_stacks.py)."""
  return [os.path.join(os.path.dirname(python), "horovodrun"), "-np", "2", "-H", "localhost:2",
          f"--{controller}", python, "-m", *module_argv]


def weak_step_argv(model):
  """The training-step benchmark of one rank with 1 intra- and 1 inter-op thread."""
  return [sys.executable, "-m", "tfscale_tools.bench", "model", f"--models={model}", f"--batches={FLAGS.weak_batch}",
          "--dtypes=float32", "--nobare", "--rounds=1", f"--steps={FLAGS.weak_steps}",
          "--config.train.intra_op_threads=1", "--config.train.inter_op_threads=1", "--nogemm_ceiling"]


def weak_scaling_argv(model, ranks):
  """1 rank pinned to core 0, or `ranks` ranks pinned one core each by mpirun."""
  if ranks == 1:
    return ["taskset", "-c", "0", *weak_step_argv(model)]
  return ["mpirun", "-np", str(ranks), "--map-by", "core", "--bind-to", "core", *weak_step_argv(model)]


# Weak-scaling contenders: name → (ranks, label, environment). "independent" runs two unconnected 1-rank
# processes at once, one per core: what sharing the node costs without any communication, the ceiling
# of weak scaling on this host. "defaults" keeps Horovod's and Open MPI's own settings instead of
# tfscale's (distributed.RUNTIME_DEFAULTS).
WEAK_RUNS = {
    "one": (1, "1 rank × 1 thread", {}),
    "tfscale": (2, "2 ranks × 1 thread", {}),
    "independent": (2, "2 independent 1-rank processes, no communication", {}),
    "defaults": (2, "2 ranks, Horovod/Open MPI defaults", {"OMPI_MCA_mpi_yield_when_idle": "0"}),
}
flags.DEFINE_list("weak_runs", list(WEAK_RUNS), f"`comm`: weak-scaling contenders ({', '.join(WEAK_RUNS)}); "
                  "'one' always runs, as the baseline.")


def bench_comm():
  if FLAGS.allreduce:
    bench_allreduce()
  bench_weak_scaling()


def bench_allreduce():
  results = []
  for controller in ("mpi", "gloo"):
    result = run_child(horovodrun(controller, ["tfscale_tools.bench", "comm_worker",
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


def bench_weak_scaling():
  print("\nweak scaling: per-rank images/s of the training step (fp32, batch "
        f"{FLAGS.weak_batch} per rank, 1 thread per rank, each rank pinned to its core), rounds alternating; "
        "efficiency = median of per-round ratios to 1 rank alone\n")
  runs = [WEAK_RUNS["one"]] + [WEAK_RUNS[name] for name in FLAGS.weak_runs if name != "one"]
  print("| model | " + " | ".join(label for _, label, _ in runs) + " |\n|---|" + "---:|" * len(runs))
  for model in FLAGS.weak_models:
    rates = [[] for _ in runs]
    for round_ in range(FLAGS.rounds):
      for index in (range(len(runs)) if round_ % 2 == 0 else reversed(range(len(runs)))):
        ranks, label, env = runs[index]
        if label.startswith("2 independent"):
          rates[index].append(statistics.mean(run_children_at_once(
              [["taskset", "-c", str(core), *weak_step_argv(model)] for core in (0, 1)])))
        else:
          rows = run_child(weak_scaling_argv(model, ranks), {**MPI_ROOT_ENV, **env})
          rates[index].append(rows[0]["images_per_second"])
        print(f"{model} round {round_ + 1}: {label}: {rates[index][-1]:.3f} images/s per rank", file=sys.stderr)
    cells = [f"{statistics.median(rates[0]):.3f}"]
    for index in range(1, len(runs)):
      ratios = [r / one for r, one in zip(rates[index], rates[0])]
      cells.append(f"{statistics.median(rates[index]):.3f} (**{100 * statistics.median(ratios):.1f} %**: "
                   + " ".join(f"{100 * r:.0f}" for r in ratios) + ")")
    print(f"| {model} | " + " | ".join(cells) + " |")

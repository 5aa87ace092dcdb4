r"""Two installed stacks side by side (results: docs/BENCHMARKS.md, "TensorFlow 2.21 against 2.18.1").

  python -m tfscale_tools.bench_stacks --pythons=/opt/tf218/bin/python,.venv/bin/python \
      [--parts=model,allreduce,netns --rounds=3 --steps=12 --comm_repeats=5 --netns_rate=1gbit]

Each --pythons entry is the interpreter of a venv that scripts/install.sh built (TFSCALE_TF=… TFSCALE_VENV=…)
on this same checkout, so both run the same tfscale code and differ only in the stack. The first is the
baseline; ratios are the second ÷ the first, the median of per-round ratios, rounds alternating the order.
  model      tfscale's ResNet-50 training step (bench model: the trainer's step for its default recipe, 1 rank),
             batch 32, fp32 and mixed_bfloat16, synthetic input, and the matmul ceiling of the same child.
  allreduce  Horovod's allreduce of ResNet-50's gradient (bench comm_worker), 2 ranks under horovodrun
             --mpi and --gloo on this host, fp32 and fp16 on the wire.
  netns      the training step of 2 namespace hosts × 1 rank × 1 thread over a --netns_rate link
             (scripts/netns; needs root), batch 16, fp32.
"""
import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

from tfscale_tools import bench_comm

FLAGS = flags.FLAGS
flags.DEFINE_list("pythons", None, "Interpreters of the two venvs: baseline first.")
flags.DEFINE_list("parts", ["model", "allreduce", "netns"], "What to measure: model, allreduce, netns.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
flags.DEFINE_integer("steps", 12, "Timed training steps per `model` child.")
flags.DEFINE_string("netns_rate", "1gbit", "Link rate of the namespace hosts (tc tbf rate).")
flags.DEFINE_integer("netns_steps", 3, "Timed training steps per `netns` child.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import platform, tfscale, tensorflow as tf, tf_keras, horovod; "
         "print(f'Python {platform.python_version()}, TF {tf.__version__}, tf_keras {tf_keras.__version__}, "
         "Horovod {horovod.__version__}')")


def describe(python: str) -> str:
  return subprocess.run([python, "-c", PROBE], capture_output=True, text=True, check=True,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout.strip()


def model_argv(python):
  return [python, "-m", "tfscale_tools.bench", "model", "--models=resnet50", "--batches=32",
          "--dtypes=float32,mixed_bfloat16", "--nobare", "--rounds=1", f"--steps={FLAGS.steps}"]


def measure_model(python) -> dict:
  rows = bench_comm.run_child(model_argv(python))
  result = {f"step {r['dtype']} images/s": r["images_per_second"] for r in rows}
  result.update({f"matmul ceiling {r['dtype']} GFLOP/s": r["gflops"] / r["ceiling_share"] for r in rows})
  return result


def measure_allreduce(python) -> dict:
  result = {}
  for controller in ("mpi", "gloo"):
    child = bench_comm.run_child(bench_comm.horovodrun(
        controller, ["tfscale_tools.bench", "comm_worker", f"--comm_repeats={FLAGS.comm_repeats}"], python),
        bench_comm.MPI_ROOT_ENV)
    for row in child["rows"]:
      if row["mode"] != "one allreduce per variable":  # the unfused way is not what training does
        result[f"allreduce {controller} {row['wire']} {row['mode']} ms"] = 1e3 * row["seconds"]
  return result


def measure_netns(python) -> dict:
  netns = os.path.join(REPO, "scripts", "netns")
  step = [os.path.join(REPO, "scripts", "cpu_env.sh"), "1", "--", python, "-m", "tfscale_tools.bench", "model",
          "--models=resnet50", "--batches=16", "--dtypes=float32", "--nobare", "--rounds=1",
          f"--steps={FLAGS.netns_steps}", "--config.train.intra_op_threads=1", "--config.train.inter_op_threads=1",
          "--nogemm_ceiling"]
  rows = bench_comm.run_child([os.path.join(netns, "mpirun.sh"), "--", *step], bench_comm.MPI_ROOT_ENV)
  return {f"2 hosts at {FLAGS.netns_rate}: step images/s per rank": rows[0]["images_per_second"]}


PARTS = {"model": measure_model, "allreduce": measure_allreduce, "netns": measure_netns}
LOWER_IS_BETTER = " ms"


def table(names, runs) -> str:
  """Median per stack and the median of per-round ratios (second ÷ first; for times, first ÷ second, so
  > 1 always means the second stack is faster)."""
  keys = [k for k in runs[0][0] if all(k in r for stack in runs for r in stack)]
  lines = [f"| measurement | {names[0]} | {names[1]} | speed ratio (per round) |", "|---|---:|---:|---:|"]
  for key in keys:
    base, new = [r[key] for r in runs[0]], [r[key] for r in runs[1]]
    ratios = [(b / n) if key.endswith(LOWER_IS_BETTER) else (n / b) for b, n in zip(base, new)]
    lines.append(f"| {key} | {statistics.median(base):.2f} | {statistics.median(new):.2f} | "
                 f"**{statistics.median(ratios):.3f}** ({' '.join(f'{r:.3f}' for r in ratios)}) |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1 or not FLAGS.pythons or len(FLAGS.pythons) != 2:
    raise app.UsageError("give --pythons=BASELINE_PYTHON,NEW_PYTHON")
  unknown = sorted(set(FLAGS.parts) - set(PARTS))
  if unknown:
    raise app.UsageError(f"unknown parts {unknown}; known: {sorted(PARTS)}")
  pythons = [os.path.abspath(p) for p in FLAGS.pythons]
  names = [describe(p) for p in pythons]
  runs = [[{} for _ in range(FLAGS.rounds)] for _ in pythons]
  if "netns" in FLAGS.parts:
    subprocess.run([os.path.join(REPO, "scripts", "netns", "up.sh"), "--hosts=2", f"--rate={FLAGS.netns_rate}"],
                   check=True)
  try:
    for round_ in range(FLAGS.rounds):
      for part in FLAGS.parts:
        for index in (0, 1) if round_ % 2 == 0 else (1, 0):
          runs[index][round_].update(PARTS[part](pythons[index]))
          print(f"round {round_ + 1}: {part}: {names[index]}: done", file=sys.stderr)
  finally:
    if "netns" in FLAGS.parts:
      subprocess.run([os.path.join(REPO, "scripts", "netns", "down.sh")], check=False)
  print(f"\n{os.cpu_count()} cores; {FLAGS.rounds} rounds, order alternating; baseline {names[0]}\n")
  print(table(names, runs))
  print(json.dumps({"stacks": names, "runs": runs}))


if __name__ == "__main__":
  app.run(main)

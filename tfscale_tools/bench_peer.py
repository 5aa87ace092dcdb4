r"""tfscale against its peer, TF Model Garden's ResNet-50, on the same shards (results: docs/BENCHMARKS.md).

  python -m tfscale_tools.bench_peer [--dtypes=float32,mixed_bfloat16 --batch=32 --steps=10 --rounds=4]

Model Garden (tf-models-official 2.18.0 with tensorflow 2.18.1 and tf_keras 2.18.0) is installed into its own
virtualenv on first use (--peer_venv), on this interpreter. Its newest release, 2.20.0, requires
tensorflow~=2.20.0 and tensorflow-text~=2.20.0, so there is no Model Garden for tfscale's default TF 2.21:
for a same-TF comparison run this tool from a TF 2.18 venv (Python 3.11)
(`TFSCALE_TF=2.18 TFSCALE_VENV=DIR scripts/install.sh`, then `DIR/bin/python -m tfscale_tools.bench_peer`). Each round runs both contenders, one child
process each, the order alternating between rounds, as their users run them:

  Model Garden  python -m official.vision.train --experiment=resnet_imagenet --mode=train on the shards
                (its ResNet-50 v1.5, SGD with its L2 loss, its tf.data pipeline with fused decode-and-crop,
                TF's default threads), three loops of --steps steps; the rate is its own steps_per_second
                summary of the third loop (the first traces the step; orbit's timer for the second
                includes the checkpoint saved after the first).
  tfscale       scripts/cpu_env.sh -- python -m tfscale.train with configs/resnet50_i1k_lars.py cut to
                --tfscale_epochs epochs of --steps + 1 steps (tfscale_tools/bench_peer_config.py); the rate
                is the last epoch's steady-state images/s in metrics.jsonl (its first step excluded).

Same shards (generated 500×375 JPEGs of 10 classes, a 10-way head on both), batch, dtype and step count. The table gives
each contender's median images/s, the median of per-round ratios, and each child's peak resident memory.
"""
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from tfscale_tools import bench_comm

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "/tmp/tfscale-bench", "Generated JPEGs and shards (kept for reuse).")
flags.DEFINE_string("peer_venv", os.path.expanduser("~/.cache/tfscale/peer-venv"), "Model Garden's virtualenv "
                    "(created on first use).")
flags.DEFINE_list("dtypes", ["float32", "mixed_bfloat16"], "Dtype policies to compare.")
flags.DEFINE_integer("batch", 32, "Images per step (one process each).")
flags.DEFINE_integer("steps", 10, "Timed steps per contender and round (after the traced ones).")
flags.DEFINE_integer("rounds", 4, "Alternating rounds.")
flags.DEFINE_integer("tfscale_epochs", 2, "tfscale trains this many epochs of --steps + 1 steps and reports the "
                     "last one's rate (from epoch 2 on, warmed up as Model Garden's timed loop is).")
flags.DEFINE_list("contenders", ["model_garden", "tfscale"], "Who runs (the first is the ratios' baseline); with "
                  "--netns_hosts also tfscale_horovod and tfscale_fp16 (tfscale is then its tf backend).")
flags.DEFINE_integer("netns_hosts", 0, "Run each contender on this many namespace hosts of scripts/netns/up.sh "
                     "(Model Garden: MultiWorkerMirroredStrategy, one worker per host; tfscale: one rank per host "
                     "under scripts/netns/mpirun.sh); 0: one process on this host.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_PACKAGES = ["tensorflow==2.18.1", "tf_keras==2.18.0", "tf-models-official==2.18.0"]
# Variables of tfscale's launcher (scripts/cpu_env.sh) that must not leak into the peer's process.
LAUNCHER_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "KMP_AFFINITY", "KMP_BLOCKTIME",
                "LD_PRELOAD", "MALLOC_CONF")


def peer_python() -> str:
  """Model Garden's interpreter, installing it first if needed (≈ 1.1 GB; PyPI only)."""
  python = os.path.join(FLAGS.peer_venv, "bin", "python")
  ready = os.path.exists(python) and subprocess.run([python, "-c", "import official.vision"],
                                                    capture_output=True).returncode == 0
  if not ready:
    print(f"installing {' '.join(PEER_PACKAGES)} into {FLAGS.peer_venv}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", FLAGS.peer_venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEER_PACKAGES], check=True)
  return python


def peer_shards(steps: int, batch: int) -> str:
  """Shards with exactly one tfscale epoch of steps + 1 steps, plus a small validation split."""
  from data_prep import shard_format, synthetic
  per_class = -(-(steps + 1) * batch // 10)
  root = os.path.join(FLAGS.work_dir, f"peer-raw-{per_class}")
  shards = os.path.join(FLAGS.work_dir, f"peer-shards-{per_class}")
  if not shard_format.has_manifest(shards):
    synthetic.make_tree(root, 10, per_class)
    if not os.path.isdir(os.path.join(root, "val")):
      synthetic.make_tree(os.path.join(root, "val-tree"), 10, 4, seed=1)
      os.rename(os.path.join(root, "val-tree", "train"), os.path.join(root, "val"))
    subprocess.run([sys.executable, "-m", "data_prep.imagenet1k", f"--raw_dir={root}", f"--output_dir={shards}",
                    "--train_shards=4", "--val_shards=1"], check=True)
  return shards


def num_classes(shards: str) -> int:
  from data_prep import shard_format
  return shard_format.read_manifest(shards)["num_classes"]


def wait_with_peak_rss(argv, env, log_path) -> tuple:
  """(exit code, peak resident GB) of a child whose output goes to log_path."""
  with open(log_path, "w") as log:
    return wait_peak(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO))


def wait_peak(child) -> tuple:
  """(exit code, peak resident GB of it and the descendants it waited for)."""
  _, status, usage = os.wait4(child.pid, 0)
  return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1e6


def model_garden_params(shards, dtype, global_batch, strategy=None) -> dict:
  return {
      "task": {"model": {"num_classes": num_classes(shards)},
               "train_data": {"input_path": os.path.join(shards, "train-*"), "global_batch_size": global_batch,
                              "dtype": "bfloat16" if "bfloat16" in dtype else "float32"}},
      # Three loops, the third timed: orbit restarts its step timer before it saves the checkpoint that
      # follows loop 1 (the first save of a run is never skipped), so loop 2's rate would include that save.
      "trainer": {"train_steps": 3 * FLAGS.steps, "steps_per_loop": FLAGS.steps, "summary_interval": FLAGS.steps,
                  "checkpoint_interval": 3 * FLAGS.steps, "validation_interval": 3 * FLAGS.steps},
      "runtime": {"mixed_precision_dtype": "bfloat16" if "bfloat16" in dtype else None,
                  **({"distribution_strategy": strategy} if strategy else {})},
  }


def peer_env(**extra) -> dict:
  return {**{k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV and k != "TF_USE_LEGACY_KERAS"}, **extra}


def model_garden_rate(model_dir, code, scratch, log, global_batch) -> float:
  rates = summary_values(os.path.join(model_dir, "train"), "steps_per_second")
  if code != 0 or len(rates) < 3:
    raise RuntimeError(f"Model Garden exited {code} with steps_per_second {rates}:\n{tail(scratch, log)}")
  return rates[-1] * global_batch


def run_model_garden(python, shards, dtype, scratch) -> dict:
  model_dir = os.path.join(scratch, "model_garden")
  params = model_garden_params(shards, dtype, FLAGS.batch)
  code, rss = wait_with_peak_rss([python, "-m", "official.vision.train", "--experiment=resnet_imagenet", "--mode=train",
                                  f"--model_dir={model_dir}", f"--params_override={json.dumps(params)}"],
                                 peer_env(), os.path.join(scratch, "model_garden.log"))
  return {"images_per_second": model_garden_rate(model_dir, code, scratch, "model_garden", FLAGS.batch),
          "peak_rss_gb": rss}


def tfscale_argv(shards, dtype, workdir, *overrides) -> list:
  return [sys.executable, "-m", "tfscale.train",
          f"--config={os.path.join(REPO, 'tfscale_tools', 'bench_peer_config.py')}:{FLAGS.tfscale_epochs}",
          f"--workdir={workdir}", f"--config.data.dir={shards}", f"--config.data.num_classes={num_classes(shards)}",
          f"--config.model.dtype={dtype}", f"--config.train.batch_per_rank={FLAGS.batch}", *overrides]


def tfscale_rate(workdir, code, scratch) -> float:
  from tfscale import workdir as workdir_files
  started = os.path.exists(workdir_files.path(workdir, workdir_files.CONFIG))
  rows = workdir_files.read_metrics(workdir) if started else []
  if code != 0 or not rows:
    raise RuntimeError(f"tfscale exited {code}:\n{tail(scratch, 'tfscale')}")
  return rows[-1]["images_per_second"]


def run_tfscale(shards, dtype, scratch) -> dict:
  workdir = os.path.join(scratch, "tfscale")
  code, rss = wait_with_peak_rss([os.path.join(REPO, "scripts", "cpu_env.sh"), "--", *tfscale_argv(shards, dtype, workdir)],
                                 {**os.environ, "TFSCALE_PYTHON": sys.executable}, os.path.join(scratch, "tfscale.log"))
  return {"images_per_second": tfscale_rate(workdir, code, scratch), "peak_rss_gb": rss}


# --- On the namespace hosts of scripts/netns/up.sh (--netns_hosts=N): one process per host, each pinned to
# core (host index mod cores), as a node of N single-core hosts would run them; rates are the job's images/s.
NETNS_STATE = os.environ.get("TFSCALE_NETNS_STATE", "/run/tfscale-netns")
MODEL_GARDEN_PORT = 23456


def netns_hosts() -> list:
  """[(address, namespace)] of the first --netns_hosts hosts up.sh made."""
  try:
    with open(os.path.join(NETNS_STATE, "hosts")) as f:
      hosts = [tuple(line.split()[:2]) for line in f if line.strip()]
  except OSError:
    hosts = []
  if len(hosts) < FLAGS.netns_hosts:
    raise SystemExit(f"bench_peer: --netns_hosts={FLAGS.netns_hosts} but {len(hosts)} namespace hosts are up "
                     f"(scripts/netns/up.sh --hosts={FLAGS.netns_hosts})")
  return hosts[:FLAGS.netns_hosts]


def run_model_garden_hosts(python, shards, dtype, scratch) -> dict:
  """Model Garden as its users run it on a CPU cluster: one worker per host under MultiWorkerMirroredStrategy,
  TF_CONFIG naming the workers; the chief's steps_per_second summary gives the rate."""
  hosts = netns_hosts()
  model_dir = os.path.join(scratch, "model_garden")
  global_batch = FLAGS.batch * len(hosts)
  params = json.dumps(model_garden_params(shards, dtype, global_batch, "multi_worker_mirrored"))
  cluster = {"worker": [f"{address}:{MODEL_GARDEN_PORT}" for address, _ in hosts]}
  children = []
  for index, (_, namespace) in enumerate(hosts):
    env = peer_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
    log = open(os.path.join(scratch, f"model_garden{'' if index == 0 else index}.log"), "w")
    children.append(subprocess.Popen(
        ["ip", "netns", "exec", namespace, "taskset", "-c", str(index % os.cpu_count()), python, "-m",
         "official.vision.train", "--experiment=resnet_imagenet", "--mode=train", f"--model_dir={model_dir}",
         f"--params_override={params}"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO))
  codes, peaks = zip(*(wait_peak(child) for child in children))
  return {"images_per_second": model_garden_rate(model_dir, max(codes, key=abs), scratch, "model_garden", global_batch),
          "peak_rss_gb": max(peaks)}


def run_tfscale_hosts(shards, dtype, scratch, backend, *overrides) -> dict:
  """tfscale on the same hosts, started by scripts/netns/mpirun.sh, each rank pinned like Model Garden's."""
  workdir = os.path.join(scratch, "tfscale")
  pin = ["sh", "-c", f'exec taskset -c $((OMPI_COMM_WORLD_RANK % {os.cpu_count()})) "$0" "$@"']
  argv = [os.path.join(REPO, "scripts", "netns", "mpirun.sh"), "--", *pin, os.path.join(REPO, "scripts", "cpu_env.sh"),
          "1", "--", *tfscale_argv(shards, dtype, workdir, f"--config.train.backend={backend}", *overrides)]
  code, _ = wait_with_peak_rss(argv, {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"},
                               os.path.join(scratch, "tfscale.log"))
  # The ranks run under Open MPI's daemons, which mpirun does not wait for: its rusage misses them.
  return {"images_per_second": tfscale_rate(workdir, code, scratch), "peak_rss_gb": float("nan")}


def summary_values(directory: str, tag: str) -> list:
  """Scalar values of `tag` in a TensorBoard directory's event files, in step order."""
  import tensorflow as tf
  values = []
  for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values.append((event.step, float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                         else value.simple_value))
  return [v for _, v in sorted(values)]


def tail(scratch, name, lines=40) -> str:
  with open(os.path.join(scratch, f"{name}.log")) as f:
    return "".join(f.readlines()[-lines:])


def main(argv):
  del argv
  python = peer_python() if "model_garden" in FLAGS.contenders else None
  shards = peer_shards(FLAGS.steps, FLAGS.batch * max(1, FLAGS.netns_hosts))  # one tfscale epoch at any host count
  if FLAGS.netns_hosts:
    runners = {"model_garden": lambda dtype, scratch: run_model_garden_hosts(python, shards, dtype, scratch),
               "tfscale": lambda dtype, scratch: run_tfscale_hosts(shards, dtype, scratch, "tf"),
               "tfscale_horovod": lambda dtype, scratch: run_tfscale_hosts(shards, dtype, scratch, "horovod"),
               # fp16 gradients on the wire: an option of tfscale's that Model Garden's strategy does not offer
               "tfscale_fp16": lambda dtype, scratch: run_tfscale_hosts(
                   shards, dtype, scratch, "tf", "--config.train.gradient_compression=fp16")}
  else:
    runners = {"model_garden": lambda dtype, scratch: run_model_garden(python, shards, dtype, scratch),
               "tfscale": lambda dtype, scratch: run_tfscale(shards, dtype, scratch)}
  unknown = set(FLAGS.contenders) - set(runners)
  if unknown:
    raise SystemExit(f"bench_peer: no contender {sorted(unknown)} here (have {sorted(runners)})")
  results = {(name, dtype): [] for name in FLAGS.contenders for dtype in FLAGS.dtypes}
  for round_ in range(FLAGS.rounds):
    for dtype in FLAGS.dtypes:
      for name in (FLAGS.contenders if round_ % 2 == 0 else FLAGS.contenders[::-1]):
        start = time.time()
        with tempfile.TemporaryDirectory(dir=FLAGS.work_dir) as scratch:
          result = runners[name](dtype, scratch)
        results[name, dtype].append(result)
        print(f"round {round_ + 1} {dtype} {name}: {result['images_per_second']:.2f} images/s, peak RSS "
              f"{result['peak_rss_gb']:.2f} GB ({time.time() - start:.0f} s)", file=sys.stderr)
  baseline = FLAGS.contenders[0]
  where = f"{FLAGS.netns_hosts} namespace hosts × 1 core, " if FLAGS.netns_hosts else ""
  print(f"\n{where}{FLAGS.steps} steady-state steps of batch {FLAGS.batch} per child (per host), {FLAGS.rounds} alternating rounds, "
        f"{os.cpu_count()} cores; × {baseline} = median of per-round ratios\n")
  print("| contender | dtype | images/s (median) | × " + baseline + " | per-round ratios | peak RSS GB |\n"
        "|---|---|---:|---:|---|---:|")
  rows = []
  for dtype in FLAGS.dtypes:
    for name in FLAGS.contenders:
      runs, base = results[name, dtype], results[baseline, dtype]
      ratios = [a["images_per_second"] / b["images_per_second"] for a, b in zip(runs, base)]
      rate = statistics.median(r["images_per_second"] for r in runs)
      rss = statistics.median(r["peak_rss_gb"] for r in runs)
      print(f"| {name} | {dtype} | {rate:.2f} | {statistics.median(ratios):.3f} | "
            f"{' '.join(f'{r:.3f}' for r in ratios)} | {rss:.2f} |")
      rows.append({"contender": name, "dtype": dtype, "images_per_second": rate, "ratios": ratios,
                   "peak_rss_gb": rss})
  for name in FLAGS.contenders:
    if set(FLAGS.dtypes) >= {"float32", "mixed_bfloat16"}:
      speedup = [b["images_per_second"] / f["images_per_second"]
                 for b, f in zip(results[name, "mixed_bfloat16"], results[name, "float32"])]
      print(f"\n{name}: bf16 ÷ fp32 {statistics.median(speedup):.3f} "
            f"(per round {' '.join(f'{s:.2f}' for s in speedup)})")
  bench_comm.write_result(rows)


if __name__ == "__main__":
  app.run(main)

r"""Does the Collapsed Ensemble pay? The paper's comparison on the distorted digits, repeated over seeds.

  python -m tfscale_tools.ensemble_study                       # 5 seeds, 2 ranks: ≈ 25 min on 2 cores
  python -m tfscale_tools.ensemble_study --seeds=1,2,3 --out=runs/study

For every seed, with the same epochs, global batch and initial weights (configs/digits_distorted.py):
  (a) one warmup + poly run (variant `single`), its final snapshot;
  (b) the re-warmup/collapse run's final snapshot;
  (c) that run's Collapsed Ensemble (mean probabilities of its collapse snapshots);
  (d) the mean of (c)'s members.
Evaluated on the task's reported validation split (1,617 held-out digit renderings) by tfscale.evaluate.
Writes study.json, study.md (mean ± standard deviation, paired differences and how many seeds each is
positive) and study.png to --out. The data are built first if missing (the same data_prep path as
ImageNet). Recipes were chosen on the tuning split (`data_prep.digits --holdout=tune`), never this one.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["1", "2", "3", "4", "5"], "config.seed of each repetition.")
flags.DEFINE_string("out", "runs/ensemble_study", "Where runs, study.json, study.md and study.png go.")
flags.DEFINE_string("data", "data/digits_distorted", "Where the distorted digits' raw tree and shards go.")
flags.DEFINE_integer("np", 2, "Horovod ranks per training run.")
flags.DEFINE_string("config", "configs/digits_distorted.py", "The recipe: default variant = collapse run, "
                    ":single = the baseline.")

ARMS = {"single": ":single", "collapse": ""}


def _run(argv, log_path):
  with open(log_path, "w") as log:
    subprocess.run(argv, check=True, stdout=log, stderr=subprocess.STDOUT)


def build_data(data: str) -> str:
  """The reported distorted-digits tree and its shards (data_prep.digits, data_prep.imagenet1k)."""
  shards = os.path.join(data, "tfrecords")
  if not os.path.exists(os.path.join(shards, "manifest.json")):
    raw = os.path.join(data, "raw")
    subprocess.run([sys.executable, "-m", "data_prep.digits", "--task=distorted", f"--output_dir={raw}"], check=True)
    subprocess.run([sys.executable, "-m", "data_prep.imagenet1k", f"--raw_dir={raw}", f"--output_dir={shards}",
                    "--train_shards=8", "--val_shards=2"], check=True)
  return shards


def train_and_evaluate(arm: str, seed: int, shards: str) -> dict:
  """One training run (fresh workdir) and its evaluation; eval.json's result."""
  workdir = os.path.join(FLAGS.out, f"{arm}-seed{seed}")
  subprocess.run(["rm", "-rf", workdir], check=True)
  os.makedirs(workdir)
  horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
  _run([horovodrun, "-np", str(FLAGS.np), "-H", f"localhost:{FLAGS.np}", sys.executable, "-m", "tfscale.train",
        f"--config={FLAGS.config}{ARMS[arm]}", f"--workdir={workdir}", f"--config.data.dir={shards}",
        f"--config.seed={seed}"], os.path.join(workdir, "train.log"))
  _run([sys.executable, "-m", "tfscale.evaluate", f"--workdir={workdir}"], os.path.join(workdir, "evaluate.log"))
  with open(os.path.join(workdir, "eval.json")) as f:
    return json.load(f)["evals"]["val"]


def seed_row(seed: int, single: dict, collapse: dict) -> dict:
  """Top-1 (%) of the four contenders for one seed, and the collapse run's diversity."""
  members = [100 * m["top1"] for m in collapse["members"]]
  return {"seed": seed, "single": 100 * single["members"][-1]["top1"], "final_snapshot": members[-1],
          "ensemble": 100 * collapse["ensemble"]["top1"], "mean_member": statistics.mean(members),
          "best_member": max(members), "members": members,
          "mean_disagreement": 100 * collapse["diversity"]["mean_disagreement"], "images": collapse["count"]}


def summarize(rows: list) -> dict:
  """Mean ± sample standard deviation of each contender; paired differences and their positive counts."""
  def stats(values):
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}
  summary = {key: stats([r[key] for r in rows])
             for key in ("single", "final_snapshot", "ensemble", "mean_member", "best_member", "mean_disagreement")}
  for name, (a, b) in {"ensemble - single": ("ensemble", "single"),
                       "ensemble - best_member": ("ensemble", "best_member"),
                       "ensemble - mean_member": ("ensemble", "mean_member"),
                       "final_snapshot - single": ("final_snapshot", "single")}.items():
    differences = [r[a] - r[b] for r in rows]
    summary[name] = {**stats(differences), "positive": sum(d > 0 for d in differences),
                     "ties": sum(d == 0 for d in differences), "seeds": len(differences)}
  return summary


def markdown(rows: list, summary: dict, minutes: float) -> str:
  lines = [f"# Collapsed Ensemble vs one run, {len(rows)} seeds ({rows[0]['images']} validation images, "
           f"{minutes:.0f} min)", "",
           "| seed | (a) single run | (b) final snapshot | (c) ensemble | (d) mean member | best member | "
           "members disagree % |", "|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['seed']} | {r['single']:.2f} | {r['final_snapshot']:.2f} | {r['ensemble']:.2f} | "
                 f"{r['mean_member']:.2f} | {r['best_member']:.2f} | {r['mean_disagreement']:.2f} |")
  cell = lambda key: f"{summary[key]['mean']:.2f} ± {summary[key]['std']:.2f}"
  lines.append(f"| **mean ± sd** | {cell('single')} | {cell('final_snapshot')} | {cell('ensemble')} | "
               f"{cell('mean_member')} | {cell('best_member')} | {cell('mean_disagreement')} |")
  lines += ["", "| paired difference (top-1 points) | mean ± sd | positive in |", "|---|---:|---|"]
  for key in ("ensemble - single", "ensemble - best_member", "ensemble - mean_member", "final_snapshot - single"):
    s = summary[key]
    ties = f" ({s['ties']} tied)" if s["ties"] else ""
    lines.append(f"| {key.replace('_', ' ')} | {s['mean']:+.2f} ± {s['std']:.2f} | {s['positive']} of "
                 f"{s['seeds']} seeds{ties} |")
  return "\n".join(lines) + "\n"


def plot(rows: list, path: str):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  keys = [("single", "(a) single run"), ("final_snapshot", "(b) final snapshot"), ("ensemble", "(c) ensemble"),
          ("mean_member", "(d) mean member")]
  figure, axis = plt.subplots(figsize=(7.5, 4.5))
  for r in rows:
    axis.plot(range(len(keys)), [r[k] for k, _ in keys], "o-", color="0.6", lw=0.8, ms=4)
  means = [statistics.mean(r[k] for r in rows) for k, _ in keys]
  axis.plot(range(len(keys)), means, "s-", color="tab:red", lw=2, ms=7, label="mean over seeds")
  axis.set_xticks(range(len(keys)), [label for _, label in keys])
  axis.set_ylabel("validation top-1 %")
  axis.set_title(f"distorted digits, {len(rows)} seeds, same epochs and global batch (grey: one seed)", fontsize=10)
  axis.grid(alpha=0.3)
  axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  start = time.time()
  os.makedirs(FLAGS.out, exist_ok=True)
  shards = build_data(FLAGS.data)
  rows = []
  for seed in map(int, FLAGS.seeds):
    results = {arm: train_and_evaluate(arm, seed, shards) for arm in ARMS}
    rows.append(seed_row(seed, results["single"], results["collapse"]))
    print(f"seed {seed}: single {rows[-1]['single']:.2f}  final snapshot {rows[-1]['final_snapshot']:.2f}  "
          f"ensemble {rows[-1]['ensemble']:.2f}  members {', '.join(f'{m:.2f}' for m in rows[-1]['members'])}",
          flush=True)
  summary = summarize(rows)
  minutes = (time.time() - start) / 60
  with open(os.path.join(FLAGS.out, "study.json"), "w") as f:
    json.dump({"rows": rows, "summary": summary, "minutes": minutes, "config": FLAGS.config}, f, indent=1)
  text = markdown(rows, summary, minutes)
  with open(os.path.join(FLAGS.out, "study.md"), "w") as f:
    f.write(text)
  plot(rows, os.path.join(FLAGS.out, "study.png"))
  print("\n" + text + f"\n{FLAGS.out}/study.md, study.json, study.png")


if __name__ == "__main__":
  app.run(main)

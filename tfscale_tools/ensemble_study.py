r"""Does the Collapsed Ensemble pay? The paper's comparison on the distorted digits, repeated over seeds.

  python -m tfscale_tools.ensemble_study                       # 5 seeds × 3 arms, 2 ranks: ≈ 26 min on 2 cores
  python -m tfscale_tools.ensemble_study --seeds=1,2 --arms=branched,branched_late --holdout=tune \
      --out=runs/study_tune                                    # choosing a setting: the tuning split only

For every seed, at the same total images seen (main line + branches), global batch and initial weights
(configs/digits_distorted.py; each run's plan.json budget is checked equal):
  single      one warmup + poly run (variant `single`), its final snapshot;
  sequential  collapses in sequence, each re-warmup starting from the collapsed weights (variant
              `sequential`: close to Huang et al.'s Snapshot Ensembles), and their ensemble;
  branched    collapses branched off the main line, which goes on from the weights before each (the
              default variant: the authors' Collapsed Ensemble), and their ensemble.
Each ensemble is reported with its members (mean, best, final) and their mean pairwise disagreement.
Evaluated on the task's validation split by tfscale.evaluate. Writes study.json, study.md (mean ±
standard deviation, paired differences and how many seeds each is positive) and study.png to --out. The
data are built first if missing (the same data_prep path as ImageNet).
"""
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

from data_prep import shard_format
from tfscale import workdir as workdir_files

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["1", "2", "3", "4", "5"], "config.seed of each repetition.")
flags.DEFINE_string("out", "runs/ensemble_study", "Where runs, study.json, study.md and study.png go.")
flags.DEFINE_string("data", None, "Where the distorted digits' raw tree and shards go (default: "
                    "data/digits_distorted, or data/digits_distorted_tune with --holdout=tune).")
flags.DEFINE_enum("holdout", "report", ["report", "tune"], "Which validation split the data are built with "
                  "(data_prep.digits --holdout): settings are chosen on 'tune' only.")
flags.DEFINE_integer("np", 2, "Horovod ranks per training run.")
flags.DEFINE_string("config", "configs/digits_distorted.py", "The recipe whose variants the arms are.")

ARMS = {"single": ":single", "sequential": ":sequential", "branched": "", "branched_long": ":branched_long",
        "branched_late": ":branched_late"}
flags.DEFINE_list("arms", ["single", "sequential", "branched"], f"Which of {sorted(ARMS)} to run.")
# (a, b): the paired differences reported, where both arms ran.
PAIRS = [("branched", "single"), ("sequential", "single"), ("branched", "sequential"),
         ("branched", "branched_long"), ("branched", "branched_late")]


def _run(argv, log_path):
  with open(log_path, "w") as log:
    subprocess.run(argv, check=True, stdout=log, stderr=subprocess.STDOUT)


def build_data(data: str) -> str:
  """The reported distorted-digits tree and its shards (data_prep.digits, data_prep.imagenet1k)."""
  shards = os.path.join(data, "tfrecords")
  if not shard_format.has_manifest(shards):
    raw = os.path.join(data, "raw")
    subprocess.run([sys.executable, "-m", "data_prep.digits", "--task=distorted", f"--holdout={FLAGS.holdout}",
                    f"--output_dir={raw}"], check=True)
    subprocess.run([sys.executable, "-m", "data_prep.imagenet1k", f"--raw_dir={raw}", f"--output_dir={shards}",
                    "--train_shards=8", "--val_shards=2"], check=True)
  return shards


def train_and_evaluate(arm: str, seed: int, shards: str) -> tuple:
  """One training run (fresh workdir) and its evaluation: (eval.json's result, plan.json's budget)."""
  workdir = os.path.join(FLAGS.out, f"{arm}-seed{seed}")
  subprocess.run(["rm", "-rf", workdir], check=True)
  os.makedirs(workdir)
  horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
  _run([horovodrun, "-np", str(FLAGS.np), "-H", f"localhost:{FLAGS.np}", sys.executable, "-m", "tfscale.train",
        f"--config={FLAGS.config}{ARMS[arm]}", f"--workdir={workdir}", f"--config.data.dir={shards}",
        f"--config.seed={seed}"], os.path.join(workdir, "train.log"))
  _run([sys.executable, "-m", "tfscale.evaluate", f"--workdir={workdir}"], os.path.join(workdir, "evaluate.log"))
  return workdir_files.read_eval(workdir)["evals"]["val"], workdir_files.read_plan(workdir)["budget"]


def arm_result(result: dict) -> dict:
  """Top-1 (%) of an arm's ensemble and members, and the members' mean pairwise disagreement (%)."""
  members = [100 * m["top1"] for m in result["members"]]
  return {"ensemble": 100 * result["ensemble"]["top1"], "members": members, "final": members[-1],
          "mean_member": statistics.mean(members), "best_member": max(members),
          "disagreement": 100 * result["diversity"]["mean_disagreement"]}


def check_budgets(budgets: dict):
  """Every arm saw the same number of training images (main line + branches)."""
  images = {arm: b["total"]["images"] for arm, b in budgets.items()}
  if len(set(images.values())) != 1:
    raise SystemExit(f"ensemble_study: the arms' budgets differ ({images} images): not a fair comparison")


def _stats(values):
  return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
          "values": values}


def summarize(rows: list, arms: list) -> dict:
  """Mean ± sample standard deviation of each arm's figures; paired ensemble differences (and final
  snapshot minus single run) with how many seeds each is positive."""
  summary = {arm: {key: _stats([r[arm][key] for r in rows])
                   for key in ("ensemble", "final", "mean_member", "best_member", "disagreement")} for arm in arms}
  name = lambda arm: "single run" if arm == "single" else f"{arm} ensemble"
  pairs = [(f"{name(a)} - {name(b)}", a, "ensemble", b, "ensemble") for a, b in PAIRS if a in arms and b in arms]
  pairs += [(f"{a} ensemble - its mean member", a, "ensemble", a, "mean_member") for a in arms if a != "single"]
  pairs += [(f"{a} final snapshot - single run", a, "final", "single", "final")
            for a in arms if a != "single" and "single" in arms]
  summary["differences"] = {}
  for name, a, key_a, b, key_b in pairs:
    differences = [r[a][key_a] - r[b][key_b] for r in rows]
    summary["differences"][name] = {**_stats(differences), "positive": sum(d > 0 for d in differences),
                                    "ties": sum(d == 0 for d in differences), "seeds": len(differences)}
  return summary


def markdown(rows: list, arms: list, summary: dict, budget: dict, minutes: float) -> str:
  lines = [f"# Collapsed Ensemble study: {', '.join(arms)}; {len(rows)} seeds, {rows[0]['images']} validation "
           f"images, {minutes:.0f} min", "", f"Every arm's budget: {budget['total']['epochs']:.4g} epochs, "
           f"{budget['total']['images']:,} images.", "",
           "Top-1 %: the ensemble, then its members (last = final snapshot); members' mean pairwise disagreement.", "",
           "| seed | " + " | ".join(f"{arm} ensemble | {arm} members | {arm} disagree" if arm != "single"
                                     else "single run" for arm in arms) + " |",
           "|---:|" + "".join("---:|" if arm == "single" else "---:|---|---:|" for arm in arms)]
  for r in rows:
    cells = [f"{r[arm]['final']:.2f}" if arm == "single" else
             f"{r[arm]['ensemble']:.2f} | {' / '.join(f'{m:.2f}' for m in r[arm]['members'])} | "
             f"{r[arm]['disagreement']:.2f}" for arm in arms]
    lines.append(f"| {r['seed']} | " + " | ".join(cells) + " |")
  cell = lambda arm, key: f"{summary[arm][key]['mean']:.2f} ± {summary[arm][key]['std']:.2f}"
  lines.append("| **mean ± sd** | " + " | ".join(
      cell(arm, "final") if arm == "single" else
      f"{cell(arm, 'ensemble')} | mean {cell(arm, 'mean_member')}, best {cell(arm, 'best_member')} | "
      f"{cell(arm, 'disagreement')}" for arm in arms) + " |")
  lines += ["", "| paired difference (top-1 points) | mean ± sd | positive in |", "|---|---:|---|"]
  for key, s in summary["differences"].items():
    ties = f" ({s['ties']} tied)" if s["ties"] else ""
    lines.append(f"| {key} | {s['mean']:+.2f} ± {s['std']:.2f} | {s['positive']} of {s['seeds']} seeds{ties} |")
  return "\n".join(lines) + "\n"


def plot(rows: list, arms: list, path: str):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  columns = [(arm, "final", "single run") if arm == "single" else (arm, key, f"{arm}\n{label}")
             for arm in arms for key, label in (("mean_member", "mean member"), ("final", "final snapshot"),
                                                ("ensemble", "ensemble"))
             if arm != "single" or key == "ensemble"]
  figure, axis = plt.subplots(figsize=(1.6 * len(columns) + 2, 4.5))
  for r in rows:
    axis.plot(range(len(columns)), [r[arm][key] for arm, key, _ in columns], "o-", color="0.6", lw=0.8, ms=4)
  means = [statistics.mean(r[arm][key] for r in rows) for arm, key, _ in columns]
  axis.plot(range(len(columns)), means, "s-", color="tab:red", lw=2, ms=7, label="mean over seeds")
  axis.set_xticks(range(len(columns)), [label for _, _, label in columns], fontsize=8)
  axis.set_ylabel("validation top-1 %")
  axis.set_title(f"distorted digits, {len(rows)} seeds, equal images seen (grey: one seed)", fontsize=10)
  axis.grid(alpha=0.3)
  axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  unknown = sorted(set(FLAGS.arms) - set(ARMS))
  if unknown:
    raise app.UsageError(f"unknown arms {unknown} (known: {sorted(ARMS)})")
  start = time.time()
  os.makedirs(FLAGS.out, exist_ok=True)
  data = FLAGS.data or ("data/digits_distorted_tune" if FLAGS.holdout == "tune" else "data/digits_distorted")
  shards = build_data(data)
  rows = []
  for seed in map(int, FLAGS.seeds):
    results, budgets = {}, {}
    for arm in FLAGS.arms:
      results[arm], budgets[arm] = train_and_evaluate(arm, seed, shards)
    check_budgets(budgets)
    rows.append({"seed": seed, "images": results[FLAGS.arms[0]]["count"],
                 **{arm: arm_result(result) for arm, result in results.items()}})
    print(f"seed {seed}: " + "  ".join(f"{arm} {rows[-1][arm]['ensemble']:.2f} (members "
                                       f"{', '.join(f'{m:.2f}' for m in rows[-1][arm]['members'])})"
                                       for arm in FLAGS.arms), flush=True)
  summary = summarize(rows, FLAGS.arms)
  minutes = (time.time() - start) / 60
  budget = budgets[FLAGS.arms[0]]
  workdir_files.write_json(os.path.join(FLAGS.out, "study.json"), {
      "rows": rows, "summary": summary, "minutes": minutes, "config": FLAGS.config, "arms": FLAGS.arms,
      "budgets": budgets, "data": data, "holdout": FLAGS.holdout})
  text = markdown(rows, FLAGS.arms, summary, budget, minutes)
  with open(os.path.join(FLAGS.out, "study.md"), "w") as f:
    f.write(text)
  plot(rows, FLAGS.arms, os.path.join(FLAGS.out, "study.png"))
  print("\n" + text + f"\n{FLAGS.out}/study.md, study.json, study.png")


if __name__ == "__main__":
  app.run(main)

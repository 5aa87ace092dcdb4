r"""Evaluate a run's snapshots and their Collapsed Ensemble (mean of softmax probabilities), per named evaluation.

  python -m tfscale.evaluate --workdir=runs/demo
  horovodrun -np 4 python -m tfscale.evaluate --workdir=/pfs/runs/ce72 --evals=val,ilsvrc2012
  python -m tfscale.evaluate --workdir=runs/demo --config.evals.val.snapshots=collapse1,collapse \
      --config.data.dir=/local/digits

The evaluations are the run's `config.evals` (config_base: name → splits, crops, snapshots); `--evals`
picks some (default: every one whose splits the data has). The run's config.json is the config; any
field can be overridden with --config.key=value, as in training. Every rank evaluates its share of each
split (each image exactly once over all ranks) in one pass, every member on every batch, counts only.
Rank 0 prints a table per evaluation and writes eval.json ({"evals": {name: result}}), eval.md and
eval.png (the first evaluation's) into the workdir.
"""
import os
import sys

from absl import app, flags
from ml_collections import config_flags

import tfscale  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow can be imported)
from tfscale import config_base, datasets, schedules
from tfscale import workdir as workdir_files

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A training run's workdir (config.json, snapshots.json, snapshots/).")
flags.DEFINE_list("evals", [], "Names of config.evals to run (default: all whose splits the data has).")


def chosen_evals(config, info, names) -> dict:
  """{name: spec} of the evaluations to run: `names`, or every one whose splits are all in the data."""
  unknown = sorted(set(names) - set(config.evals))
  if unknown:
    raise config_base.ConfigError(f"unknown evaluations {unknown}; config.evals has {sorted(config.evals)}")
  for name, spec in config.evals.items():
    if name in names or not names:
      config_base.check_views(spec.crops)  # before any rank loads a snapshot
  if names:
    for name in names:
      for split in config.evals[name].splits:
        info.split(split)  # a one-line DataError naming the missing split
    return {name: config.evals[name] for name in names}
  present = {name: spec for name, spec in config.evals.items() if all(s in info.splits for s in spec.splits)}
  if not present:
    raise datasets.DataError(f"{info.data_dir}: none of config.evals ({sorted(config.evals)}) has all its "
                             f"splits here (splits: {sorted(info.splits)})")
  return present


def title(name, result) -> str:
  return f"{name}: {' + '.join(result['splits'])}, {result['count']} images, {result['crops']} view(s) each"


def format_table(members, ensemble) -> str:
  rows = [("snapshot", "phase", "step", "epoch", "top-1 %", "top-5 %")]
  for m in members:
    rows.append((m["name"], m["phase"], str(m["step"]), f"{m['epoch']:.1f}", f"{100 * m['top1']:.2f}",
                 f"{100 * m['top5']:.2f}"))
  rows.append((f"ensemble of {len(members)}", "", "", "", f"{100 * ensemble['top1']:.2f}",
               f"{100 * ensemble['top5']:.2f}"))
  widths = [max(len(r[c]) for r in rows) for c in range(6)]
  return "\n".join("  ".join(cell.rjust(w) if c >= 2 else cell.ljust(w) for c, (cell, w) in enumerate(zip(r, widths)))
                   for r in rows)


def diversity_lines(members, diversity) -> list:
  """The ensemble's gains and the members' pairwise top-1 disagreement, as text lines."""
  names = [m["name"] for m in members]
  lines = [f"ensemble top-1 gain: {100 * diversity['gain_over_best_member']:+.2f} points over the best member, "
           f"{100 * diversity['gain_over_mean_member']:+.2f} over the mean member; members disagree on "
           f"{100 * diversity['mean_disagreement']:.2f} % of images (mean over pairs)"]
  if len(names) > 1:
    width = max(len(n) for n in names)
    lines.append("pairwise top-1 disagreement %: " + "  ".join(n.rjust(width) for n in names))
    for i, (name, row) in enumerate(zip(names, diversity["pairwise_disagreement"])):
      cells = ["—" if i == j else f"{100 * v:.2f}" for j, v in enumerate(row)]
      lines.append(" " * 31 + name.ljust(width) + " " + "  ".join(c.rjust(width) for c in cells))
  return lines


def markdown_table(result, heading) -> str:
  members, ensemble, diversity = result["members"], result["ensemble"], result["diversity"]
  names = [m["name"] for m in members]
  lines = [f"# Evaluation {heading}", "", "| snapshot | phase | step | epoch | top-1 % | top-5 % |",
           "|---|---|---:|---:|---:|---:|"]
  lines += [f"| {m['name']} | {m['phase']} | {m['step']} | {m['epoch']:.1f} | {100 * m['top1']:.2f} | "
            f"{100 * m['top5']:.2f} |" for m in members]
  lines.append(f"| **ensemble of {len(members)}** | | | | **{100 * ensemble['top1']:.2f}** | "
               f"**{100 * ensemble['top5']:.2f}** |")
  lines += ["", f"Ensemble top-1 gain: **{100 * diversity['gain_over_best_member']:+.2f}** points over the best "
            f"member, **{100 * diversity['gain_over_mean_member']:+.2f}** over the mean member.", ""]
  if len(names) > 1:
    lines += [f"Pairwise top-1 disagreement (% of images; mean {100 * diversity['mean_disagreement']:.2f}):", "",
              "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {name} | " + " | ".join("—" if i == j else f"{100 * v:.2f}" for j, v in enumerate(row)) + " |"
              for i, (name, row) in enumerate(zip(names, diversity["pairwise_disagreement"]))]
  return "\n".join(lines) + "\n"


def run_summary(workdir: str, plan) -> str:
  """Markdown: the run's budget (main line + branches = total epochs: what an ensemble cost), wall time
  from the first epoch's start to each snapshot, the best validation top-1 seen while training, and the
  median global images/s (metrics.jsonl; a chained run's time includes the gaps). `plan`: plan.json or None."""
  rows, snapshots = workdir_files.read_metrics(workdir), workdir_files.read_snapshots(workdir)
  if not rows:
    return ""
  start = rows[0]["time"] - rows[0]["epoch_seconds"]
  lines = ["# Run summary", ""]
  if plan:
    lines += [f"Training cost: {schedules.budget_line(plan['budget'])}.", ""]
  lines += ["| snapshot | step | wall time to it | its validation top-1 % |", "|---|---:|---:|---:|"]
  for entry in snapshots:
    row = next((r for r in rows if r["step"] >= entry["step"]), rows[-1])
    minutes = (row["time"] - start) / 60
    lines.append(f"| {entry['name']} | {entry['step']} | {minutes:.1f} min | {100 * entry['val_top1']:.2f} |")
  validated = [r["val_top1"] for r in rows if "val_top1" in r]
  rates = sorted(r["images_per_second"] for r in rows)
  lines += ["", f"Best validation top-1 while training: {100 * max(validated):.2f} %." if validated else "",
            f"Median global images/s over {len(rows)} epochs: {rates[len(rates) // 2]:.0f}."]
  return "\n".join(lines) + "\n"


def report(workdir: str, results: dict):
  """Rank 0: the tables on stdout; eval.json, eval.md and eval.png in the workdir."""
  print("\n\n".join("\n".join([title(name, r), format_table(r["members"], r["ensemble"])]
                              + diversity_lines(r["members"], r["diversity"])) for name, r in results.items()))
  plan = workdir_files.read_plan(workdir)
  if plan:
    print(f"training cost: {schedules.budget_line(plan['budget'])}")
  workdir_files.write_json(workdir_files.path(workdir, workdir_files.EVAL_JSON), {"evals": results})
  with open(workdir_files.path(workdir, workdir_files.EVAL_MARKDOWN), "w") as f:
    f.write("\n".join([markdown_table(r, title(name, r)) for name, r in results.items()]
                      + [run_summary(workdir, plan)]))
  from tfscale import plots
  name, first = next(iter(results.items()))
  plots.plot_ensemble(first, workdir_files.path(workdir, workdir_files.EVAL_PLOT), title(name, first))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    if not FLAGS.workdir:
      raise config_base.ConfigError("--workdir is required")
    config = FLAGS.config
    workdir_files.read_run(FLAGS.workdir)  # a training run with snapshots, or one line saying what is missing
    info = datasets.load(config.data.dir, config.data.label_offset, config.data.num_classes)
    evals = chosen_evals(config, info, FLAGS.evals)
    snapshots = {name: workdir_files.read_run(FLAGS.workdir, spec.snapshots)[1] for name, spec in evals.items()}
  except (config_base.ConfigError, datasets.DataError, workdir_files.WorkdirError) as e:
    sys.exit(f"tfscale.evaluate: error: {e}")

  tfscale.quiet_tensorflow_import()  # TensorFlow is imported only now, without its C++ start-up noise.
  from tfscale import distributed, ensemble
  try:
    with distributed.peer_failures_as_errors():
      results = ensemble.evaluate(FLAGS.workdir, config, info, evals, snapshots)
  # e.g. a rank's staged shards missing
  except (distributed.BackendError, datasets.DataError, config_base.ConfigError) as e:
    sys.exit(f"tfscale.evaluate: error: {e}")
  if results is not None:  # rank 0
    report(FLAGS.workdir, results)


def flags_parser(argv):
  """Defines --config as the run's own config.json (or the base config when the workdir has none, so the
  error is about the workdir), then parses --config.* overrides against it like tfscale.train does."""
  workdir = next((a.split("=", 1)[1] for a in argv if a.startswith("--workdir=")), None)
  if workdir is None and "--workdir" in argv[:-1]:
    workdir = argv[argv.index("--workdir") + 1]
  if workdir and os.path.exists(workdir_files.path(workdir, workdir_files.CONFIG)):
    config = workdir_files.read_config(workdir)
  else:
    config = config_base.base_config()
  config_flags.DEFINE_config_dict("config", config, "The run's config (its config.json); override fields with "
                                  "--config.key=value.", lock_config=True)
  return config_base.flags_parser("tfscale.evaluate")(argv)


def run():
  app.run(main, flags_parser=flags_parser)


if __name__ == "__main__":
  run()

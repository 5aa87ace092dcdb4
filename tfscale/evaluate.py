r"""Evaluate a run's snapshots and their Collapsed Ensemble (mean of softmax probabilities).

  python -m tfscale.evaluate --workdir=runs/demo
  horovodrun -np 4 python -m tfscale.evaluate --workdir=/pfs/runs/ce72 --snapshots=collapse2-1234,collapse3-2345

Reads the run's config.json and snapshots.json; every rank evaluates its round-robin share of the
split (each image exactly once over all ranks), and counts are summed across ranks. Rank 0 prints a
table and writes eval.json, eval.md and eval.png into the workdir. ImageNet shards converted with
--val_blacklist are evaluated under both protocols at once: ILSVRC2014 (blacklisted images removed) and
ILSVRC2012 (all 50,000).
"""
import json
import os
import sys

import ml_collections
from absl import app, flags

import tfscale  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow can be imported)
from tfscale import datasets

FLAGS = flags.FLAGS
BLACKLISTED = "validation_blacklisted"  # data_prep.imagenet1k --val_blacklist puts the 2014 blacklist here
flags.DEFINE_string("workdir", None, "A training run's workdir (config.json, snapshots.json, snapshots/).")
flags.DEFINE_string("snapshots", "all", "'all' or comma-separated snapshot names from snapshots.json.")
flags.DEFINE_string("data_dir", None, "Shard directory (default: the run's config.data.dir).")
flags.DEFINE_string("split", None, "Split to evaluate (default: the run's config.eval.split).")
flags.DEFINE_integer("batch_size", 0, "Images per batch per rank (default: the run's config.eval.batch_size).")
flags.DEFINE_enum("crops", None, ["1", "12", "24"],
                  "Views per image: 1 center crop; 12 = 2 scales × (4 corners + center + whole); 24 adds mirrors "
                  "(default: the run's config.eval.crops).")


def load_run(workdir: str):
  """(config dict, chosen snapshot entries) of a finished or running training run."""
  for name in ("config.json", "snapshots.json"):
    if not os.path.exists(os.path.join(workdir or "", name)):
      raise datasets.DataError(f"{workdir!r} has no {name}: is it a tfscale.train workdir with snapshots?")
  with open(os.path.join(workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(os.path.join(workdir, "snapshots.json")) as f:
    snapshots = json.load(f)
  if FLAGS.snapshots != "all":
    wanted = FLAGS.snapshots.split(",")
    unknown = sorted(set(wanted) - {s["name"] for s in snapshots})
    if unknown:
      raise datasets.DataError(f"unknown snapshots {unknown}; {workdir} has {[s['name'] for s in snapshots]}")
    snapshots = [s for s in snapshots if s["name"] in wanted]
  if not snapshots:
    raise datasets.DataError(f"{workdir} has no snapshots yet")
  return config, snapshots


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


def markdown_table(members, ensemble, title) -> str:
  lines = [f"# Evaluation: {title}", "", "| snapshot | phase | step | epoch | top-1 % | top-5 % |",
           "|---|---|---:|---:|---:|---:|"]
  lines += [f"| {m['name']} | {m['phase']} | {m['step']} | {m['epoch']:.1f} | {100 * m['top1']:.2f} | "
            f"{100 * m['top5']:.2f} |" for m in members]
  lines.append(f"| **ensemble of {len(members)}** | | | | **{100 * ensemble['top1']:.2f}** | "
               f"**{100 * ensemble['top5']:.2f}** |")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config, snapshots = load_run(FLAGS.workdir)
    info = datasets.load(FLAGS.data_dir or config.data.dir, config.data.get("label_offset"),
                         config.data.get("num_classes"))
    split = FLAGS.split or config.eval.split
    info.split(split)
  except datasets.DataError as e:
    sys.exit(f"tfscale.evaluate: error: {e}")

  from tfscale import ensemble  # TensorFlow is imported only now.
  crops = int(FLAGS.crops or config.eval.get("crops", 1))
  # ImageNet converted with --val_blacklist: report the ILSVRC2014 protocol (`validation`, blacklisted
  # images removed) and the ILSVRC2012 one (all validation images) together.
  extra = [BLACKLISTED] if split == "validation" and BLACKLISTED in info.splits else []
  result = ensemble.evaluate_snapshots(FLAGS.workdir, config, snapshots, info, split,
                                       FLAGS.batch_size or config.eval.batch_size, crops, extra)
  if result is None:  # not rank 0
    return
  members, combined = result["members"], result["ensemble"]
  tables = [(f"{split}: {result['count']} images, {crops} view(s) each", members, combined)]
  if extra:
    tables = [(f"ILSVRC2014 protocol (blacklisted images removed): {result['count']} images, {crops} view(s) each",
               members, combined),
              (f"ILSVRC2012 protocol ({' + '.join(result['with_extra']['splits'])}): "
               f"{result['with_extra']['count']} images, {crops} view(s) each",
               result["with_extra"]["members"], result["with_extra"]["ensemble"])]
  print("\n\n".join(f"{title}\n{format_table(m, e)}" if extra else format_table(m, e) for title, m, e in tables))
  with open(os.path.join(FLAGS.workdir, "eval.json"), "w") as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(FLAGS.workdir, "eval.md"), "w") as f:
    f.write("\n".join(markdown_table(m, e, title) for title, m, e in tables))
  from tfscale import plots
  plots.plot_ensemble(result, os.path.join(FLAGS.workdir, "eval.png"))


def run():
  app.run(main)


if __name__ == "__main__":
  run()

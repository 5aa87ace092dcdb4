"""Collapsed Ensemble evaluation: each snapshot's accuracy, that of their mean softmax probabilities, and how
much the members disagree."""
from absl import logging

from tfscale import distributed, input_pipeline, job_log, metrics
from tfscale import workdir as workdir_files
from tfscale.datasets import DatasetInfo


def evaluate(workdir: str, config, info: DatasetInfo, evals: dict, snapshots: dict):
  """{eval name: result} on rank 0 (None elsewhere): for each named evaluation (config.evals), every chosen
  snapshot's accuracy, their ensemble's, and the members' diversity over the evaluation's splits.

  One pass per split: each batch is decoded once and every member runs on it; the counts of all splits
  are summed over ranks in one allreduce per evaluation, which every rank makes.
  """
  distributed.start(config.train)  # the run's own (config.json); --config.train.backend= picks another
  job_log.use(distributed.rank())
  models = {}
  results = {}
  for name, spec in evals.items():
    members = snapshots[name]
    for entry in members:
      if entry["name"] not in models:
        models[entry["name"]] = workdir_files.load_snapshot(workdir, entry)
    predict = metrics.prediction_fn([models[entry["name"]] for entry in members], spec.crops)
    per_split = [metrics.count(predict, input_pipeline.eval_dataset(
        info, config.data, split, config.eval.batch_size, distributed.rank(), distributed.size(), crops=spec.crops,
        multicrop_shorter_sides=config.eval.multicrop_shorter_sides), len(members)) for split in spec.splits]
    totals = metrics.sum_over_ranks(per_split)  # every rank, before any rank-dependent step
    results[name] = {"splits": list(spec.splits), "data_dir": info.data_dir, "crops": spec.crops,
                     **describe(metrics.summarize(metrics.combine(*totals)), members)}
    if distributed.is_chief():
      for member in results[name]["members"]:
        logging.info("%s %s: top-1 %.4f top-5 %.4f", name, member["name"], member["top1"], member["top5"])
  return results if distributed.is_chief() else None


def describe(summary: dict, snapshots: list) -> dict:
  """metrics.summarize's figures with each member's snapshot (name, phase, step, epoch) beside them."""
  members = [{**{k: snapshot[k] for k in ("name", "phase", "step", "epoch")}, **accuracy}
             for snapshot, accuracy in zip(snapshots, summary["members"])]
  return {"count": summary["count"], "members": members,
          "ensemble": {**summary["ensemble"], "count": summary["count"], "members": [m["name"] for m in members]},
          "diversity": summary["diversity"]}

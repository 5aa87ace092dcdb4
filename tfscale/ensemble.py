"""Collapsed Ensemble evaluation: each snapshot's accuracy and that of their mean softmax probabilities."""
import os

import numpy as np
import tf_keras
from absl import logging

from tfscale import distributed, input_pipeline, metrics
from tfscale.datasets import DatasetInfo
from tfscale.models import resnet  # noqa: F401  (registers tfscale's layers for model_from_json)


def load_snapshot(directory: str) -> tf_keras.Model:
  """A snapshot written by training: architecture from model.json, weights from weights.h5."""
  with open(os.path.join(directory, "model.json")) as f:
    model = tf_keras.models.model_from_json(f.read())
  model.load_weights(os.path.join(directory, "weights.h5"))
  return model


def evaluate_snapshots(workdir: str, config, snapshots: list, info: DatasetInfo, split: str,
                       batch_size: int, crops: int = 1, extra_splits=()):
  """Accuracy of every snapshot and of the ensemble over all ranks; the result dict on rank 0, else None.

  With `extra_splits` (ImageNet's `validation_blacklisted`) the result also holds, under "with_extra",
  the same accuracies over `split` + the extra splits: the ILSVRC2012 protocol (all 50,000 validation
  images) beside the ILSVRC2014 one (`split` alone, blacklisted images removed), from one pass.
  """
  distributed.init()
  distributed.configure_threads(config.train.intra_op_threads, config.train.inter_op_threads)
  datasets = [input_pipeline.eval_dataset(
      info, config.data, name, batch_size, distributed.rank(), distributed.size(), crops=crops,
      multicrop_shorter_sides=config.eval.get("multicrop_shorter_sides", (256 / 224, 288 / 224)))
      for name in (split, *extra_splits)]

  members, extended, summed, labels, primary = [], [], None, None, None
  for snapshot in snapshots:
    model = load_snapshot(os.path.join(workdir, snapshot["path"]))
    probability_fn = metrics.probability_fn(model, crops)
    parts = [metrics.predict(probability_fn, dataset, info.num_classes) for dataset in datasets]
    probabilities = np.concatenate([p for p, _ in parts])
    member_labels = np.concatenate([l for _, l in parts])
    if labels is None:
      labels = member_labels
      primary = np.arange(len(labels)) < len(parts[0][1])  # this rank's images of `split` come first
    elif not np.array_equal(labels, member_labels):
      raise RuntimeError("the evaluation data changed order between snapshots")
    summed = probabilities if summed is None else summed + probabilities
    accuracy = metrics.global_accuracy(probabilities[primary], labels[primary])
    members.append({**{k: snapshot[k] for k in ("name", "phase", "step", "epoch")}, **accuracy})
    if extra_splits:
      extended.append({**{k: snapshot[k] for k in ("name", "phase", "step", "epoch")},
                       **metrics.global_accuracy(probabilities, labels)})
    if distributed.is_chief():
      logging.info("%s: top-1 %.4f top-5 %.4f", snapshot["name"], accuracy["top1"], accuracy["top5"])
    tf_keras.backend.clear_session()
  mean = summed / len(snapshots)
  combined = metrics.global_accuracy(mean[primary], labels[primary])
  combined_extended = metrics.global_accuracy(mean, labels) if extra_splits else None
  if not distributed.is_chief():
    return None
  names = [m["name"] for m in members]
  result = {"split": split, "data_dir": info.data_dir, "crops": crops, "count": combined["count"],
            "members": members, "ensemble": {**combined, "members": names}}
  if extra_splits:
    result["with_extra"] = {"splits": [split, *extra_splits], "count": combined_extended["count"],
                            "members": extended, "ensemble": {**combined_extended, "members": names}}
  return result

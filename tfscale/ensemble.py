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
                       batch_size: int, crops: int = 1):
  """Accuracy of every snapshot and of the ensemble over all ranks; the result dict on rank 0, else None."""
  distributed.init()
  distributed.configure_threads(config.train.intra_op_threads, config.train.inter_op_threads)
  dataset = input_pipeline.eval_dataset(
      info, config.data, split, batch_size, distributed.rank(), distributed.size(), crops=crops,
      multicrop_shorter_sides=config.eval.get("multicrop_shorter_sides", (256 / 224, 288 / 224)))

  members, summed, labels = [], None, None
  for snapshot in snapshots:
    model = load_snapshot(os.path.join(workdir, snapshot["path"]))
    probabilities, member_labels = metrics.predict(metrics.probability_fn(model, crops), dataset, info.num_classes)
    if labels is None:
      labels = member_labels
    elif not np.array_equal(labels, member_labels):
      raise RuntimeError("the evaluation data changed order between snapshots")
    summed = probabilities if summed is None else summed + probabilities
    accuracy = metrics.global_accuracy(probabilities, labels)
    members.append({**{k: snapshot[k] for k in ("name", "phase", "step", "epoch")}, **accuracy})
    if distributed.is_chief():
      logging.info("%s: top-1 %.4f top-5 %.4f", snapshot["name"], accuracy["top1"], accuracy["top5"])
    tf_keras.backend.clear_session()
  combined = metrics.global_accuracy(summed / len(snapshots), labels)
  if not distributed.is_chief():
    return None
  return {"split": split, "data_dir": info.data_dir, "crops": crops, "count": combined["count"], "members": members,
          "ensemble": {**combined, "members": [m["name"] for m in members]}}

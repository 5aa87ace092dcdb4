"""Exact accuracy of models and of their ensemble, in one pass over the data and with counts only.

Every batch is decoded once; every model runs on it; only top-k class ids leave the graph (top-k, not a
sort of the whole row), and only integer counts stay in memory: a member's top-1/top-5 hits, the
ensemble's (mean of the members' softmax probabilities), and how often each pair of members disagrees on
its top-1 class. Memory does not grow with the split, so a 2-million-image, 21,841-class split evaluates
like a small one. Counts are summed across ranks (each image is on exactly one rank) in one allreduce
that every rank makes.
"""
import itertools

import numpy as np
import tensorflow as tf

from tfscale import distributed

TOP_K = 5


def prediction_fn(models, crops: int = 1):
  """A compiled images → (members' top-k ids [m, batch, k], ensemble's top-k ids [batch, k]) function.

  With crops > 1 the images are (batch, crops, H, W, 3) and each member's probabilities are averaged over
  the crops first. Ties rank the lower class id first."""
  view = list(models[0].input_shape[1:])
  classes = int(models[0].output_shape[-1])
  k = min(TOP_K, classes)
  images_spec = tf.TensorSpec([None, *view] if crops == 1 else [None, crops, *view], models[0].input.dtype)

  @tf.function(input_signature=[images_spec])  # one trace, whatever the (last) batch size
  def predict(images):
    flat = tf.reshape(images, [-1, *view])
    probabilities = []
    for model in models:
      p = tf.nn.softmax(tf.cast(model(flat, training=False), tf.float32))
      probabilities.append(tf.reduce_mean(tf.reshape(p, [tf.shape(images)[0], crops, classes]), axis=1))
    stacked = tf.stack(probabilities)
    return tf.math.top_k(stacked, k).indices, tf.math.top_k(tf.reduce_mean(stacked, axis=0), k).indices
  return predict


def empty_counts(members: int) -> dict:
  return {"count": 0, "member_top1": np.zeros(members, np.int64), "member_top5": np.zeros(members, np.int64),
          "ensemble_top1": 0, "ensemble_top5": 0, "disagree": np.zeros((members, members), np.int64)}


def add_batch(counts: dict, member_top, ensemble_top, labels) -> dict:
  """Adds one batch's hits and pairwise top-1 disagreements to `counts` (in place; returns it)."""
  labels = np.asarray(labels).reshape(-1)
  if labels.size == 0:
    return counts
  member_hits = member_top == labels[None, :, None]      # [m, batch, k]
  counts["count"] += labels.size
  counts["member_top1"] += member_hits[:, :, 0].sum(axis=1)
  counts["member_top5"] += member_hits.any(axis=2).sum(axis=1)
  ensemble_hits = ensemble_top == labels[:, None]
  counts["ensemble_top1"] += int(ensemble_hits[:, 0].sum())
  counts["ensemble_top5"] += int(ensemble_hits.any(axis=1).sum())
  top1 = member_top[:, :, 0]
  for i, j in itertools.combinations(range(len(top1)), 2):
    differ = int((top1[i] != top1[j]).sum())
    counts["disagree"][i, j] += differ
    counts["disagree"][j, i] += differ
  return counts


def count(predict, dataset, members: int) -> dict:
  """This rank's counts over a finite dataset of (images, labels) batches."""
  counts = empty_counts(members)
  for images, labels in dataset:
    member_top, ensemble_top = predict(images)
    add_batch(counts, member_top.numpy(), ensemble_top.numpy(), labels.numpy())
  return counts


def _flatten(counts: dict) -> np.ndarray:
  return np.concatenate([[counts["count"]], counts["member_top1"], counts["member_top5"],
                         [counts["ensemble_top1"], counts["ensemble_top5"]], counts["disagree"].ravel()])


def sum_over_ranks(per_split: list) -> list:
  """The counts of every split summed over all ranks, in one allreduce (made by every rank)."""
  if not per_split:
    return []
  members = len(per_split[0]["member_top1"])
  flat = np.stack([_flatten(c) for c in per_split]).astype(np.float64)
  totals = np.rint(distributed.allreduce_sum(flat.ravel())).astype(np.int64).reshape(flat.shape)
  out = []
  for row in totals:
    m = members
    out.append({"count": int(row[0]), "member_top1": row[1:1 + m], "member_top5": row[1 + m:1 + 2 * m],
                "ensemble_top1": int(row[1 + 2 * m]), "ensemble_top5": int(row[2 + 2 * m]),
                "disagree": row[3 + 2 * m:].reshape(m, m)})
  return out


def combine(*counts: dict) -> dict:
  """Counts of several splits taken together (e.g. ILSVRC2012's protocol = validation + blacklisted)."""
  total = empty_counts(len(counts[0]["member_top1"]))
  for c in counts:
    for key in total:
      total[key] = total[key] + c[key]
  return total


def summarize(counts: dict) -> dict:
  """Accuracies and diversity from global counts: each member's top-1/top-5, the ensemble's, the pairwise
  top-1 disagreement (fraction of images on which two members' top-1 classes differ), and the ensemble's
  top-1 gain over its best and over its mean member (in accuracy, not points)."""
  n = max(counts["count"], 1)
  top1, top5 = counts["member_top1"] / n, counts["member_top5"] / n
  members = len(top1)
  disagreement = counts["disagree"] / n
  pairs = [disagreement[i, j] for i, j in itertools.combinations(range(members), 2)]
  ensemble_top1 = counts["ensemble_top1"] / n
  return {"count": counts["count"],
          "members": [{"top1": float(a), "top5": float(b)} for a, b in zip(top1, top5)],
          "ensemble": {"top1": float(ensemble_top1), "top5": float(counts["ensemble_top5"] / n)},
          "diversity": {"pairwise_disagreement": disagreement.round(6).tolist(),
                        "mean_disagreement": float(np.mean(pairs)) if pairs else 0.0,
                        "gain_over_best_member": float(ensemble_top1 - top1.max()),
                        "gain_over_mean_member": float(ensemble_top1 - top1.mean())}}


def global_accuracy(predict, dataset, members: int = 1) -> list:
  """[{'top1', 'top5', 'count'}] of each model over every rank's share (training's validation)."""
  summary = summarize(sum_over_ranks([count(predict, dataset, members)])[0])
  return [{**m, "count": summary["count"]} for m in summary["members"]]

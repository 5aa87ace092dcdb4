"""Counts-only evaluation: hits, the ensemble's, and the members' pairwise disagreement on a hand-made case."""
import numpy as np
import pytest

import tfscale  # noqa: F401
import tf_keras

from tfscale import metrics


def test_hand_made_batch():
  # 3 members, 4 images with labels 0, 1, 2, 3; top-2 ids per member and for the ensemble.
  member_top = np.array([[[0, 1], [1, 0], [0, 2], [3, 0]],    # member A: right on images 0, 1, 3
                         [[0, 1], [2, 1], [2, 0], [1, 3]],    # member B: right on 0, 2; top-2 on 1, 3
                         [[1, 0], [1, 2], [0, 1], [3, 2]]])   # member C: right on 1, 3
  ensemble_top = np.array([[0, 1], [1, 2], [2, 0], [3, 1]])  # right on all four
  counts = metrics.add_batch(metrics.empty_counts(3), member_top, ensemble_top, np.array([0, 1, 2, 3]))
  summary = metrics.summarize(counts)
  assert summary["count"] == 4
  assert [m["top1"] for m in summary["members"]] == [0.75, 0.5, 0.5]
  assert [m["top5"] for m in summary["members"]] == [1.0, 1.0, 0.75]
  assert summary["ensemble"] == {"top1": 1.0, "top5": 1.0}
  # top-1 classes: A 0 1 0 3, B 0 2 2 1, C 1 1 0 3 → A/B differ on 3 images, A/C on 1, B/C on 4.
  np.testing.assert_array_equal(counts["disagree"], [[0, 3, 1], [3, 0, 4], [1, 4, 0]])
  diversity = summary["diversity"]
  assert diversity["pairwise_disagreement"][0][1] == 0.75 and diversity["pairwise_disagreement"][2][1] == 1.0
  assert diversity["mean_disagreement"] == pytest.approx((0.75 + 0.25 + 1.0) / 3)
  assert diversity["gain_over_best_member"] == pytest.approx(0.25)
  assert diversity["gain_over_mean_member"] == pytest.approx(1.0 - (0.75 + 0.5 + 0.5) / 3)
  both = metrics.combine(counts, counts)
  assert both["count"] == 8 and both["disagree"][1, 2] == 8 and metrics.summarize(both)["members"][0]["top1"] == 0.75


def test_prediction_fn_matches_sorting_full_rows():
  """top-k ids from the graph equal a full stable sort of the probabilities (ties to the lower id), and
  the ensemble is the mean of the members' softmax."""
  rng = np.random.default_rng(0)
  models = []
  for _ in range(2):
    inputs = tf_keras.Input((6,))
    models.append(tf_keras.Model(inputs, tf_keras.layers.Dense(40, kernel_initializer=tf_keras.initializers.RandomNormal(
        seed=int(rng.integers(1000))))(inputs)))
  x = rng.normal(size=(50, 6)).astype(np.float32)
  member_top, ensemble_top = [t.numpy() for t in metrics.prediction_fn(models)(x)]
  probabilities = [tf_keras.activations.softmax(m(x)).numpy() for m in models]
  for m, p in enumerate(probabilities):
    np.testing.assert_array_equal(member_top[m], np.argsort(-p, axis=1, kind="stable")[:, :5])
  mean = (probabilities[0] + probabilities[1]) / 2
  np.testing.assert_array_equal(ensemble_top, np.argsort(-mean, axis=1, kind="stable")[:, :5])

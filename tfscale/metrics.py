"""Exact top-k accuracy over ranks: count correct predictions locally, sum the counts across ranks."""
import numpy as np
import tensorflow as tf

from tfscale import distributed


def topk_correct(probabilities: np.ndarray, labels: np.ndarray, k: int) -> int:
  """How many rows have their label among the k highest scores (ties broken towards lower class ids)."""
  k = min(k, probabilities.shape[1])
  top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
  return int((top == labels[:, None]).any(axis=1).sum())


def probability_fn(model, crops: int = 1):
  """A compiled images → softmax probabilities (float32) function for `model` in inference mode.

  With crops > 1 the images are (batch, crops, H, W, 3) and the probabilities are averaged over crops.
  """
  view = list(model.input_shape[1:])
  images_spec = tf.TensorSpec([None, *view] if crops == 1 else [None, crops, *view], model.input.dtype)

  @tf.function(input_signature=[images_spec])  # one trace, whatever the (last) batch size
  def probabilities(images):
    flat = tf.reshape(images, [-1, *view])
    p = tf.nn.softmax(tf.cast(model(flat, training=False), tf.float32))
    return tf.reduce_mean(tf.reshape(p, [tf.shape(images)[0], crops, -1]), axis=1)
  return probabilities


def predict(probabilities_of, dataset, num_classes: int):
  """(softmax probabilities float32 [n, classes], labels int [n]) over a finite dataset, in order."""
  probabilities, labels = [], []
  for images, batch_labels in dataset:
    probabilities.append(probabilities_of(images).numpy())
    labels.append(batch_labels.numpy())
  if not probabilities:
    return np.zeros((0, num_classes), np.float32), np.zeros((0,), np.int64)
  return np.concatenate(probabilities), np.concatenate(labels)


def global_accuracy(probabilities, labels, ks=(1, 5)) -> dict:
  """{'top1': …, 'top5': …, 'count': n} over every rank's share; identical on all ranks."""
  local = [topk_correct(probabilities, labels, k) for k in ks] + [len(labels)]
  totals = distributed.allreduce_sum(np.array(local, np.float64))
  count = int(totals[-1])
  result = {f"top{k}": float(totals[i] / max(count, 1)) for i, k in enumerate(ks)}
  result["count"] = count
  return result

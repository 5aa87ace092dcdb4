"""LARS against a NumPy transcription of You et al.'s update; weight-decay selection."""
import numpy as np
import pytest

import tfscale  # noqa: F401
import tensorflow as tf
import tf_keras

from tfscale.lars import LARS, StepTable, is_decayed


def numpy_lars(w, v, g, lr, momentum, wd, eta, eps, decayed):
  if decayed:
    w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
    trust = eta * w_norm / (g_norm + wd * w_norm + eps) if w_norm > 0 and g_norm > 0 else 1.0
    v = momentum * v + lr * trust * (g + wd * w)
  else:
    v = momentum * v + lr * g
  return w - v, v


@pytest.mark.parametrize("adapt", [True, False])
def test_matches_numpy_for_k_steps(adapt):
  rng = np.random.default_rng(0)
  kernel = tf.Variable(rng.normal(size=(3, 3, 4, 8)), dtype=tf.float32, name="conv/kernel")
  bias = tf.Variable(rng.normal(size=(8,)), dtype=tf.float32, name="conv/bias")
  gamma = tf.Variable(rng.normal(size=(8,)), dtype=tf.float32, name="bn/gamma")
  lrs, wds = [0.5, 1.0, 2.0, 1.5, 0.7], [1e-4, 1e-4, 5e-4, 5e-4, 1e-3]
  opt = LARS(StepTable(lrs), momentum=0.9, weight_decay=StepTable(wds), eta=0.001, epsilon=1e-9, adapt=adapt)
  state = {v.name: (v.numpy().astype(np.float64), np.zeros(v.shape)) for v in (kernel, bias, gamma)}
  for step in range(5):
    grads = [tf.constant(rng.normal(size=v.shape), tf.float32) for v in (kernel, bias, gamma)]
    opt.apply_gradients(zip(grads, (kernel, bias, gamma)))
    for var, grad in zip((kernel, bias, gamma), grads):
      w, v = state[var.name]
      eta = 0.001 if adapt else None
      if adapt:
        state[var.name] = numpy_lars(w, v, grad.numpy(), lrs[step], 0.9, wds[step], eta, 1e-9, is_decayed(var))
      else:
        decayed = is_decayed(var)
        upd = grad.numpy() + (wds[step] * w if decayed else 0)
        v = 0.9 * v + lrs[step] * upd
        state[var.name] = (w - v, v)
      np.testing.assert_allclose(var.numpy(), state[var.name][0], rtol=1e-6, atol=1e-6)
  assert int(opt.iterations.numpy()) == 5


def test_weight_decay_selects_only_conv_and_dense_kernels():
  model = tf_keras.Sequential([tf_keras.layers.Input((8, 8, 3)), tf_keras.layers.Conv2D(4, 3, name="c"),
                               tf_keras.layers.BatchNormalization(name="bn"), tf_keras.layers.Flatten(),
                               tf_keras.layers.Dense(2, name="d")])
  decayed = sorted(v.name for v in model.trainable_variables if is_decayed(v))
  assert decayed == ["c/kernel:0", "d/kernel:0"]


def test_config_round_trip_keeps_schedules():
  opt = LARS(StepTable([1.0, 2.0]), weight_decay=StepTable([1e-4, 2e-4]), eta=0.01)
  clone = LARS.from_config(opt.get_config())
  assert clone.eta == 0.01
  assert float(clone.current_weight_decay()) == pytest.approx(1e-4)
  assert float(clone.learning_rate) == pytest.approx(1.0)

"""LARS against a NumPy transcription of You et al.'s update; weight-decay selection."""
import numpy as np
import pytest

import tfscale  # noqa: F401
import tensorflow as tf
import tf_keras

from tfscale.config_base import base_config
from tfscale.lars import LARS, StepTable, is_decayed


def lars(learning_rate, **settings):
  """LARS from config_base's optim section (as trainer.create_optimizer builds it), `settings` changed."""
  optim = base_config().optim
  fields = dict(momentum=optim.momentum, weight_decay=0.0, eta=optim.lars_eta, adapt=True,
                decay_biases=optim.decay_biases, decay_batch_norm=optim.decay_batch_norm)
  return LARS(learning_rate=learning_rate, **{**fields, **settings})


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
  opt = lars(StepTable(lrs), momentum=0.9, weight_decay=StepTable(wds), eta=0.001, epsilon=1e-9, adapt=adapt)
  state = {v.name: (v.numpy().astype(np.float64), np.zeros(v.shape)) for v in (kernel, bias, gamma)}
  for step in range(5):
    grads = [tf.constant(rng.normal(size=v.shape), tf.float32) for v in (kernel, bias, gamma)]
    opt.apply_gradients(zip(grads, (kernel, bias, gamma)))
    for var, grad in zip((kernel, bias, gamma), grads):
      w, v = state[var.name]
      decayed = is_decayed(var, decay_biases=False, decay_batch_norm=False)
      if adapt:
        state[var.name] = numpy_lars(w, v, grad.numpy(), lrs[step], 0.9, wds[step], 0.001, 1e-9, decayed)
      else:
        upd = grad.numpy() + (wds[step] * w if decayed else 0)
        v = 0.9 * v + lrs[step] * upd
        state[var.name] = (w - v, v)
      np.testing.assert_allclose(var.numpy(), state[var.name][0], rtol=1e-6, atol=1e-6)
  assert int(opt.iterations.numpy()) == 5


def test_weight_decay_selects_kernels_and_optionally_biases_and_batch_norm():
  model = tf_keras.Sequential([tf_keras.layers.Input((8, 8, 3)), tf_keras.layers.Conv2D(4, 3, name="c"),
                               tf_keras.layers.BatchNormalization(name="bn"), tf_keras.layers.Flatten(),
                               tf_keras.layers.Dense(2, name="d")])
  decayed = sorted(v.name for v in model.trainable_variables if is_decayed(v, decay_biases=False, decay_batch_norm=False))
  assert decayed == ["c/kernel:0", "d/kernel:0"]
  caffe = sorted(v.name for v in model.trainable_variables if is_decayed(v, decay_biases=True, decay_batch_norm=False))
  assert caffe == ["c/bias:0", "c/kernel:0", "d/bias:0", "d/kernel:0"]
  mkldnn = sorted(v.name for v in model.trainable_variables if is_decayed(v, decay_biases=True, decay_batch_norm=True))
  assert mkldnn == ["bn/beta:0", "bn/gamma:0", "c/bias:0", "c/kernel:0", "d/bias:0", "d/kernel:0"]


@pytest.mark.parametrize("decay_batch_norm", [False, True])
def test_decay_biases_is_caffes_sgd_update(decay_batch_norm):
  """adapt=False, decay_biases=True: v ← m·v + lr·(g + wd·w) for kernel and bias; BN's γ/β too when
  decay_batch_norm (Intel Caffe's MKLDNN engine: Scale merged into BatchNorm, default decay_mult 1)."""
  rng = np.random.default_rng(3)
  variables = [tf.Variable(rng.normal(size=shape), dtype=tf.float32, name=name)
               for name, shape in (("fc/kernel", (4, 3)), ("fc/bias", (3,)), ("bn/gamma", (3,)), ("bn/beta", (3,)))]
  opt = lars(0.5, momentum=0.9, weight_decay=0.01, adapt=False, decay_biases=True, decay_batch_norm=decay_batch_norm)
  expected = [v.numpy().astype(np.float64) for v in variables]
  velocity = [np.zeros_like(w) for w in expected]
  for _ in range(3):
    grads = [rng.normal(size=v.shape) for v in variables]
    opt.apply_gradients(zip([tf.constant(g, tf.float32) for g in grads], variables))
    for i, g in enumerate(grads):
      decay = 0.01 if i < 2 or decay_batch_norm else 0.0
      velocity[i] = 0.9 * velocity[i] + 0.5 * (g + decay * expected[i])
      expected[i] = expected[i] - velocity[i]
  for variable, w in zip(variables, expected):
    np.testing.assert_allclose(variable.numpy(), w, rtol=1e-5, atol=1e-6)


def test_momentum_reset_zeroes_the_velocity_at_its_step_and_survives_resume(tmp_path):
  """A momentum table with 0 at step 3 (a solver start): the velocity carried into step 3 is dropped, so
  after it v = lr·(g + wd·w) exactly as a fresh optimizer's; the same after a checkpoint at step 3."""
  rng = np.random.default_rng(5)
  init = rng.normal(size=(4, 4)).astype(np.float32)
  grads = [rng.normal(size=(4, 4)).astype(np.float32) for _ in range(5)]
  lrs, wd = [1.0, 0.8, 0.6, 0.4, 0.2], 1e-3
  schedule = lambda: dict(learning_rate=StepTable(lrs), weight_decay=StepTable([wd] * 5),
                          momentum=StepTable([0.9, 0.9, 0.9, 0.0, 0.9]), adapt=False)

  def step(variable, optimizer, k):
    optimizer.apply_gradients([(tf.constant(grads[k]), variable)])

  straight, optimizer = tf.Variable(init, name="dense/kernel"), lars(**schedule())
  for k in range(3):
    step(straight, optimizer, k)
  assert np.abs(optimizer.velocities[0].numpy()).max() > 0.1  # non-zero before the reset
  path = tf.train.Checkpoint(variable=straight, optimizer=optimizer).save(str(tmp_path / "ckpt"))
  before_reset = straight.numpy()
  step(straight, optimizer, 3)
  fresh = lrs[3] * (grads[3] + wd * before_reset)
  np.testing.assert_allclose(optimizer.velocities[0].numpy(), fresh, rtol=1e-6, atol=1e-7)
  step(straight, optimizer, 4)

  resumed, restored = tf.Variable(np.zeros_like(init), name="dense/kernel"), lars(**schedule())
  restored.build([resumed])
  tf.train.Checkpoint(variable=resumed, optimizer=restored).restore(path).assert_consumed()
  assert np.abs(restored.velocities[0].numpy()).max() > 0.1
  step(resumed, restored, 3)
  np.testing.assert_allclose(restored.velocities[0].numpy(), fresh, rtol=1e-6, atol=1e-7)
  step(resumed, restored, 4)
  np.testing.assert_allclose(resumed.numpy(), straight.numpy(), rtol=1e-6, atol=1e-7)
  clone = LARS.from_config(restored.get_config())  # Horovod's wrapper rebuilds the optimizer from its config
  assert clone.momentum.values == [0.9, 0.9, 0.9, 0.0, 0.9]


def test_config_round_trip_keeps_schedules():
  opt = lars(StepTable([1.0, 2.0]), weight_decay=StepTable([1e-4, 2e-4]), eta=0.01, decay_biases=True,
             decay_batch_norm=True)
  clone = LARS.from_config(opt.get_config())
  assert clone.eta == 0.01 and clone.decay_biases and clone.decay_batch_norm and clone.momentum == 0.9
  assert float(clone.current_weight_decay()) == pytest.approx(1e-4)
  assert float(clone.learning_rate) == pytest.approx(1.0)


def test_state_checkpoints_and_restores_mid_run(tmp_path):
  """3 steps, checkpoint, a fresh optimizer restored from it, 2 more steps == 5 uninterrupted steps."""
  rng = np.random.default_rng(1)
  init = rng.normal(size=(4, 4)).astype(np.float32)
  grads = [rng.normal(size=(4, 4)).astype(np.float32) for _ in range(5)]
  schedule = dict(learning_rate=StepTable([1.0, 0.8, 0.6, 0.4, 0.2]), weight_decay=StepTable([1e-3] * 5))

  def run(steps, variable, optimizer, first=0):
    for g in grads[first:first + steps]:
      optimizer.apply_gradients([(tf.constant(g), variable)])

  straight = tf.Variable(init, name="dense/kernel")
  run(5, straight, lars(**schedule))

  resumed = tf.Variable(init, name="dense/kernel")
  optimizer = lars(**schedule)
  run(3, resumed, optimizer)
  path = tf.train.Checkpoint(variable=resumed, optimizer=optimizer).save(str(tmp_path / "ckpt"))
  restored_variable = tf.Variable(np.zeros_like(init), name="dense/kernel")
  restored_optimizer = lars(**schedule)
  restored_optimizer.build([restored_variable])  # slots must exist for the restore to fill them
  tf.train.Checkpoint(variable=restored_variable, optimizer=restored_optimizer).restore(path).assert_consumed()
  assert int(restored_optimizer.iterations.numpy()) == 3
  np.testing.assert_array_equal(restored_optimizer.velocities[0].numpy(), optimizer.velocities[0].numpy())
  run(2, restored_variable, restored_optimizer, first=3)
  np.testing.assert_allclose(restored_variable.numpy(), straight.numpy(), rtol=1e-6, atol=1e-7)


HOROVOD_LARS_SCRIPT = r'''
import sys
import numpy as np
sys.path.insert(0, {repo!r})
sys.path.insert(0, {tests!r})
import tfscale
import tensorflow as tf
from tfscale import distributed
from tfscale.lars import StepTable
from test_lars import lars, numpy_lars
rank, size = distributed.rank(), distributed.size()
rng = np.random.default_rng(7)
init = rng.normal(size=(3, 3, 2, 4))
grads = rng.normal(size=(4, size, 3, 3, 2, 4))  # every rank draws all ranks' gradients, uses its own
lrs, wds = [0.5, 1.0, 2.0, 1.0], [1e-4, 5e-4, 5e-4, 1e-3]
ends = {{}}
for compression, tolerance in (("none", 1e-6), ("fp16", 2e-3)):
  kernel = tf.Variable(init, dtype=tf.float32, name="conv/kernel")
  optimizer = distributed.distributed_optimizer(
      lars(StepTable(lrs), momentum=0.9, weight_decay=StepTable(wds), eta=0.001), compression)
  w, v = init, np.zeros_like(init)
  for step in range(4):
    # The wrapper averages inside minimize() (Keras's training step); a loss linear in the kernel makes
    # this rank's gradient exactly grads[step, rank].
    g = tf.constant(grads[step, rank], tf.float32)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(kernel * g)
    optimizer.minimize(loss, [kernel], tape=tape)
    # Horovod averages the ranks' gradients before LARS sees them (as float16 on the wire with "fp16").
    w, v = numpy_lars(w, v, grads[step].mean(axis=0), lrs[step], 0.9, wds[step], 0.001, 1e-9, True)
  np.testing.assert_allclose(kernel.numpy(), w, rtol=tolerance, atol=tolerance)
  ends[compression] = kernel.numpy()
  print("rank", rank, "of", size, "matches with compression", compression)
assert np.abs(ends["fp16"] - ends["none"]).max() > 0  # float16 on the wire really happened
'''


def test_under_horovod_distributed_optimizer_two_ranks(tmp_path):
  """Two Gloo ranks with different gradients end where NumPy LARS on the averaged gradients ends."""
  import os
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = tmp_path / "lars_hvd.py"
  script.write_text(HOROVOD_LARS_SCRIPT.format(repo=repo, tests=os.path.join(repo, "tests")))
  horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
  result = subprocess.run([horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, str(script)],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert result.stdout.count("matches with compression none") == 2
  assert result.stdout.count("matches with compression fp16") == 2


def test_trainer_optimizer_follows_the_plans_momentum_resets_and_decay_rule():
  from tfscale import schedules, trainer
  from tfscale.config_base import base_config
  config = base_config()
  config.optim.decay_biases = True
  plan = schedules.compile_plan([schedules.phase("a", 1, "warmup", lr_end=1.0),
                                 schedules.phase("b", 1, "poly", lr_end=0.0, reset_momentum=True)],
                                steps_per_epoch=10, global_batch=256)
  optimizer = trainer.create_optimizer(config, plan)
  assert optimizer.momentum.values == pytest.approx([0.9] * 10 + [0.0] + [0.9] * 9)
  assert optimizer.decay_biases

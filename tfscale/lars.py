"""LARS (You, Gitman & Ginsburg, arXiv 1708.03888 / 1709.05011) as a tf_keras optimizer.

For every kernel w (conv and dense) with gradient g, at learning rate γ and weight decay β:

  local_lr = η·‖w‖ / (‖g‖ + β·‖w‖ + ε)        (1 where either norm is 0)
  v ← m·v + γ·local_lr·(g + β·w)
  w ← w − v

BN parameters (γ, β) are not adapted, and decayed (v ← m·v + γ·(g + β·w)) only when `decay_batch_norm`:
the seed authors' runs did, because Intel Caffe's MKLDNN engine merges each Scale layer into its BatchNorm
and the merged γ/β take the default decay_mult 1 (docs/RECIPES.md). Biases are not adapted; they are
decayed when `decay_biases`, as Caffe does (its decay_mult is 1 unless a layer says 0). With `adapt=False`
the same class is plain momentum SGD with the same weight decay, which makes SGD-vs-LARS comparisons exact (and, with decay_biases, is
Caffe's SGDSolver update). Learning rate, weight decay and momentum may each be a number or a schedule
of the step (the phase plan; a momentum of 0 at a step starts that step from a zero velocity, which is
how a plan restarts a solver's momentum history).
"""
import re

import tensorflow as tf
import tf_keras

_KERNEL = re.compile(r"kernel(:\d+)?$")
_BIAS = re.compile(r"bias(:\d+)?$")
_BATCH_NORM = re.compile(r"(gamma|beta)(:\d+)?$")


def is_adapted(variable) -> bool:
  """LARS's trust ratio applies to conv and dense kernels only."""
  return bool(_KERNEL.search(variable.name))


def is_decayed(variable, *, decay_biases: bool, decay_batch_norm: bool) -> bool:
  """Weight decay applies to conv and dense kernels, to biases when `decay_biases`, and to BN's γ/β when
  `decay_batch_norm`."""
  return (is_adapted(variable) or (decay_biases and bool(_BIAS.search(variable.name)))
          or (decay_batch_norm and bool(_BATCH_NORM.search(variable.name))))


@tf_keras.saving.register_keras_serializable("tfscale")
class StepTable(tf_keras.optimizers.schedules.LearningRateSchedule):
  """A per-step table (the compiled phase plan); steps past the end keep the last value."""

  def __init__(self, values, name="step_table"):
    self.values = [float(v) for v in values]
    self.name = name
    self._table = tf.constant(self.values, tf.float32)

  def __call__(self, step):
    index = tf.minimum(tf.cast(step, tf.int32), len(self.values) - 1)
    return tf.gather(self._table, index)

  def get_config(self):
    return {"values": self.values, "name": self.name}


@tf_keras.saving.register_keras_serializable("tfscale")
class LARS(tf_keras.optimizers.Optimizer):
  """Layer-wise adaptive rate scaling with momentum and weight decay inside the trust ratio."""

  def __init__(self, *, learning_rate, momentum, weight_decay, eta, adapt, decay_biases, decay_batch_norm,
               epsilon=1e-9, name="LARS", **kwargs):
    # Every hyperparameter is the config's (config_base.optim; trainer.create_optimizer passes them all);
    # epsilon only keeps a zero-norm layer's trust ratio finite and is no setting.
    # The base class's own `weight_decay` is decoupled (AdamW-style) decay; ours is in the update rule.
    super().__init__(name=name, weight_decay=None, **kwargs)
    self._learning_rate = self._build_learning_rate(learning_rate)
    self._weight_decay_rate = weight_decay
    self.momentum = momentum
    self.eta = eta
    self.epsilon = epsilon
    self.adapt = adapt
    self.decay_biases = decay_biases
    self.decay_batch_norm = decay_batch_norm

  def build(self, var_list):
    super().build(var_list)
    if getattr(self, "_built", False):
      return
    self.velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]
    self._decayed = [is_decayed(v, decay_biases=self.decay_biases, decay_batch_norm=self.decay_batch_norm)
                     for v in var_list]
    self._adapted = [self.adapt and is_adapted(v) for v in var_list]
    self._built = True

  def _at_this_step(self, value):
    if isinstance(value, tf_keras.optimizers.schedules.LearningRateSchedule):
      # `iterations` is incremented after the update, so this is the step being taken, as for the LR.
      return value(self.iterations)
    return tf.constant(value, tf.float32)

  def current_weight_decay(self):
    return self._at_this_step(self._weight_decay_rate)

  def current_momentum(self):
    return self._at_this_step(self.momentum)

  def update_step(self, gradient, variable):
    index = self._index_dict[self._var_key(variable)]
    velocity = self.velocities[index]
    dtype = variable.dtype
    lr = tf.cast(self.learning_rate, dtype)
    momentum = tf.cast(self.current_momentum(), dtype)
    if isinstance(gradient, tf.IndexedSlices):
      gradient = tf.convert_to_tensor(gradient)
    if self._decayed[index]:
      wd = tf.cast(self.current_weight_decay(), dtype)
      update = gradient + wd * variable
      if self._adapted[index]:
        w_norm = tf.norm(variable)
        g_norm = tf.norm(gradient)
        trust = tf.where(
            (w_norm > 0) & (g_norm > 0),
            self.eta * w_norm / (g_norm + wd * w_norm + self.epsilon),
            tf.ones_like(w_norm))
        lr = lr * trust
    else:
      update = gradient
    velocity.assign(momentum * velocity + lr * update)
    variable.assign_sub(velocity)

  def get_config(self):
    config = super().get_config()
    config.update({
        "learning_rate": self._serialize_hyperparameter(self._learning_rate),
        "weight_decay": self._serialize_hyperparameter(self._weight_decay_rate),
        "momentum": self._serialize_hyperparameter(self.momentum),
        "eta": self.eta,
        "epsilon": self.epsilon,
        "adapt": self.adapt,
        "decay_biases": self.decay_biases,
        "decay_batch_norm": self.decay_batch_norm,
    })
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    for key in ("weight_decay", "momentum"):
      if isinstance(config.get(key), dict):
        config[key] = tf_keras.optimizers.schedules.deserialize(config[key], custom_objects=custom_objects)
    return super().from_config(config, custom_objects=custom_objects)

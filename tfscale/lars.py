"""LARS (You, Gitman & Ginsburg, arXiv 1708.03888 / 1709.05011) as a tf_keras optimizer.

For every decayed variable w (conv and dense kernels) with gradient g, at learning rate γ:

  local_lr = η·‖w‖ / (‖g‖ + β·‖w‖ + ε)        (1 where either norm is 0)
  v ← m·v + γ·local_lr·(g + β·w)
  w ← w − v

BN parameters and biases are neither adapted nor decayed: v ← m·v + γ·g. With `adapt=False` the same
class is plain momentum SGD with the same weight decay, which makes SGD-vs-LARS comparisons exact.
Learning rate and weight decay may each be a number or a schedule of the step (the phase plan).
"""
import re

import tensorflow as tf
import tf_keras

_KERNEL = re.compile(r"kernel(:\d+)?$")


def is_decayed(variable) -> bool:
  """Weight decay (and LARS adaptation) applies to conv and dense kernels only, never to BN or biases."""
  return bool(_KERNEL.search(variable.name))


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

  def __init__(self, learning_rate=0.1, momentum=0.9, weight_decay=0.0, eta=0.001, epsilon=1e-9,
               adapt=True, name="LARS", **kwargs):
    # The base class's own `weight_decay` is decoupled (AdamW-style) decay; ours is in the update rule.
    super().__init__(name=name, weight_decay=None, **kwargs)
    self._learning_rate = self._build_learning_rate(learning_rate)
    self._weight_decay_rate = weight_decay
    self.momentum = momentum
    self.eta = eta
    self.epsilon = epsilon
    self.adapt = adapt

  def build(self, var_list):
    super().build(var_list)
    if getattr(self, "_built", False):
      return
    self.velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]
    self._decayed = [is_decayed(v) for v in var_list]
    self._built = True

  def current_weight_decay(self):
    rate = self._weight_decay_rate
    if isinstance(rate, tf_keras.optimizers.schedules.LearningRateSchedule):
      # `iterations` is incremented after the update, so this is the step being taken, as for the LR.
      return rate(self.iterations)
    return tf.constant(rate, tf.float32)

  def update_step(self, gradient, variable):
    index = self._index_dict[self._var_key(variable)]
    velocity = self.velocities[index]
    dtype = variable.dtype
    lr = tf.cast(self.learning_rate, dtype)
    momentum = tf.cast(self.momentum, dtype)
    if isinstance(gradient, tf.IndexedSlices):
      gradient = tf.convert_to_tensor(gradient)
    if self._decayed[index]:
      wd = tf.cast(self.current_weight_decay(), dtype)
      update = gradient + wd * variable
      if self.adapt:
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
        "momentum": self.momentum,
        "eta": self.eta,
        "epsilon": self.epsilon,
        "adapt": self.adapt,
    })
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    if isinstance(config.get("weight_decay"), dict):
      config["weight_decay"] = tf_keras.optimizers.schedules.deserialize(config["weight_decay"],
                                                                         custom_objects=custom_objects)
    return super().from_config(config, custom_objects=custom_objects)

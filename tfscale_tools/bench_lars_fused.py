"""An attempt measured by `bench knobs --knobs=lars-fused`: tfscale's LARS update with fewer ops per step.

tfscale.lars.LARS looks the step's momentum and weight decay up in their tables once per variable (161
momentum and 54 weight-decay gathers a step; tf_keras reads the learning rate once) and updates each
velocity and weight with four separate ops. This variant looks the scalars up once per step and applies
v ← m·v + γ·u, w ← w − v as one `ResourceApplyMomentum` kernel per variable (its accum ← accum·m + grad;
var ← var − lr·accum with lr 1 and grad γ·u is exactly that update). Same arithmetic, same slots. Measured
slower in fp32 and level in bf16, so not the library's (docs/BENCHMARKS.md, issue 18).
"""
import tensorflow as tf

from tfscale.lars import LARS


class FusedLARS(LARS):

  def _distributed_apply_gradients_fn(self, distribution, grads_and_vars, **kwargs):
    self._step_scalars = (self.learning_rate, self.current_momentum(), self.current_weight_decay())
    try:
      return super()._distributed_apply_gradients_fn(distribution, grads_and_vars, **kwargs)
    finally:
      del self._step_scalars

  def update_step(self, gradient, variable):
    index = self._index_dict[self._var_key(variable)]
    dtype = variable.dtype
    lr, momentum, wd = (tf.cast(x, dtype) for x in self._step_scalars)
    if isinstance(gradient, tf.IndexedSlices):
      gradient = tf.convert_to_tensor(gradient)
    update = gradient
    if self._decayed[index]:
      update = gradient + wd * variable
      if self._adapted[index]:
        w_norm, g_norm = tf.norm(variable), tf.norm(gradient)
        lr = lr * tf.where((w_norm > 0) & (g_norm > 0), self.eta * w_norm / (g_norm + wd * w_norm + self.epsilon),
                           tf.ones_like(w_norm))
    tf.raw_ops.ResourceApplyMomentum(var=variable.handle, accum=self.velocities[index].handle,
                                     lr=tf.constant(1.0, dtype), grad=lr * update, momentum=momentum)

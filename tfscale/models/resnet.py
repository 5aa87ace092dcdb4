"""ResNet v1.5 (stride on the 3×3 conv of the bottleneck) and Wide ResNets, in tf_keras, channels-last.

One builder covers the family: `block` ('basic' | 'bottleneck'), `stage_blocks`, `stage_widths`, per-stage
`width_multipliers`, and `stem` ('imagenet': 7×7/2 conv + 3×3/2 max-pool; 'cifar': one 3×3 conv for small
images). What a stage's multiplier k widens, exactly:
  * bottleneck blocks: the 1×1-reduce and 3×3 convs get stage_width·k channels; the block output (the
    1×1-expand conv, the projection shortcut, hence the next stage's input) stays 4·stage_width. This is
    WRN-50-2 / torchvision's wide_resnet50_2 with k = 2 on every stage.
  * basic blocks: both 3×3 convs and the block output get stage_width·k channels (Zagoruyko & Komodakis'
    WRN-d-k with stage widths 16, 32, 64 and k on every stage). Convs carry no bias (BN follows each);
the last BN of every residual block (or of each stage's last block) may start at γ = 0 so the block starts
as the identity (Goyal et al.), which is what makes large-batch warmup stable. Logits are float32 even under mixed_bfloat16.
The model takes uint8 RGB images and normalises them itself with the ImageNet channel statistics, so
the input pipeline stays integer and every snapshot carries its own preprocessing.
"""
from typing import Optional, Sequence

import tf_keras
from tf_keras import layers

from tfscale.config_base import ConfigError

# ImageNet channel statistics on the 0..255 scale.
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@tf_keras.saving.register_keras_serializable("tfscale")
class RampedBatchRenormalization(layers.BatchNormalization):
  """Batch renormalization (Ioffe 2017) whose r_max/d_max clipping is read from shared variables, so
  `callbacks.RenormRamp` can open it up from (1, 0) to its final values during training without a
  retrace. Serialised with the final values: a saved model is a plain renorm layer."""

  def __init__(self, rmax=3.0, dmax=5.0, clipping_variables=None, **kwargs):
    kwargs.pop("renorm_clipping", None)
    super().__init__(renorm=True, **kwargs)
    self.final_rmax, self.final_dmax = rmax, dmax
    if clipping_variables is not None:
      rmax_var, rmin_var, dmax_var = clipping_variables
      # Not tracked: the shared variables belong to the training run, not to the layer's weights (a tracked
      # dict would add them to every BN's saved weights and snapshots would not load from model.json).
      # (object.__setattr__: Keras's own __setattr__ would adopt any variable it sees as a layer weight.)
      object.__setattr__(self, "renorm_clipping", {"rmax": rmax_var, "rmin": rmin_var, "dmax": dmax_var})
    else:
      self.renorm_clipping = {"rmax": rmax, "rmin": 1.0 / rmax, "dmax": dmax}

  def get_config(self):
    config = super().get_config()
    config.pop("renorm", None)
    config.update(renorm_clipping=None, rmax=self.final_rmax, dmax=self.final_dmax)
    return config


def _bn(name, momentum, epsilon, zero_gamma, renorm=None):
  gamma = "zeros" if zero_gamma else "ones"
  if renorm is None:
    return layers.BatchNormalization(axis=-1, momentum=momentum, epsilon=epsilon, name=name, gamma_initializer=gamma)
  return RampedBatchRenormalization(rmax=renorm["rmax"], dmax=renorm["dmax"], clipping_variables=renorm["variables"],
                                    renorm_momentum=renorm["momentum"], axis=-1, momentum=momentum, epsilon=epsilon,
                                    name=name, gamma_initializer=gamma)


# Convolution initialisers by config name → (stem conv's, every other conv's). 'he_normal' is Keras's
# (truncated normal, σ from fan-in). 'caffe_msra' is the seed authors' network file: Caffe's MSRAFiller, an
# untruncated Gaussian with σ = √(2/n), n = fan-out (k·k·out_channels) for conv1 (`variance_norm: FAN_OUT`)
# and fan-in (k·k·in_channels, the filler's default) for the other 52 convolutions.
CONV_INITIALIZERS = {
    "he_normal": lambda stem: "he_normal",
    "caffe_msra": lambda stem: tf_keras.initializers.VarianceScaling(2.0, "fan_out" if stem else "fan_in",
                                                                     "untruncated_normal"),
}
# Which residual blocks' last BN starts at γ = 0: 'all' (Goyal et al.), 'stage_last' (the last block of each
# stage: the seed authors' BN `filler { value: 0 }` on bn2c/bn3d/bn4f/bn5c_branch2c) or 'none'.
ZERO_GAMMA = ("all", "stage_last", "none")


def _conv(filters, kernel, strides, name, init="he_normal"):
  return layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                       kernel_initializer=CONV_INITIALIZERS[init](name == "stem_conv"), name=name)


def _block(x, width, multiplier, strides, kind, name, bn, conv, zero_gamma):
  """One residual block; `bn(name, zero_gamma)` makes its batch norms, `conv(filters, kernel, strides,
  name)` its convolutions; `zero_gamma`: its last BN starts at γ = 0."""
  out_channels = width * 4 if kind == "bottleneck" else width * multiplier
  width = width * multiplier
  shortcut = x
  if strides != 1 or x.shape[-1] != out_channels:
    shortcut = conv(out_channels, 1, strides, name + "_proj_conv")(x)
    shortcut = bn(name + "_proj_bn")(shortcut)
  if kind == "bottleneck":
    y = conv(width, 1, 1, name + "_1_conv")(x)
    y = layers.ReLU(name=name + "_1_relu")(bn(name + "_1_bn")(y))
    y = conv(width, 3, strides, name + "_2_conv")(y)  # v1.5: the stride sits here, not on the 1×1.
    y = layers.ReLU(name=name + "_2_relu")(bn(name + "_2_bn")(y))
    y = conv(out_channels, 1, 1, name + "_3_conv")(y)
    y = bn(name + "_3_bn", zero_gamma)(y)
  else:
    y = conv(width, 3, strides, name + "_1_conv")(x)
    y = layers.ReLU(name=name + "_1_relu")(bn(name + "_1_bn")(y))
    y = conv(width, 3, 1, name + "_2_conv")(y)
    y = bn(name + "_2_bn", zero_gamma)(y)
  return layers.ReLU(name=name + "_out")(layers.Add(name=name + "_add")([shortcut, y]))


def check_options(zero_gamma, conv_init: str) -> str:
  """The config's model.zero_gamma (normalised: True/False mean 'all'/'none') if it and model.conv_init name
  options resnet() has; otherwise a one-line ConfigError."""
  zero_gamma = {True: "all", False: "none"}.get(zero_gamma, zero_gamma)
  if zero_gamma not in ZERO_GAMMA:
    raise ConfigError(f"model.zero_gamma must be one of {ZERO_GAMMA}, got {zero_gamma!r}")
  if conv_init not in CONV_INITIALIZERS:
    raise ConfigError(f"model.conv_init must be one of {sorted(CONV_INITIALIZERS)}, got {conv_init!r}")
  return zero_gamma


def resnet(num_classes: int, stage_blocks: Sequence[int], stage_widths: Sequence[int], block: str = "bottleneck",
           width_multipliers: Optional[Sequence[int]] = None, stem: str = "imagenet", stem_width: int = 64,
           *, image_size: int, bn_momentum: float, bn_epsilon: float, zero_gamma, renorm: Optional[dict],
           conv_init: str, name: str) -> tf_keras.Model:
  """A ResNet v1.5 / Wide ResNet classifier returning float32 logits.

  `renorm`: None, or {"rmax", "dmax", "momentum", "variables": (rmax_var, rmin_var, dmax_var)} for batch renorm.
  `zero_gamma`: one of ZERO_GAMMA (True/False mean 'all'/'none').
  """
  zero_gamma = check_options(zero_gamma, conv_init)
  if block not in ("basic", "bottleneck"):
    raise ConfigError(f"block must be 'basic' or 'bottleneck', got {block!r}")
  multipliers = tuple(width_multipliers or (1,) * len(stage_blocks))
  if len(multipliers) != len(stage_blocks):
    raise ConfigError(f"{len(multipliers)} width multipliers for {len(stage_blocks)} stages")

  def bn(layer_name, starts_at_zero=False):
    return _bn(layer_name, bn_momentum, bn_epsilon, starts_at_zero, renorm)

  def conv(filters, kernel, strides, layer_name):
    return _conv(filters, kernel, strides, layer_name, conv_init)

  inputs = layers.Input((image_size, image_size, 3), dtype="uint8", name="images")
  # float32 whatever the policy: (pixel − mean) / std in bfloat16 would lose the low bits of the pixel.
  x = layers.Normalization(mean=MEAN_RGB, variance=[s * s for s in STDDEV_RGB], dtype="float32",
                           name="normalize")(inputs)
  if stem == "imagenet":
    x = conv(stem_width, 7, 2, "stem_conv")(x)
    x = layers.ReLU(name="stem_relu")(bn("stem_bn")(x))
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
  elif stem == "cifar":
    x = conv(stem_width, 3, 1, "stem_conv")(x)
    x = layers.ReLU(name="stem_relu")(bn("stem_bn")(x))
  else:
    raise ConfigError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
  for stage, (blocks, width, multiplier) in enumerate(zip(stage_blocks, stage_widths, multipliers)):
    for b in range(blocks):
      strides = 2 if stage > 0 and b == 0 else 1
      zero = zero_gamma == "all" or (zero_gamma == "stage_last" and b == blocks - 1)
      x = _block(x, width, multiplier, strides, block, f"stage{stage + 1}_block{b + 1}", bn, conv, zero)
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  x = layers.Dense(num_classes, kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
                   name="logits")(x)
  # Softmax and loss need float32 even when the body runs in bfloat16.
  logits = layers.Activation("linear", dtype="float32", name="logits_fp32")(x)
  return tf_keras.Model(inputs, logits, name=name)

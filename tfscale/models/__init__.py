"""Model names → architectures. A dict literal, not a registry: every model tfscale trains is listed here."""
from typing import Optional

from tfscale.config_base import ConfigError

from tfscale.models.resnet import check_options, resnet

_IMAGENET = (64, 128, 256, 512)
_CIFAR = (16, 32, 64)


def _wrn_cifar(depth: int, k: int) -> dict:
  """Zagoruyko & Komodakis' WRN-depth-k: (depth − 4) / 6 basic blocks per stage, widths 16k, 32k, 64k."""
  if (depth - 4) % 6:
    raise ConfigError(f"WRN depth must be 6n + 4, got {depth}")
  n = (depth - 4) // 6
  return dict(block="basic", stage_blocks=(n, n, n), stage_widths=_CIFAR, width_multipliers=(k, k, k),
              stem="cifar", stem_width=16)


ARCHITECTURES = {
    "resnet18": dict(block="basic", stage_blocks=(2, 2, 2, 2), stage_widths=_IMAGENET),
    "resnet34": dict(block="basic", stage_blocks=(3, 4, 6, 3), stage_widths=_IMAGENET),
    "resnet50": dict(block="bottleneck", stage_blocks=(3, 4, 6, 3), stage_widths=_IMAGENET),
    "resnet101": dict(block="bottleneck", stage_blocks=(3, 4, 23, 3), stage_widths=_IMAGENET),
    "resnet152": dict(block="bottleneck", stage_blocks=(3, 8, 36, 3), stage_widths=_IMAGENET),
    # ImageNet Wide ResNets: ResNet-50/101 with every bottleneck's inner (1×1-reduce, 3×3) channels × k.
    "wrn50_2": dict(block="bottleneck", stage_blocks=(3, 4, 6, 3), stage_widths=_IMAGENET, width_multipliers=(2,) * 4),
    "wrn50_3": dict(block="bottleneck", stage_blocks=(3, 4, 6, 3), stage_widths=_IMAGENET, width_multipliers=(3,) * 4),
    "wrn101_2": dict(block="bottleneck", stage_blocks=(3, 4, 23, 3), stage_widths=_IMAGENET,
                     width_multipliers=(2,) * 4),
    # Small-image (CIFAR-style, 3×3 stem) networks.
    "wrn16_4": _wrn_cifar(16, 4),
    "wrn28_10": _wrn_cifar(28, 10),
    "wrn40_4": _wrn_cifar(40, 4),
    # The digits demo and the tests: three stages of one basic block each.
    "resnet_cifar8": dict(block="basic", stage_blocks=(1, 1, 1), stage_widths=_CIFAR, stem="cifar", stem_width=16),
}


def check_config(model_config):
  """A one-line ConfigError unless the model section names a model and options tfscale has."""
  if model_config.name not in ARCHITECTURES:
    raise ConfigError(f"model.name {model_config.name!r} is not a model tfscale has; known: "
                      f"{', '.join(sorted(ARCHITECTURES))}")
  check_options(model_config.zero_gamma, model_config.conv_init)


def create_model(model_config, num_classes: int, image_size: int, renorm: Optional[dict] = None):
  """The architecture `model_config.name` names (a config's `model` section, whose fields and defaults live
  in config_base: `config_base.model_config(name=…)` for one outside a recipe) with a `num_classes` head for
  `image_size`² uint8 inputs.

  `model_config.width_multipliers` (one per stage) replaces the architecture's own, e.g. (1, 2, 2, 3) for a
  ResNet-50 widened only from stage 2 on; `renorm` turns every BN into ramped batch renormalization (its
  clipping variables are the run's, so the trainer builds them); `conv_init` names the convolutions'
  initialiser (models/resnet.py: CONV_INITIALIZERS).
  """
  check_config(model_config)
  name = model_config.name
  architecture = dict(ARCHITECTURES[name])
  if model_config.width_multipliers:
    architecture["width_multipliers"] = tuple(model_config.width_multipliers)
  return resnet(num_classes=num_classes, image_size=image_size, bn_momentum=model_config.bn_momentum,
                bn_epsilon=model_config.bn_epsilon, zero_gamma=model_config.zero_gamma, renorm=renorm,
                conv_init=model_config.conv_init, name=name, **architecture)

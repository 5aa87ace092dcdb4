"""Model names → architectures. A dict literal, not a registry: every model tfscale trains is listed here."""
from tfscale.models.resnet import resnet

_BOTTLENECK = (64, 128, 256, 512)
ARCHITECTURES = {
    "resnet18": dict(block="basic", stage_blocks=(2, 2, 2, 2), stage_widths=_BOTTLENECK),
    "resnet34": dict(block="basic", stage_blocks=(3, 4, 6, 3), stage_widths=_BOTTLENECK),
    "resnet50": dict(block="bottleneck", stage_blocks=(3, 4, 6, 3), stage_widths=_BOTTLENECK),
    "resnet101": dict(block="bottleneck", stage_blocks=(3, 4, 23, 3), stage_widths=_BOTTLENECK),
    "resnet152": dict(block="bottleneck", stage_blocks=(3, 8, 36, 3), stage_widths=_BOTTLENECK),
    # Small-image ResNet for the digits demo and tests: 3×3 stem, three stages of basic blocks.
    "resnet_cifar8": dict(block="basic", stage_blocks=(1, 1, 1), stage_widths=(16, 32, 64), stem="cifar",
                          stem_width=16),
}


def create_model(name: str, num_classes: int, image_size: int, bn_momentum: float = 0.9,
                 bn_epsilon: float = 1e-5, zero_gamma: bool = True):
  """The named architecture with a `num_classes` head for `image_size`² inputs."""
  if name not in ARCHITECTURES:
    raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
  return resnet(num_classes=num_classes, image_size=image_size, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                zero_gamma=zero_gamma, name=name, **ARCHITECTURES[name])

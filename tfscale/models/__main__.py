r"""Print a model's summary line and parameter count.

  python -m tfscale.models resnet50 [--num_classes=1000 --image_size=224]
  python -m tfscale.models --list
"""
from absl import app, flags

import tfscale  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_bool("list", False, "List every model name.")
flags.DEFINE_integer("num_classes", 1000, "Classifier width.")
flags.DEFINE_integer("image_size", 0, "Input side (0: 224, or 32 for small-image models).")


def describe(name: str, num_classes: int, image_size: int) -> str:
  import numpy as np
  from tfscale import config_base
  from tfscale.models import ARCHITECTURES, create_model
  architecture = ARCHITECTURES[name]
  size = image_size or (32 if architecture.get("stem") == "cifar" else 224)
  model = create_model(config_base.model_config(name=name), num_classes, size)
  trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
  total = int(sum(np.prod(v.shape) for v in model.variables))
  blocks = "-".join(str(b) for b in architecture["stage_blocks"])
  multipliers = architecture.get("width_multipliers")
  widths = f", width ×{'/'.join(map(str, multipliers))}" if multipliers else ""
  return (f"{name}: {architecture['block']} blocks {blocks}{widths}, {architecture.get('stem', 'imagenet')} stem, "
          f"{size}×{size}×3 uint8 → {num_classes} logits; {trainable:,} trainable parameters "
          f"({total:,} with BN statistics); {len(model.layers)} layers")


def main(argv):
  from tfscale.models import ARCHITECTURES
  if FLAGS.list:
    print("\n".join(sorted(ARCHITECTURES)))
    return
  if len(argv) != 2 or argv[1] not in ARCHITECTURES:
    raise app.UsageError(f"usage: python -m tfscale.models NAME | --list (names: {', '.join(sorted(ARCHITECTURES))})")
  print(describe(argv[1], FLAGS.num_classes, FLAGS.image_size))


if __name__ == "__main__":
  app.run(main)

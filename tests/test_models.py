"""ResNet v1.5 family: parameter counts, zero-γ, float32 logits under bfloat16."""
import numpy as np
import pytest

import tfscale  # noqa: F401
import tf_keras

from tfscale.models import ARCHITECTURES, create_model


def trainable_parameters(model):
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


@pytest.mark.parametrize("name,count", [("resnet18", 11_689_512), ("resnet50", 25_557_032)])
def test_standard_parameter_counts(name, count):
  """The counts of the reference ImageNet implementations (1000 classes, no conv biases)."""
  model = create_model(name, num_classes=1000, image_size=224)
  assert trainable_parameters(model) == count
  assert model.output_shape == (None, 1000)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_model_builds_small(name):
  model = create_model(name, num_classes=7, image_size=64)
  logits = model(np.zeros((2, 64, 64, 3), np.float32), training=False)
  assert logits.shape == (2, 7)


def test_last_bn_of_each_block_starts_at_zero_gamma():
  model = create_model("resnet_cifar8", num_classes=10, image_size=32)
  gammas = {l.name: l.gamma.numpy() for l in model.layers if isinstance(l, tf_keras.layers.BatchNormalization)}
  last = [n for n in gammas if n.endswith("_2_bn")]
  assert len(last) == 3 and all((gammas[n] == 0).all() for n in last)
  assert all((g == 1).all() for n, g in gammas.items() if n not in last)
  off = create_model("resnet_cifar8", num_classes=10, image_size=32, zero_gamma=False)
  assert all((l.gamma.numpy() == 1).all() for l in off.layers if isinstance(l, tf_keras.layers.BatchNormalization))


def test_model_normalises_uint8_images_itself():
  model = create_model("resnet_cifar8", num_classes=10, image_size=32)
  normalize = tf_keras.Model(model.input, model.get_layer("normalize").output)
  mean = np.array([0.485, 0.456, 0.406]) * 255
  std = np.array([0.229, 0.224, 0.225]) * 255
  pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
  np.testing.assert_allclose(normalize(pixels).numpy(), (pixels - mean) / std, rtol=1e-5, atol=1e-5)


def test_bfloat16_body_float32_logits():
  tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = create_model("resnet_cifar8", num_classes=10, image_size=32)
    conv = model.get_layer("stem_conv")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert model(np.zeros((1, 32, 32, 3), np.float32)).dtype == "float32"
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")

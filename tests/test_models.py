"""ResNet v1.5 family: parameter counts, zero-γ, float32 logits under bfloat16."""
import numpy as np
import pytest

import tfscale  # noqa: F401
import tf_keras

from tfscale.config_base import model_config
from tfscale.models import ARCHITECTURES, create_model


def trainable_parameters(model):
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


@pytest.mark.parametrize("name,count", [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
                                        ("resnet101", 44_549_160), ("resnet152", 60_192_808),
                                        ("wrn50_2", 68_883_240)])
def test_standard_parameter_counts(name, count):
  """The counts of the reference ImageNet implementations (1000 classes, no conv biases; wrn50_2 is
  torchvision's wide_resnet50_2)."""
  model = create_model(model_config(name=name), num_classes=1000, image_size=224)
  assert trainable_parameters(model) == count
  assert model.output_shape == (None, 1000)


def test_wrn_28_10_is_about_36_5_million_parameters():
  model = create_model(model_config(name="wrn28_10"), num_classes=10, image_size=32)
  assert abs(trainable_parameters(model) - 36.5e6) < 0.1e6


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_model_builds_small(name):
  model = create_model(model_config(name=name), num_classes=7, image_size=64)
  logits = model(np.zeros((2, 64, 64, 3), np.uint8), training=False)
  assert logits.shape == (2, 7)


def test_width_multipliers_widen_the_inner_bottleneck_channels_only():
  base = create_model(model_config(name="resnet50"), num_classes=10, image_size=64)
  wide = create_model(model_config(name="resnet50", width_multipliers=(1, 2, 2, 3)), num_classes=10, image_size=64)
  for model, inner in ((base, (64, 128, 256, 512)), (wide, (64, 256, 512, 1536))):
    for stage, channels in enumerate(inner, start=1):
      assert model.get_layer(f"stage{stage}_block1_2_conv").filters == channels
      assert model.get_layer(f"stage{stage}_block1_3_conv").filters == 4 * (64, 128, 256, 512)[stage - 1]


def test_batch_renorm_ramps_and_round_trips(tmp_path):
  import tensorflow as tf
  from tfscale.callbacks import RenormRamp
  rmax, rmin, dmax = (tf.Variable(v, trainable=False) for v in (1.0, 1.0, 0.0))
  model = create_model(model_config(name="resnet_cifar8"), 10, 32,
                       renorm={"rmax": 3.0, "dmax": 5.0, "momentum": 0.99, "variables": (rmax, rmin, dmax)})
  bns = [l for l in model.layers if isinstance(l, tf_keras.layers.BatchNormalization)]
  assert all(l.renorm and l.renorm_clipping["rmax"] is rmax for l in bns)
  assert not any(v is rmax for v in model.variables)  # the run's, not the model's
  model.compile(optimizer=tf_keras.optimizers.SGD(0.01),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  ramp = RenormRamp(rmax, rmin, dmax, 3.0, 5.0, start_step=2, end_step=6)
  data = (np.random.default_rng(0).integers(0, 255, (32, 32, 32, 3)).astype(np.uint8), np.arange(32) % 10)
  model.fit(*data, batch_size=8, epochs=1, callbacks=[ramp], verbose=0)  # steps 0..3; the last began at step 3
  assert float(rmax.numpy()) == pytest.approx(1.5) and float(dmax.numpy()) == pytest.approx(1.25)
  assert float(rmin.numpy()) == pytest.approx(1 / 1.5)
  clone = tf_keras.models.model_from_json(model.to_json())  # a snapshot loads with the final limits
  layer = clone.get_layer(bns[0].name)
  assert layer.renorm and layer.renorm_clipping["rmax"] == 3.0 and layer.renorm_clipping["dmax"] == 5.0


def test_last_bn_of_each_block_starts_at_zero_gamma():
  model = create_model(model_config(name="resnet_cifar8"), num_classes=10, image_size=32)
  gammas = {l.name: l.gamma.numpy() for l in model.layers if isinstance(l, tf_keras.layers.BatchNormalization)}
  last = [n for n in gammas if n.endswith("_2_bn")]
  assert len(last) == 3 and all((gammas[n] == 0).all() for n in last)
  assert all((g == 1).all() for n, g in gammas.items() if n not in last)
  off = create_model(model_config(name="resnet_cifar8", zero_gamma="none"), num_classes=10, image_size=32)
  assert all((l.gamma.numpy() == 1).all() for l in off.layers if isinstance(l, tf_keras.layers.BatchNormalization))


def test_model_normalises_uint8_images_itself():
  model = create_model(model_config(name="resnet_cifar8"), num_classes=10, image_size=32)
  normalize = tf_keras.Model(model.input, model.get_layer("normalize").output)
  mean = np.array([0.485, 0.456, 0.406]) * 255
  std = np.array([0.229, 0.224, 0.225]) * 255
  pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
  np.testing.assert_allclose(normalize(pixels).numpy(), (pixels - mean) / std, rtol=1e-5, atol=1e-5)


def test_bfloat16_body_float32_logits():
  tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = create_model(model_config(name="resnet_cifar8"), num_classes=10, image_size=32)
    conv = model.get_layer("stem_conv")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert model(np.zeros((1, 32, 32, 3), np.float32)).dtype == "float32"
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")


def test_zero_gamma_modes():
  model = create_model(model_config(name="resnet18", zero_gamma="stage_last"), num_classes=10, image_size=32)
  zeros = sorted(l.name for l in model.layers
                 if isinstance(l, tf_keras.layers.BatchNormalization) and (l.gamma.numpy() == 0).all())
  # The seed authors' BN fillers: the last block of each stage (bn2c, bn3d, bn4f, bn5c in their ResNet-50).
  assert zeros == ["stage1_block2_2_bn", "stage2_block2_2_bn", "stage3_block2_2_bn", "stage4_block2_2_bn"]
  with pytest.raises(ValueError, match="zero_gamma"):
    create_model(model_config(name="resnet_cifar8", zero_gamma="some"), num_classes=10, image_size=32)


def test_caffe_msra_initialiser_is_fan_out_for_the_stem_fan_in_elsewhere():
  """σ = √(2/n) untruncated: n = 7·7·64 for the stem (FAN_OUT), k·k·in_channels for the rest (FAN_IN)."""
  tf_keras.utils.set_random_seed(0)
  model = create_model(model_config(name="resnet50", conv_init="caffe_msra"), num_classes=10, image_size=64)
  stem = model.get_layer("stem_conv").kernel.numpy()
  assert stem.std() == pytest.approx(np.sqrt(2 / (7 * 7 * 64)), rel=0.03)
  conv = model.get_layer("stage3_block2_2_conv").kernel.numpy()  # 3×3, 256 → 256
  assert conv.std() == pytest.approx(np.sqrt(2 / (3 * 3 * 256)), rel=0.02)
  assert np.abs(conv).max() > 3 * conv.std()  # a Gaussian's tail: not truncated at 2σ like he_normal
  he = create_model(model_config(name="resnet50"), num_classes=10, image_size=64)
  he = he.get_layer("stage3_block2_2_conv").kernel.numpy()
  assert np.abs(he).max() <= 2 * np.sqrt(2 / (3 * 3 * 256)) / 0.8796 * 1.001  # truncated normal's bound

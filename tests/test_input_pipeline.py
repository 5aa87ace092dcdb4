"""The tf.data pipeline on real digits shards: shapes, labels, rank sharding, collapse switch, exact eval."""
import numpy as np
import pytest

import tfscale  # noqa: F401
import tensorflow as tf

from configs.demo_digits import get_config
from data_prep import shard_format
from tfscale import datasets, input_pipeline


@pytest.fixture(scope="module")
def info(digits_shards):
  return datasets.load(str(digits_shards))


@pytest.fixture
def data_config(digits_shards):
  config = get_config().data
  config.dir = str(digits_shards)
  return config


def batches(dataset, n):
  return [(x.numpy(), y.numpy()) for x, y in dataset.take(n)]


def test_train_batches_have_the_right_shape_and_labels(info, data_config):
  dataset = input_pipeline.train_dataset(info, data_config, batch_size=16, seed=0, deterministic=True)
  for images, labels in batches(dataset, 5):
    assert images.shape == (16, 32, 32, 3) and images.dtype == np.uint8  # the model normalises
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 10
    assert images.max() > 100  # digits are bright strokes on black


def test_ranks_read_disjoint_files(info):
  files = info.split("train").files
  per_rank = [shard_format.files_for_rank(files, r, 3)[0] for r in range(3)]
  assert sorted(sum(per_rank, [])) == sorted(files)
  assert all(not set(a) & set(b) for i, a in enumerate(per_rank) for b in per_rank[i + 1:])
  assert shard_format.files_for_rank(files, 1, 9) == (files, True)  # fewer files than ranks


def test_same_seed_same_stream(info, data_config):
  a = batches(input_pipeline.train_dataset(info, data_config, 8, seed=3, deterministic=True), 3)
  b = batches(input_pipeline.train_dataset(info, data_config, 8, seed=3, deterministic=True), 3)
  for (xa, ya), (xb, yb) in zip(a, b):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)


def test_collapse_mode_switches_exactly_at_the_step(info, data_config):
  """Steps 0-1 'full', steps 2-3 'collapse': each half equals the pipeline that is all one mode."""
  make = lambda table: batches(input_pipeline.train_dataset(info, data_config, 8, collapse=table,
                                                            seed=0, deterministic=True), 4)
  mixed = make([False, False, True, True])
  full = make([False] * 4)
  collapsed = make([True] * 4)
  for step in range(4):
    same_as = full if step < 2 else collapsed
    other = collapsed if step < 2 else full
    np.testing.assert_array_equal(mixed[step][0], same_as[step][0])
    assert not np.array_equal(mixed[step][0], other[step][0])


def test_resumed_stream_continues_the_collapse_table(info, data_config):
  """start_step indexes the table: a pipeline started at step 2 crops step 2 in collapse mode."""
  dataset = input_pipeline.train_dataset(info, data_config, 8, collapse=[False, False, True, True],
                                         start_step=2, seed=0, deterministic=True)
  table_says_collapse = input_pipeline.train_dataset(info, data_config, 8, collapse=[True] * 4,
                                                     start_step=2, seed=0, deterministic=True)
  np.testing.assert_array_equal(batches(dataset, 1)[0][0], batches(table_says_collapse, 1)[0][0])


def test_crop_windows():
  import io
  from PIL import Image
  rng = np.random.default_rng(0)
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 255, (60, 100, 3), np.uint8)).save(buffer, format="JPEG", quality=100, subsampling=0)
  jpeg = tf.constant(buffer.getvalue())
  assert input_pipeline.center_crop(jpeg, 24, 0.5).shape == (24, 24, 3)
  # The central 30×30 (half the shorter side) of the decoded image, resized to 30×30, is that window.
  whole = tf.io.decode_jpeg(jpeg, channels=3).numpy().astype(np.float32)
  np.testing.assert_allclose(input_pipeline.center_crop(jpeg, 30, 0.5).numpy(), whole[15:45, 35:65], atol=1e-3)
  for seed in range(5):
    crop = input_pipeline.fixed_scale_crop(jpeg, 30, 0.5, tf.constant([seed, 0], tf.int64)).numpy()
    # Some 30×30 window of the image, at a random position.
    found = any(np.allclose(crop, whole[y:y + 30, x:x + 30], atol=1e-3) for y in range(31) for x in range(71))
    assert found


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_eval_covers_every_image_exactly_once(info, data_config, ranks):
  def fingerprints(rank, num_ranks, batch):
    return [(int(label), float(image.sum().round(2)))
            for images, labels in input_pipeline.eval_dataset(info, data_config, "validation", batch, rank, num_ranks,
                                                              crops=1)
            for image, label in zip(images.numpy(), labels.numpy())]

  total = info.split("validation").records  # 359: not a multiple of ranks × batch
  seen = [f for rank in range(ranks) for f in fingerprints(rank, ranks, 32)]
  assert len(seen) == total
  assert sorted(seen) == sorted(fingerprints(0, 1, 1000))


def gradient_image(height, width):
  """Channel 0 = row index, channel 1 = column index: bilinear sampling reproduces coordinates exactly."""
  rows, cols = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
  return tf.constant(np.stack([rows, cols, np.zeros_like(rows)], axis=-1))


def test_twelve_crop_geometry():
  """2 scales × (4 corners + center of a size² crop, then the central square): exact windows."""
  height, width, size = 300, 400, 224
  views = input_pipeline.multi_crop(gradient_image(height, width), size, [256, 320]).numpy()
  assert views.shape == (12, size, size, 3)
  expected = []  # (top, left, side) in original pixels
  for shorter_side in (256, 320):
    side = 300 * size / shorter_side  # a size² crop of the image resized to that shorter side
    expected += [(0, 0, side), (0, width - side, side), (height - side, 0, side),
                 (height - side, width - side, side), ((height - side) / 2, (width - side) / 2, side)]
    expected.append((0.0, 50.0, 300.0))  # the central 300×300 square, resized
  for view, (y, x, side) in zip(views, expected):
    np.testing.assert_allclose(view[0, 0, :2], (y, x), atol=1e-2)
    np.testing.assert_allclose(view[-1, -1, :2], (y + side - 1, x + side - 1), atol=1e-2)


def test_twenty_four_crops_add_mirror_images():
  views = input_pipeline.multi_crop(gradient_image(120, 90), 32, [36, 40], flips=True).numpy()
  assert views.shape == (24, 32, 32, 3)
  np.testing.assert_array_equal(views[12:], views[:12, :, ::-1])


def test_multicrop_eval_batches(info, data_config):
  from tfscale.config_base import base_config
  sides = base_config().eval.multicrop_shorter_sides
  images, labels = next(iter(input_pipeline.eval_dataset(info, data_config, "validation", 5, crops=12,
                                                         multicrop_shorter_sides=sides)))
  assert images.shape == (5, 12, 32, 32, 3) and labels.shape == (5,)


def test_cache_in_memory_serves_every_record_each_epoch(info, data_config):
  data_config.cache_in_memory = True
  data_config.shuffle_buffer = 1  # epochs then come out in cache order, so each window is one epoch
  data_config.flip = False
  files = shard_format.files_for_rank(info.split("train").files, 1, 2)[0]
  per_epoch = sum(shard_format.count_records(f) for f in files)
  dataset = input_pipeline.train_dataset(info, data_config, 1, rank=1, num_ranks=2, seed=0, deterministic=True)
  labels = np.concatenate([y.numpy() for _, y in dataset.take(2 * per_epoch)])
  np.testing.assert_array_equal(np.sort(labels[:per_epoch]), np.sort(labels[per_epoch:]))


def test_one_hot_labels_and_synthetic_input(info, data_config):
  _, labels = next(iter(input_pipeline.train_dataset(info, data_config, 4, one_hot=True, seed=0, deterministic=True)))
  assert labels.shape == (4, 10) and np.allclose(labels.numpy().sum(axis=1), 1)
  images, labels = next(iter(input_pipeline.synthetic_dataset(8, 32, 10)))
  assert images.shape == (8, 32, 32, 3) and labels.shape == (8,) and labels.numpy().max() < 10


def test_corrupt_shard_is_located(info, tmp_path):
  broken = tmp_path / "broken-shard"
  data = bytearray(open(info.split("train").files[2], "rb").read())
  data[3000] ^= 0xFF
  broken.write_bytes(bytes(data))
  files = info.split("train").files[:2] + [str(broken)]
  path, message = input_pipeline.locate_corruption(files)
  assert path == str(broken) and "corrupted record" in message


def test_skip_corrupt_keeps_training_going(info, data_config, tmp_path):
  """A copy of the shards with one corrupted: the default fails, skip_corrupt streams on."""
  import shutil
  copy = tmp_path / "shards"
  shutil.copytree(info.data_dir, copy)
  shard = copy / "train-00004-of-00008"
  data = bytearray(shard.read_bytes())
  data[3000] ^= 0xFF
  shard.write_bytes(bytes(data))
  broken = datasets.load(str(copy))
  data_config.shuffle_buffer = 1
  with pytest.raises(tf.errors.DataLossError):
    for _ in input_pipeline.train_dataset(broken, data_config, 64, seed=0, deterministic=True).take(40):
      pass
  data_config.skip_corrupt = True
  batches = sum(1 for _ in input_pipeline.train_dataset(broken, data_config, 64, seed=0, deterministic=True).take(40))
  assert batches == 40


def _intel_caffe_windows(shape, draws, aspect_change=0.75, scale=(0.08, 1.0)):
  window = tf.function(lambda seed: input_pipeline.intel_caffe_crop_window(tf.constant(shape), scale,
                                                                            aspect_change, seed))
  return np.array([[int(v) for v in window(tf.constant([7, k], tf.int64))] for k in range(draws)])


def test_intel_caffe_crop_aspect_range_area_distribution_and_swap():
  """On a 4000×4000 image: the windows' h/w spans r² in [0.5625, 1.778] (swapped half the time), their
  areas follow Caffe's draw-until-it-fits loop, and they stay inside the image."""
  windows = _intel_caffe_windows((4000, 4000, 3), 3000)
  y, x, h, w = windows.T
  assert (y >= 0).all() and (x >= 0).all() and (y + h <= 4000).all() and (x + w <= 4000).all()
  aspect = h / w
  assert aspect.min() >= 0.5625 * 0.995 and aspect.max() <= (4 / 3) ** 2 * 1.005
  assert aspect.min() < 0.6 and aspect.max() > 1.7  # the range is reached, not only 3/4–4/3
  assert 0.45 < np.mean(aspect > 1) < 0.55        # the h/w swap
  area = h * w / 4000 ** 2
  assert area.min() >= 0.079 and area.max() <= 1.0
  # Caffe's loop in NumPy: accepted areas are uniform draws conditioned on fitting (a square image rejects
  # big areas at extreme aspect), so their histogram is the transcription's, not a flat one.
  rng = np.random.default_rng(0)
  a = (rng.integers(0, 921, (200_000, 10)) + 80) / 1000
  r = (rng.integers(0, 584, (200_000, 10)) + 750) / 1000
  fits = (a * r * r <= 1) & (a / (r * r) <= 1)
  first = fits.argmax(axis=1)
  reference = a[np.arange(len(a)), first][fits.any(axis=1)]
  bins = np.linspace(0.08, 1.0, 7)
  observed = np.histogram(area, bins)[0] / len(area)
  expected = np.histogram(reference, bins)[0] / len(reference)
  np.testing.assert_allclose(observed, expected, atol=0.025)
  assert expected[0] > 1.3 * expected[-1]  # the conditioning is visible: not a uniform area


def test_intel_caffe_crop_falls_back_to_a_square_of_the_shorter_side():
  """With every draw too tall for a 10-pixel-high strip, Caffe resizes the shorter side to the crop size and
  crops at random: the window is the 10×10 square at a random position."""
  windows = _intel_caffe_windows((10, 4000, 3), 200, scale=(0.9, 1.0))
  y, x, h, w = windows.T
  assert (h == 10).all() and (w == 10).all() and (y == 0).all()
  assert len(set(x)) > 100 and (x + w <= 4000).all()


def test_intel_caffe_crop_in_the_pipeline(info, data_config):
  data_config.crop, data_config.resize_method = "intel_caffe", "bicubic"
  images, labels = batches(input_pipeline.train_dataset(info, data_config, 8, seed=0, deterministic=True), 1)[0]
  assert images.shape == (8, 32, 32, 3) and images.dtype == np.uint8 and images.max() > 100
  data_config.crop = "nope"
  with pytest.raises(ValueError, match="data.crop"):
    input_pipeline.train_dataset(info, data_config, 8, seed=0, deterministic=True)

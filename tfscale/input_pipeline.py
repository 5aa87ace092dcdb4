"""tf.data input: per-rank shards → parse → fused JPEG decode-and-crop → normalise → batch.

Training crops are decoded only where they fall (`decode_and_crop_jpeg`), never the whole image: on CPU
nodes the pipeline shares cores with the model, so every pixel decoded and thrown away is training
throughput lost. Randomness is stateless, seeded by (seed, rank, element index), so a run is
reproducible and a resumed run sees the same crops an uninterrupted one would have.

Augmentation mode follows the phase plan exactly: element k of a rank's stream trains step
start_step + k // batch, and the plan's per-step `collapse` table decides its crop (random-resized in
'full' phases, fixed-scale random-position in 'collapse' phases). Nothing is rebuilt at a phase change.
"""
import logging

import numpy as np
import tensorflow as tf

from tfscale.datasets import DatasetInfo

# ImageNet channel statistics on the 0..255 scale.
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# (image key, label key) of each record format datasets.DatasetInfo can report.
RECORD_KEYS = {"imagenet": ("image/encoded", "image/class/label"), "tfds": ("image", "label")}


def parse_record(serialized, info: DatasetInfo, shard=None):
  """(jpeg bytes, 0-based int32 label) from a serialized Example; a label outside the classes fails
  the input pipeline with the offending label and, when known, the shard it came from."""
  image_key, label_key = RECORD_KEYS[info.record_format]
  features = tf.io.parse_single_example(serialized, {image_key: tf.io.FixedLenFeature([], tf.string),
                                                     label_key: tf.io.FixedLenFeature([], tf.int64)})
  label = tf.cast(features[label_key], tf.int32) - info.label_offset
  in_range = tf.logical_and(label >= 0, label < info.num_classes)
  where = [] if shard is None else ["in shard", shard]
  with tf.control_dependencies([tf.debugging.Assert(in_range, [
      "label", label + info.label_offset, f"is outside [{info.label_offset}, "
      f"{info.label_offset + info.num_classes}) for label_offset={info.label_offset}", *where])]):
    return tf.identity(features[image_key]), label


def normalize(image):
  return (image - tf.constant(MEAN_RGB, image.dtype)) / tf.constant(STDDEV_RGB, image.dtype)


def _decode_window(image_bytes, offset_y, offset_x, height, width, size):
  window = tf.stack([offset_y, offset_x, height, width])
  image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
  return tf.image.resize(image, [size, size], method="bilinear")


def random_resized_crop(image_bytes, size, scale, ratio, seed):
  """Inception-style crop: area fraction in `scale`, aspect ratio in `ratio`, decoded in place."""
  shape = tf.io.extract_jpeg_shape(image_bytes)
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]), seed=seed,
      min_object_covered=scale[0], aspect_ratio_range=ratio, area_range=scale, max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  return _decode_window(image_bytes, begin[0], begin[1], crop_size[0], crop_size[1], size)


def _square_window(shape, fraction):
  side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * fraction, tf.int32)
  return tf.maximum(side, 1)


def fixed_scale_crop(image_bytes, size, fraction, seed):
  """Collapse-mode crop: a square of `fraction` × the shorter side at a random position, no scale jitter."""
  shape = tf.io.extract_jpeg_shape(image_bytes)
  side = _square_window(shape, fraction)
  u = tf.random.stateless_uniform([2], seed=seed)
  offset_y = tf.cast(u[0] * tf.cast(shape[0] - side + 1, tf.float32), tf.int32)
  offset_x = tf.cast(u[1] * tf.cast(shape[1] - side + 1, tf.float32), tf.int32)
  return _decode_window(image_bytes, tf.minimum(offset_y, shape[0] - side),
                        tf.minimum(offset_x, shape[1] - side), side, side, size)


def center_crop(image_bytes, size, fraction):
  """Evaluation crop: the central square of `fraction` × the shorter side, resized to size²
  (the same pixels as resizing the shorter side to size/fraction and cutting the central size²)."""
  shape = tf.io.extract_jpeg_shape(image_bytes)
  side = _square_window(shape, fraction)
  return _decode_window(image_bytes, (shape[0] - side) // 2, (shape[1] - side) // 2, side, side, size)


def _rank_files(files, rank, num_ranks):
  """Disjoint shard files per rank; with fewer files than ranks, every rank reads all and shards records."""
  if len(files) >= num_ranks:
    return files[rank::num_ranks], False
  logging.warning("%d shard files for %d ranks: sharding by record instead of by file (slower start-up)",
                  len(files), num_ranks)
  return files, True


def _options(deterministic: bool, threads: int):
  options = tf.data.Options()
  options.deterministic = deterministic
  if threads:
    options.threading.private_threadpool_size = threads
  options.experimental_optimization.map_parallelization = True
  # With tf.data's autotuner on, destroying the training iterator at the end of `fit` stalled rank 0
  # for ≈ 40 s in 3 of 5 two-rank demo runs (main thread waiting on a tf.data logical thread, every
  # thread idle); with it off, 0 of 4. Parallelism then defaults to the cores this process may use.
  options.autotune.enabled = False
  return options


def train_dataset(info: DatasetInfo, data_config, batch_size: int, rank: int = 0, num_ranks: int = 1,
                  collapse=None, start_step: int = 0, seed: int = 0, deterministic: bool = False):
  """An endless stream of (images, labels) batches for this rank, `batch_size` images each.

  `collapse` is the plan's per-step boolean table (None: 'full' augmentation throughout).
  """
  files, shard_records = _rank_files(info.split("train").files, rank, num_ranks)
  files_ds = tf.data.Dataset.from_tensor_slices(files)
  if not shard_records:
    # A new file order every epoch, the same on every run.
    files_ds = files_ds.shuffle(len(files), seed=seed + rank, reshuffle_each_iteration=True)
  files_ds = files_ds.repeat()
  # Each record travels with its shard's name, so a bad label can say where it came from.
  records = files_ds.interleave(
      lambda shard: tf.data.TFRecordDataset(shard).map(lambda record: (record, shard)),
      cycle_length=min(len(files), data_config.interleave_files),
      block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  if shard_records:
    records = records.shard(num_ranks, rank)
  records = records.shuffle(data_config.shuffle_buffer, seed=seed + 7919 * rank, reshuffle_each_iteration=True)

  collapse_table = tf.constant(np.asarray(collapse if collapse is not None else [False], bool))
  size = data_config.image_size
  scale, ratio = tuple(data_config.scale), tuple(data_config.ratio)

  def preprocess(index, record):
    serialized, shard = record
    image_bytes, label = parse_record(serialized, info, shard)
    step = tf.minimum(start_step + index // batch_size, tf.cast(tf.size(collapse_table), tf.int64) - 1)
    element_seed = tf.stack([tf.cast(seed * 65536 + rank, tf.int64), start_step * batch_size + index])
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
    image = tf.cond(
        collapse_table[step],
        lambda: fixed_scale_crop(image_bytes, size, data_config.collapse_crop_fraction, crop_seed),
        lambda: random_resized_crop(image_bytes, size, scale, ratio, crop_seed))
    if data_config.flip:
      image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return normalize(image), label

  dataset = records.enumerate().map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(data_config.prefetch_batches)
  return dataset.with_options(_options(deterministic, data_config.threads))


def eval_dataset(info: DatasetInfo, data_config, split: str, batch_size: int, rank: int = 0, num_ranks: int = 1):
  """This rank's share of a split, center-cropped, in order, every record exactly once over all ranks.

  Records are dealt round-robin (record i to rank i mod N), so ranks differ by at most one image and
  nothing is dropped or repeated; the last batch may be short.
  """
  files = info.split(split).files
  records = tf.data.TFRecordDataset(files, num_parallel_reads=1).shard(num_ranks, rank)
  size, fraction = data_config.image_size, data_config.eval_crop_fraction

  def preprocess(serialized):
    image_bytes, label = parse_record(serialized, info)
    return normalize(center_crop(image_bytes, size, fraction)), label

  dataset = records.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  dataset = dataset.batch(batch_size).prefetch(data_config.prefetch_batches)
  return dataset.with_options(_options(True, data_config.threads))

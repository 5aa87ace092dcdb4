"""tf.data input: per-rank shards → parse → fused JPEG decode-and-crop → uint8 batches.

Training crops are decoded only where they fall (`decode_and_crop_jpeg`), never the whole image: on CPU
nodes the pipeline shares cores with the model, so every pixel decoded and thrown away is training
throughput lost. Randomness is stateless, seeded by (seed, rank, element index), so a run is
reproducible and a resumed run sees the same crops an uninterrupted one would have.

Images leave the pipeline as uint8 and the model normalises them (its first layer): per-pixel float
arithmetic in tf.data runs one image at a time, and normalising there cut the pipeline's throughput by
a third on ImageNet-sized JPEGs, while in the model it is one vectorised op per batch (and uint8
batches are 4× less memory to batch and prefetch).

Augmentation mode follows the phase plan exactly: element k of a rank's stream trains step
start_step + k // batch, and the plan's per-step `collapse` table decides its crop (random-resized in
'full' phases, fixed-scale random-position in 'collapse' phases). Nothing is rebuilt at a phase change.
"""
import logging
import os

import numpy as np
import tensorflow as tf

from data_prep.shard_format import RECORD_KEYS, files_for_rank
from tfscale.config_base import ConfigError, check_views
from tfscale.datasets import DataError, DatasetInfo


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


def to_uint8(image):
  """Resized pixels (float32 in 0..255) as uint8, the pipeline's output type."""
  return tf.cast(image, tf.uint8)


def _resize(image, size, method="bilinear"):
  image = tf.image.resize(image, [size, size], method=method)
  # Bicubic overshoots 0..255 at edges and the uint8 cast would wrap; bilinear cannot overshoot.
  return image if method == "bilinear" else tf.clip_by_value(image, 0.0, 255.0)


def _decode_window(image_bytes, offset_y, offset_x, height, width, size, method="bilinear"):
  window = tf.stack([offset_y, offset_x, height, width])
  return _resize(tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3), size, method)


def sample_crop(shape, scale, ratio, seed):
  """(begin, size) of an Inception-style window: area fraction in `scale`, aspect ratio in `ratio`."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]), seed=seed,
      min_object_covered=scale[0], aspect_ratio_range=ratio, area_range=scale, max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  return begin, size


def random_resized_crop(image_bytes, size, scale, ratio, seed, method="bilinear"):
  """Inception-style crop, decoded in place: only the window's pixels are decoded."""
  begin, crop_size = sample_crop(tf.io.extract_jpeg_shape(image_bytes), scale, ratio, seed)
  return _decode_window(image_bytes, begin[0], begin[1], crop_size[0], crop_size[1], size, method)


TRAINING_CROPS = ("inception", "intel_caffe")
INTEL_CAFFE_ATTEMPTS = 10  # RandomAspectRatioParameter.max_attempt's default; the seed prototxts keep it


def _caffe_rand_ratio(low, high, uniform):
  """Intel Caffe's RandRatio: an integer draw on a 0.001 grid, (rand(int((high − low)·1000 + 1)) + low·1000)/1000."""
  choices = float(int((high - low) * 1000 + 1))
  return (tf.floor(uniform * choices) + low * 1000) / 1000


def intel_caffe_crop_window(shape, scale, aspect_change, seed):
  """(offset_y, offset_x, height, width) of Intel Caffe's random_aspect_ratio crop (data_transformer.cpp,
  sara-nl/caffe): up to 10 attempts of area fraction A uniform in `scale` and r uniform in
  [aspect_change, 1/aspect_change], h = int(√(A·H·W)·r), w = int(√(A·H·W)/r), swapped with probability
  500/1001; the first that fits, at a uniform offset. If none fits, Caffe resizes the shorter side to the
  crop size and crops at random: here the equivalent square of the shorter side at a random offset."""
  height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  u = tf.random.stateless_uniform([5, INTEL_CAFFE_ATTEMPTS], seed=seed)
  area = _caffe_rand_ratio(scale[0], scale[1], u[0]) * height * width
  r = _caffe_rand_ratio(aspect_change, 1 / aspect_change, u[1])
  new_h, new_w = tf.floor(tf.sqrt(area) * r), tf.floor(tf.sqrt(area) / r)
  swap = _caffe_rand_ratio(0.0, 1.0, u[2]) < 0.5
  new_h, new_w = tf.where(swap, new_w, new_h), tf.where(swap, new_h, new_w)
  fits = (new_h <= height) & (new_w <= width) & (new_h >= 1) & (new_w >= 1)
  first = tf.argmax(tf.cast(fits, tf.int32))
  shorter = tf.minimum(height, width)
  found = tf.reduce_any(fits)
  crop_h = tf.where(found, new_h[first], shorter)
  crop_w = tf.where(found, new_w[first], shorter)
  # rand(n) draws an integer in [0, n): the offset is uniform over every position that fits.
  offset_y = tf.floor(u[3, first] * (height - crop_h + 1))
  offset_x = tf.floor(u[4, first] * (width - crop_w + 1))
  return [tf.cast(v, tf.int32) for v in (offset_y, offset_x, crop_h, crop_w)]


def intel_caffe_crop(image_bytes, size, scale, aspect_change, seed, method="bicubic"):
  """Intel Caffe's random_aspect_ratio crop, decoded in place and resized to size² (the seed prototxts
  resize with CUBIC)."""
  window = intel_caffe_crop_window(tf.io.extract_jpeg_shape(image_bytes), scale, aspect_change, seed)
  return _decode_window(image_bytes, *window, size, method)


def _square_window(shape, fraction):
  side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * fraction, tf.int32)
  return tf.maximum(side, 1)


def fixed_scale_crop(image_bytes, size, fraction, seed, method="bilinear"):
  """Collapse-mode crop: a square of `fraction` × the shorter side at a random position, no scale jitter."""
  shape = tf.io.extract_jpeg_shape(image_bytes)
  side = _square_window(shape, fraction)
  u = tf.random.stateless_uniform([2], seed=seed)
  offset_y = tf.cast(u[0] * tf.cast(shape[0] - side + 1, tf.float32), tf.int32)
  offset_x = tf.cast(u[1] * tf.cast(shape[1] - side + 1, tf.float32), tf.int32)
  return _decode_window(image_bytes, tf.minimum(offset_y, shape[0] - side),
                        tf.minimum(offset_x, shape[1] - side), side, side, size, method)


def _center_window(shape, fraction):
  side = _square_window(shape, fraction)
  return (shape[0] - side) // 2, (shape[1] - side) // 2, side


def center_crop(image_bytes, size, fraction, method="bilinear"):
  """Evaluation crop: the central square of `fraction` × the shorter side, resized to size² — the same
  pixels as resizing the shorter side to size/fraction and cutting the central size², decoded in place."""
  offset_y, offset_x, side = _center_window(tf.io.extract_jpeg_shape(image_bytes), fraction)
  return _decode_window(image_bytes, offset_y, offset_x, side, side, size, method)


def center_crop_decoded(image, size, fraction, method="bilinear"):
  """center_crop of an already decoded image (formats other than JPEG)."""
  offset_y, offset_x, side = _center_window(tf.shape(image), fraction)
  return _resize(image[offset_y:offset_y + side, offset_x:offset_x + side], size, method)


def multi_crop_boxes(height, width, size, shorter_sides):
  """Normalised (y1, x1, y2, x2) boxes of the multi-crop views, 6 per scale.

  For each scale the image is (conceptually) resized so its shorter side is `shorter_side` pixels; the
  views are its 4 corner and its center size×size crops, then its central square resized to size×size.
  Box edges sit on pixel centres, as `tf.image.crop_and_resize` samples them.
  """
  h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  shorter = tf.minimum(h, w)
  boxes = []
  for shorter_side in shorter_sides:
    side = shorter * (size / shorter_side)  # a size×size crop of the resized image, in original pixels
    for y, x in ((0.0, 0.0), (0.0, w - side), (h - side, 0.0), (h - side, w - side),
                 ((h - side) / 2, (w - side) / 2)):
      boxes.append((y, x, side))
    boxes.append(((h - shorter) / 2, (w - shorter) / 2, shorter))
  return tf.stack([tf.stack([y / (h - 1), x / (w - 1), (y + s - 1) / (h - 1), (x + s - 1) / (w - 1)])
                   for y, x, s in boxes])


def multi_crop(image, size, shorter_sides, flips=False):
  """(views, size, size, 3) from one decoded image: 6 views per scale, then their mirror images if `flips`."""
  shape = tf.shape(image)
  boxes = multi_crop_boxes(shape[0], shape[1], size, shorter_sides)
  views = tf.image.crop_and_resize(tf.cast(image, tf.float32)[None], boxes, tf.zeros([tf.shape(boxes)[0]], tf.int32),
                                   [size, size], method="bilinear")
  if flips:
    views = tf.concat([views, tf.image.flip_left_right(views)], axis=0)
  return views


# A rank's model already uses every core it has; the pipeline needs a sliver (ResNet-50 at 100 img/s is
# ≈ 0.16 core of JPEG decoding, one thread decodes ≈ 600 img/s), and every pipeline thread that runs
# preempts a oneDNN thread the op then waits for. So the default pool is one thread per 16 cores.
# Measured on 2 cores (docs/BENCHMARKS.md): fp32 ResNet-50 real ÷ synthetic 0.967 with TF's default pool,
# 1.006 and 0.968 in two runs with a pool of one: no loss from the smaller pool, no clear gain either.
CORES_PER_PIPELINE_THREAD = 16


def pipeline_threads(data_config) -> int:
  """tf.data's private pool size: data.threads, or one thread per 16 cores this process may use."""
  return data_config.threads or max(1, len(os.sched_getaffinity(0)) // CORES_PER_PIPELINE_THREAD)


def _options(deterministic: bool, threads: int):
  options = tf.data.Options()
  options.deterministic = deterministic
  options.threading.private_threadpool_size = threads
  options.experimental_optimization.map_parallelization = True
  # With tf.data's autotuner on, destroying the training iterator at the end of `fit` stalled rank 0
  # for ≈ 40 s in 3 of 5 two-rank demo runs (main thread waiting on a tf.data logical thread, every
  # thread idle); with it off, 0 of 4. Parallelism is then what pipeline_threads says.
  options.autotune.enabled = False
  return options


def _parallelism(data_config) -> int:
  return data_config.map_parallelism or pipeline_threads(data_config)


def _records(files, data_config, shard_records, rank, num_ranks, deterministic, shuffle_files_seed=None):
  """Records of these files, each paired with its shard's name (so errors can say where they came from)."""
  missing = [f for f in files if not os.path.exists(f)]
  if missing:  # e.g. a node-local copy staged for other ranks
    raise DataError(f"rank {rank}: {len(missing)} of the shards it reads are missing, e.g. {missing[0]}")
  files_ds = tf.data.Dataset.from_tensor_slices(files)
  if shuffle_files_seed is not None:
    files_ds = files_ds.shuffle(len(files), seed=shuffle_files_seed, reshuffle_each_iteration=True)

  def read(shard):
    records = tf.data.TFRecordDataset(shard)
    if data_config.skip_corrupt:
      # A corrupt record ends its shard's reading for this pass; TF logs each one as
      # "Error raised with error message corrupted record at <byte>".
      records = records.ignore_errors(log_warning=True)
    return records.map(lambda record: (record, shard))

  records = files_ds.interleave(read, cycle_length=min(len(files), data_config.interleave_files), block_length=1,
                                num_parallel_calls=min(len(files), data_config.interleave_files),
                                deterministic=deterministic)
  return records.shard(num_ranks, rank) if shard_records else records


def train_records(info: DatasetInfo, data_config, rank: int = 0, num_ranks: int = 1, *, seed: int,
                  deterministic: bool):
  """This rank's endless, shuffled stream of (serialized record, shard name)."""
  files, shard_records = files_for_rank(info.split("train").files, rank, num_ranks)
  if shard_records:
    logging.warning("%d shard files for %d ranks: every rank reads every file and keeps 1/%d of the records",
                    len(files), num_ranks, num_ranks)
  if data_config.cache_in_memory:
    # The rank's serialized records stay in RAM after the first pass (the paper kept ImageNet-1K in
    # memory); file order is then fixed, so the record shuffle buffer alone randomises later epochs.
    records = _records(files, data_config, shard_records, rank, num_ranks, True).cache().repeat()
  else:
    # A new file order every epoch, the same on every run.
    records = _records(files, data_config, shard_records, rank, num_ranks, deterministic,
                       None if shard_records else seed + rank).repeat()
  return records.shuffle(data_config.shuffle_buffer, seed=seed + 7919 * rank, reshuffle_each_iteration=True)


# tf.image.resize's methods, by the names data.resize_method takes.
RESIZE_METHODS = ("area", "bicubic", "bilinear", "gaussian", "lanczos3", "lanczos5", "mitchellcubic", "nearest")


def check_data_config(data_config):
  """A one-line ConfigError unless data.crop and data.resize_method name what this pipeline has."""
  if data_config.crop not in TRAINING_CROPS:
    raise ConfigError(f"data.crop must be one of {TRAINING_CROPS}, got {data_config.crop!r}")
  if data_config.resize_method not in RESIZE_METHODS:
    raise ConfigError(f"data.resize_method must be one of {RESIZE_METHODS}, got {data_config.resize_method!r}")


def _training_crop(data_config):
  """crop(image_bytes, seed) → float32 image_size² of 'full' phases, as data.crop names it."""
  check_data_config(data_config)
  size, method = data_config.image_size, data_config.resize_method
  scale, ratio = tuple(data_config.scale), tuple(data_config.ratio)
  if data_config.crop == "intel_caffe":
    return lambda image_bytes, seed: intel_caffe_crop(image_bytes, size, scale, ratio[0], seed, method)
  return lambda image_bytes, seed: random_resized_crop(image_bytes, size, scale, ratio, seed, method)


def train_dataset(info: DatasetInfo, data_config, batch_size: int, rank: int = 0, num_ranks: int = 1, *,
                  seed: int, deterministic: bool, collapse=None, start_step: int = 0, one_hot: bool = False):
  """An endless stream of (images, labels) batches for this rank, `batch_size` images each.

  `collapse` is the plan's per-step boolean table (None: 'full' augmentation throughout); `one_hot`
  gives float one-hot labels (label smoothing needs them).
  """
  records = train_records(info, data_config, rank, num_ranks, seed=seed, deterministic=deterministic)
  collapse_table = tf.constant(np.asarray(collapse if collapse is not None else [False], bool))
  size, method = data_config.image_size, data_config.resize_method
  crop = _training_crop(data_config)

  def preprocess(index, record):
    serialized, shard = record
    image_bytes, label = parse_record(serialized, info, shard)
    step = tf.minimum(start_step + index // batch_size, tf.cast(tf.size(collapse_table), tf.int64) - 1)
    element_seed = tf.stack([tf.cast(seed * 65536 + rank, tf.int64), start_step * batch_size + index])
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
    image = tf.cond(
        collapse_table[step],
        lambda: fixed_scale_crop(image_bytes, size, data_config.collapse_crop_fraction, crop_seed, method),
        lambda: crop(image_bytes, crop_seed))
    image = to_uint8(image)
    if data_config.flip:
      image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if one_hot:
      label = tf.one_hot(label, info.num_classes)
    return image, label

  dataset = records.enumerate().map(preprocess, num_parallel_calls=_parallelism(data_config),
                                    deterministic=deterministic)
  return batches(dataset, data_config, batch_size, deterministic)


def batches(dataset, data_config, batch_size: int, deterministic: bool):
  """Full batches of preprocessed training elements, prefetched, with the pipeline's threading options."""
  if data_config.skip_corrupt:
    dataset = dataset.ignore_errors(log_warning=True)  # records whose JPEG does not decode
  dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(data_config.prefetch_batches)
  return dataset.with_options(_options(deterministic, pipeline_threads(data_config)))


def eval_dataset(info: DatasetInfo, data_config, split: str, batch_size: int, rank: int = 0, num_ranks: int = 1, *,
                 crops: int, multicrop_shorter_sides=None):
  """This rank's share of a split, in order; over all ranks every record is seen exactly once.

  Shard files are dealt to ranks like training's (records round-robin when files < ranks), so ranks
  may differ in count; nothing is dropped, padded or repeated, and the last batch may be short.
  Accuracy is exact because ranks sum correct counts, not per-batch means. crops=1 yields
  (batch, H, W, 3) center crops; crops=12 (2 scales × 6 views) or 24 (with mirror images) yields
  (batch, crops, H, W, 3) for averaging probabilities over views.
  """
  files, shard_records = files_for_rank(info.split(split).files, rank, num_ranks)
  records = _records(files, data_config, shard_records, rank, num_ranks, True)
  size, fraction = data_config.image_size, data_config.eval_crop_fraction
  check_views(crops)  # config_base's
  if crops > 1 and not multicrop_shorter_sides:
    raise ConfigError("multi-crop needs its two shorter-side scales (config.eval.multicrop_shorter_sides)")
  sides = [s * size for s in multicrop_shorter_sides or ()]

  def preprocess(serialized, shard):
    image_bytes, label = parse_record(serialized, info, shard)
    if crops == 1:
      return to_uint8(center_crop(image_bytes, size, fraction, data_config.resize_method)), label
    views = multi_crop(tf.io.decode_jpeg(image_bytes, channels=3), size, sides, flips=crops == 24)
    return to_uint8(views), label

  dataset = records.map(preprocess, num_parallel_calls=_parallelism(data_config), deterministic=True)
  dataset = dataset.batch(batch_size).prefetch(data_config.prefetch_batches)
  return dataset.with_options(_options(True, pipeline_threads(data_config)))


def synthetic_dataset(batch_size: int, image_size: int, num_classes: int, one_hot: bool = False, seed: int = 0):
  """Random images and labels, generated once and repeated: the model alone, no input cost."""
  images = tf.random.stateless_uniform([batch_size, image_size, image_size, 3], seed=[seed, 1], maxval=256,
                                       dtype=tf.int32)
  images = tf.cast(images, tf.uint8)
  labels = tf.random.stateless_uniform([batch_size], seed=[seed, 2], maxval=num_classes, dtype=tf.int32)
  if one_hot:
    labels = tf.one_hot(labels, num_classes)
  return tf.data.Dataset.from_tensors((images, labels)).repeat()


def locate_corruption(files):
  """(file, TF's message) of the first shard among `files` that does not read cleanly, or None.

  TFRecordDataset's DataLossError does not name the file; on such an error the trainer asks this."""
  for path in files:
    try:
      for _ in tf.data.TFRecordDataset(path):
        pass
    except tf.errors.DataLossError as e:
      return path, e.message.split("}}")[-1].split("[Op:")[0].strip()
  return None

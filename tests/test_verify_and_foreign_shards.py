"""data_prep.verify, and the input pipeline on shards other converters wrote (classic 1-based, TFDS)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_module
from data_prep import shard_format

IMAGE_KEY, LABEL_KEY = shard_format.RECORD_KEYS["imagenet"]


@pytest.fixture
def shard_copy(digits_shards, tmp_path):
  copy = tmp_path / "shards"
  shutil.copytree(digits_shards, copy)
  return copy


@pytest.fixture(scope="module")
def classic_shards(digits_raw, tmp_path_factory):
  """What the classic converters leave: 1-based labels, <split>-NNNNN-of-MMMMM files, no manifest."""
  out = tmp_path_factory.mktemp("classic")
  run_module("data_prep.imagenet1k", f"--raw_dir={digits_raw}", f"--output_dir={out}", "--train_shards=4",
             "--val_shards=2", "--label_offset=1")
  os.remove(out / shard_format.MANIFEST)
  shutil.rmtree(out / ".shards")
  return out


def test_verify_passes_good_shards_and_writes_indexes(shard_copy):
  result = run_module("data_prep.verify", str(shard_copy), "--write_index", "--decode_every=1")
  assert "ok: train 1438 records in 8 shards, validation 359 records in 3 shards; 1797 images decoded" in result.stdout
  # The index is the format the tfrecord package reads (in a subprocess: tfrecord and TF can't share one).
  shard = str(shard_copy / "train-00000-of-00008")
  read = run_module("tfrecord.reader", check=False)  # importable?
  assert read.returncode == 0, read.stderr
  count = subprocess.run([sys.executable, "-c", (
      "from tfrecord.reader import tfrecord_loader; import sys; "
      f"print(sum(1 for _ in tfrecord_loader({shard!r}, {shard + '.index'!r}, {{{LABEL_KEY!r}: 'int'}}, "
      "shard=(1, 3))))")], capture_output=True, text=True, check=True).stdout
  assert int(count) == 60  # the second of three index-based shards of 180 records


def test_verify_catches_a_flipped_byte(shard_copy):
  shard = shard_copy / "train-00003-of-00008"
  data = bytearray(shard.read_bytes())
  data[5000] ^= 0xFF
  shard.write_bytes(bytes(data))
  result = run_module("data_prep.verify", str(shard_copy), check=False)
  assert result.returncode == 1
  assert "train-00003-of-00008: bad data CRC" in result.stderr


def test_verify_catches_count_and_label_mismatches(shard_copy):
  manifest = shard_format.read_manifest(str(shard_copy))
  manifest["splits"]["train"]["shards"][0]["records"] += 1
  manifest["num_classes"] = 9  # digit 9 is now out of range
  shard_format.write_manifest(str(shard_copy), manifest)
  result = run_module("data_prep.verify", str(shard_copy), check=False)
  assert result.returncode == 1
  assert "train-00000-of-00008: 180 records, manifest.json says 181" in result.stderr
  assert "labels 0..9 outside 0..8" in result.stderr


def test_verify_writes_a_manifest_for_classic_shards(classic_shards, tmp_path):
  copy = tmp_path / "classic"
  shutil.copytree(classic_shards, copy)
  refused = run_module("data_prep.verify", str(copy), "--write_manifest", check=False)
  assert refused.returncode != 0 and "labels seen: 1..10" in refused.stderr
  run_module("data_prep.verify", str(copy), "--write_manifest", "--label_offset=1", "--num_classes=10")
  from tfscale import datasets
  info = datasets.load(str(copy))
  assert (info.label_offset, info.num_classes, info.split("train").records) == (1, 10, 1438)


def test_classic_shards_need_the_label_offset(classic_shards):
  from tfscale import datasets
  with pytest.raises(datasets.DataError, match="ambiguous"):
    datasets.load(str(classic_shards))
  info = datasets.load(str(classic_shards), label_offset=1, num_classes=10)
  assert info.split("train").records == 1438 and info.split("validation").records == 359


def test_pipeline_reads_classic_shards_with_the_offset(classic_shards):
  import tfscale  # noqa: F401
  from configs.demo_digits import get_config
  from tfscale import datasets, input_pipeline
  config = get_config().data
  info = datasets.load(str(classic_shards), label_offset=1, num_classes=10)
  labels = np.concatenate([y.numpy() for _, y in input_pipeline.eval_dataset(info, config, "validation", 64, crops=1)])
  assert len(labels) == 359 and labels.min() == 0 and labels.max() == 9


def test_wrong_offset_fails_naming_the_shard(classic_shards):
  import tfscale  # noqa: F401
  import tensorflow as tf
  from configs.demo_digits import get_config
  from tfscale import datasets, input_pipeline
  info = datasets.load(str(classic_shards), label_offset=0, num_classes=10)  # labels really are 1..10
  dataset = input_pipeline.train_dataset(info, get_config().data, 64, seed=0, deterministic=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"is outside \[0, 10\)(.|\n)*train-0000\d-of-00004"):
    for _ in dataset.take(100):
      pass


def test_pipeline_reads_tfds_imagenet2012_layout(digits_shards, tmp_path):
  """TFDS's layout: <name>-<split>.tfrecord-NNNNN-of-MMMMM, keys image/label, dataset_info.json."""
  import tfscale  # noqa: F401
  import tensorflow as tf
  from configs.demo_digits import get_config
  from tfscale import datasets, input_pipeline
  source = datasets.load(str(digits_shards))
  tfds_image, tfds_label = shard_format.RECORD_KEYS["tfds"]
  out = tmp_path / "imagenet2012" / "5.1.0"
  os.makedirs(out)
  splits = []
  for split, tfds_split in (("train", "train"), ("validation", "validation")):
    lengths = []
    files = source.split(split).files[:2]
    for i, path in enumerate(files):
      name = out / f"imagenet2012-{tfds_split}.tfrecord-{i:05d}-of-{len(files):05d}"
      with tf.io.TFRecordWriter(str(name)) as writer:
        n = 0
        for record in tf.data.TFRecordDataset(path):
          parsed = tf.io.parse_single_example(record, {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
                                                       LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)})
          example = tf.train.Example(features=tf.train.Features(feature={
              tfds_image: tf.train.Feature(bytes_list=tf.train.BytesList(value=[parsed[IMAGE_KEY].numpy()])),
              tfds_label: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(parsed[LABEL_KEY])])),
          }))
          writer.write(example.SerializeToString())
          n += 1
      lengths.append(str(n))
    splits.append({"name": tfds_split, "shardLengths": lengths})
  (out / shard_format.TFDS_INFO).write_text(json.dumps({"name": "imagenet2012", "splits": splits}))
  (out / "label.labels.txt").write_text("".join(f"n9000000{d}\n" for d in range(10)))

  info = datasets.load(str(out))
  assert (info.record_format, info.num_classes, info.label_offset) == ("tfds", 10, 0)
  config = get_config().data
  images, labels = next(iter(input_pipeline.train_dataset(info, config, 16, seed=0, deterministic=True)))
  assert images.shape == (16, 32, 32, 3) and 0 <= labels.numpy().min() and labels.numpy().max() < 10
  counted = sum(len(y) for _, y in input_pipeline.eval_dataset(info, config, "validation", 50, crops=1))
  assert counted == info.split("validation").records
  with pytest.raises(datasets.DataError, match="num_classes=10, the config says 1000"):
    datasets.load(str(out), num_classes=1000)

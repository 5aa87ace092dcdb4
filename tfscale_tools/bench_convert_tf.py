r"""Benchmark baseline only: the classic single-process TensorFlow converter loop (read, tf.io.decode_jpeg to
validate and measure, tf.train.Example, tf.io.TFRecordWriter), over the same files and shard count as
tfscale_tools.bench_convert gives it. The one module under data_prep/ that imports TensorFlow; never used for real data.

  python -m tfscale_tools.bench_convert_tf LIST_FILE OUTPUT_DIR NUM_SHARDS   # prints {"seconds": …, "images": …}
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from data_prep import shard_format  # noqa: E402


def to_feature(value, kind):
  """shard_format's (value, kind) as the tf.train.Feature the classic converters build."""
  if kind == "int":
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def main(list_file, output_dir, num_shards):
  with open(list_file) as f:
    entries = [line.rstrip("\n").split("\t") for line in f if line.strip()]
  os.makedirs(output_dir, exist_ok=True)
  start = time.perf_counter()
  per_shard = -(-len(entries) // num_shards)
  for shard in range(num_shards):
    name = os.path.join(output_dir, shard_format.shard_name("train", shard, num_shards))
    with tf.io.TFRecordWriter(name) as writer:
      for path, label, synset in entries[shard * per_shard:(shard + 1) * per_shard]:
        data = tf.io.read_file(path)
        height, width, channels = tf.io.decode_jpeg(data, channels=3).shape
        # The classic loop's fields (no text or colorspace), under shard_format's keys.
        record = shard_format.imagenet_record(
            image=data.numpy(), format=b"JPEG", label=int(label), synset=synset.encode(), height=height, width=width,
            channels=channels, filename=os.path.basename(path).encode())
        feature = {key: to_feature(value, kind) for key, (value, kind) in record.items()}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
  print(json.dumps({"seconds": time.perf_counter() - start, "images": len(entries)}))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], int(sys.argv[3]))

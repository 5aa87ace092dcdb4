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


def main(list_file, output_dir, num_shards):
  with open(list_file) as f:
    entries = [line.rstrip("\n").split("\t") for line in f if line.strip()]
  os.makedirs(output_dir, exist_ok=True)
  start = time.perf_counter()
  per_shard = -(-len(entries) // num_shards)
  for shard in range(num_shards):
    name = os.path.join(output_dir, f"train-{shard:05d}-of-{num_shards:05d}")
    with tf.io.TFRecordWriter(name) as writer:
      for path, label, synset in entries[shard * per_shard:(shard + 1) * per_shard]:
        data = tf.io.read_file(path)
        height, width, channels = tf.io.decode_jpeg(data, channels=3).shape
        feature = {
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data.numpy()])),
            "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"JPEG"])),
            "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            "image/class/synset": tf.train.Feature(bytes_list=tf.train.BytesList(value=[synset.encode()])),
            "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
            "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
            "image/channels": tf.train.Feature(int64_list=tf.train.Int64List(value=[channels])),
            "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[os.path.basename(path).encode()])),
        }
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
  print(json.dumps({"seconds": time.perf_counter() - start, "images": len(entries)}))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], int(sys.argv[3]))

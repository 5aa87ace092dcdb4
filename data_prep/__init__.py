"""Raw image datasets to sharded TFRecords, without TensorFlow (writers use the `tfrecord` package)."""

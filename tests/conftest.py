"""Shared fixtures: the digits JPEG tree and its shards, built once per test session in subprocesses
(the converter must never share a process with TensorFlow, which the test process imports)."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # configs/ is a directory of recipe files, not an installed package


def run_module(*args, check=True, timeout=600, env=None):
  """`python -m …` from the repo root; returns the CompletedProcess (text output)."""
  result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)
  if check and result.returncode != 0:
    raise AssertionError(f"python -m {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
  return result


@pytest.fixture(scope="session")
def digits_raw(tmp_path_factory):
  raw = tmp_path_factory.mktemp("digits") / "raw"
  run_module("data_prep.digits", f"--output_dir={raw}")
  return raw


@pytest.fixture(scope="session")
def digits_shards(digits_raw, tmp_path_factory):
  out = tmp_path_factory.mktemp("digits_shards")
  run_module("data_prep.imagenet1k", f"--raw_dir={digits_raw}", f"--output_dir={out}", "--train_shards=8",
             "--val_shards=3", "--num_workers=2")
  return out


def read_with_tensorflow(path):
  """Every record of a shard, parsed by TensorFlow's own parser (the test process may import TF), as
  {field: tensor} with shard_format.IMAGENET_FIELDS' names ("image", "label", "synset", …)."""
  import tfscale  # noqa: F401
  import tensorflow as tf
  from data_prep.shard_format import IMAGENET_FIELDS
  spec = {key: tf.io.FixedLenFeature([], tf.string if kind == "byte" else tf.int64)
          for key, kind in IMAGENET_FIELDS.values()}
  return [{field: parsed[key] for field, (key, _) in IMAGENET_FIELDS.items()}
          for parsed in (tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(str(path)))]

"""What a shard directory holds (no TensorFlow here: the CLI checks it before anything heavy starts).

Three kinds of directory are understood:
  * tfscale's own (`manifest.json` from data_prep, or written by `data_prep.verify --write_manifest`);
  * TFDS `imagenet2012`-style (`dataset_info.json`, files `<name>-<split>.tfrecord-NNNNN-of-MMMMM`, keys
    `image`/`label`, 0-based labels);
  * classic converter shards without a manifest (`train-NNNNN-of-01024`, usually 1-based labels): record
    counts are read from the record headers, and the label offset and class count must come from the
    config, because the files cannot say which convention they follow.
"""
import dataclasses
import glob
import json
import os
import re
from typing import List, Optional

from data_prep import shard_format


class DataError(ValueError):
  """A data directory that cannot be trained or evaluated on; the message says why in one line."""


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  name: str
  files: List[str]        # absolute shard paths, in order
  records: int


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  data_dir: str
  name: str
  num_classes: int
  label_offset: int
  splits: dict            # split name → SplitInfo
  record_format: str = "imagenet"   # a key of shard_format.RECORD_KEYS: "imagenet" or "tfds"

  def split(self, name: str) -> SplitInfo:
    if name not in self.splits:
      raise DataError(f"{self.data_dir}: no split {name!r} (has {', '.join(sorted(self.splits))})")
    return self.splits[name]


# Training images of the datasets the recipes target, by class count (the planner and the recipe printer use
# them when no data is at hand).
PUBLISHED_TRAIN_IMAGES = {
    1000: 1_281_167,     # ILSVRC2012
    365: 1_803_460,      # Places365-Standard
    21841: 11_207_728,   # fall11_whole (14,197,122) minus data_prep.imagenet22k's default 2/9.5 held out
}


def world_size_from_environment() -> int:
  """The rank count a launcher announced (horovodrun, mpirun, srun), before Horovod is even imported."""
  for name in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"):
    if os.environ.get(name, "").isdigit():
      return int(os.environ[name])
  return 1


def check_rank_sharding(info: "DatasetInfo", split: str, num_ranks: int, record_sharding_fallback: bool):
  """Fewer shard files than ranks is an error unless the config allows record-level sharding (slower:
  every rank reads every file)."""
  files = info.split(split).files
  if len(files) < num_ranks and not record_sharding_fallback:
    raise DataError(f"{info.data_dir}: {len(files)} {split} shard files for {num_ranks} ranks; reshard with "
                    f"data_prep (--train_shards >= {num_ranks}) or set --config.data.record_sharding_fallback=True")


def _resolve(data_dir, what, found, configured):
  """The manifest's value unless the config sets a different one, which is an error."""
  if configured is not None and found is not None and configured != found:
    raise DataError(f"{data_dir}: the data says {what}={found}, the config says {configured}")
  return found if found is not None else configured


def _from_manifest(data_dir, label_offset, num_classes):
  manifest = shard_format.read_manifest(data_dir)
  splits = {}
  for name, split in manifest["splits"].items():
    # Shards are not required to all be here: a staged node-local copy holds only its ranks' shards,
    # and the input pipeline checks the files each rank reads.
    files = [os.path.join(data_dir, s["name"]) for s in split["shards"]]
    splits[name] = SplitInfo(name, files, int(split["records"]))
  if not any(os.path.exists(f) for split in splits.values() for f in split.files):
    raise DataError(f"{data_dir}: manifest.json lists shards, but none of them is here")
  name, found_classes, found_offset, record_format = shard_format.manifest_facts(manifest)
  return DatasetInfo(data_dir, name, _resolve(data_dir, "num_classes", found_classes, num_classes),
                     _resolve(data_dir, "label_offset", found_offset, label_offset), splits, record_format)


def _tfds_num_classes(data_dir):
  labels = glob.glob(os.path.join(data_dir, shard_format.TFDS_LABELS))
  if labels:
    with open(labels[0]) as f:
      return sum(1 for line in f if line.strip())
  features = os.path.join(data_dir, shard_format.TFDS_FEATURES)
  if os.path.exists(features):
    with open(features) as f:
      match = re.search(r'"num_?[cC]lasses"\s*:\s*"?(\d+)', f.read())
    if match:
      return int(match.group(1))
  return None


def _from_tfds(data_dir, label_offset, num_classes):
  with open(os.path.join(data_dir, shard_format.TFDS_INFO)) as f:
    info = json.load(f)
  files = shard_format.shards_by_split(data_dir, shard_format.TFDS_NAME)
  splits = {}
  for split in info.get("splits", []):
    paths = files.get(split["name"], [])
    lengths = [int(n) for n in split.get("shardLengths", [])]
    if paths and len(lengths) == len(paths):
      splits[split["name"]] = SplitInfo(split["name"], paths, sum(lengths))
  if not splits:
    raise DataError(f"{data_dir}: dataset_info.json lists no split whose shards are all here")
  classes = _resolve(data_dir, "num_classes", _tfds_num_classes(data_dir), num_classes)
  if classes is None:
    raise DataError(f"{data_dir}: TFDS data without a label file; set --config.data.num_classes")
  return DatasetInfo(data_dir, info.get("name", "tfds"), classes, _resolve(data_dir, "label_offset", 0, label_offset),
                     splits, "tfds")


def _from_classic(data_dir, label_offset, num_classes):
  files = shard_format.shards_by_split(data_dir)
  if not files:
    raise DataError(f"{data_dir} has no manifest.json and no <split>-NNNNN-of-MMMMM shards "
                    "(convert raw data with python -m data_prep.imagenet1k)")
  if label_offset is None or num_classes is None:
    raise DataError(f"{data_dir}: shards without a manifest are ambiguous (classic converters store labels "
                    "1..1000, others 0..999): set --config.data.label_offset and --config.data.num_classes, or "
                    "run python -m data_prep.verify DIR --write_manifest --label_offset=… --num_classes=…")
  splits = {s: SplitInfo(s, paths, sum(shard_format.count_records(p) for p in paths)) for s, paths in files.items()}
  return DatasetInfo(data_dir, "classic", num_classes, label_offset, splits)


def load(data_dir: str, label_offset: Optional[int] = None, num_classes: Optional[int] = None) -> DatasetInfo:
  """What `data_dir` holds; `label_offset` / `num_classes` from the config must agree with the data."""
  if not data_dir or not os.path.isdir(data_dir):
    raise DataError(f"data directory {data_dir!r} does not exist")
  if shard_format.has_manifest(data_dir):
    info = _from_manifest(data_dir, label_offset, num_classes)
  elif os.path.exists(os.path.join(data_dir, shard_format.TFDS_INFO)):
    info = _from_tfds(data_dir, label_offset, num_classes)
  else:
    info = _from_classic(data_dir, label_offset, num_classes)
  if not any(s.records for s in info.splits.values()):
    raise DataError(f"{data_dir}: no records in any split")
  return info

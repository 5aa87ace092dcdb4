"""What a shard directory holds, read from its manifest.json (no TensorFlow: the CLI checks it up front)."""
import dataclasses
import json
import os
from typing import List


class DataError(ValueError):
  """A data directory that cannot be trained or evaluated on; the message says why in one line."""


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  name: str
  files: List[str]        # absolute shard paths, in manifest order
  records: int


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  data_dir: str
  name: str
  num_classes: int
  label_offset: int
  splits: dict            # split name → SplitInfo

  def split(self, name: str) -> SplitInfo:
    if name not in self.splits:
      raise DataError(f"{self.data_dir}: no split {name!r} (has {', '.join(sorted(self.splits))})")
    return self.splits[name]


def load(data_dir: str) -> DatasetInfo:
  """Reads `data_dir/manifest.json` and checks that every shard it lists is there."""
  if not data_dir or not os.path.isdir(data_dir):
    raise DataError(f"data directory {data_dir!r} does not exist")
  path = os.path.join(data_dir, "manifest.json")
  if not os.path.exists(path):
    raise DataError(f"{data_dir} has no manifest.json (convert raw data with python -m data_prep.imagenet1k)")
  with open(path) as f:
    manifest = json.load(f)
  splits = {}
  for name, split in manifest["splits"].items():
    files = [os.path.join(data_dir, s["name"]) for s in split["shards"]]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
      raise DataError(f"{data_dir}: {len(missing)} shards of split {name!r} are missing, e.g. {missing[0]}")
    splits[name] = SplitInfo(name, files, int(split["records"]))
  if not any(s.records for s in splits.values()):
    raise DataError(f"{data_dir}: the manifest lists no records")
  return DatasetInfo(data_dir, manifest.get("dataset", "unknown"), int(manifest["num_classes"]),
                     int(manifest.get("label_offset", 0)), splits)

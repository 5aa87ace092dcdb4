"""The shard contract between data_prep (which writes shards) and tfscale (which reads them). No TensorFlow.

One place for: shard file names (`<split>-NNNNN-of-MMMMM`, and TFDS's `<name>-<split>.tfrecord-NNNNN-of-MMMMM`),
the record keys of each record format, the TFRecord framing (12-byte header, data, 4-byte CRC footer),
manifest.json (reading and atomic writing), and which shard files a rank reads.
"""
import json
import os
import re
import struct
from typing import List

SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")
TFDS_NAME = re.compile(r"^(?P<dataset>.+)-(?P<split>[A-Za-z0-9_]+)\.tfrecord-\d{5}-of-\d{5}$")
MANIFEST = "manifest.json"

# (image key, label key) of each record format: tfscale's and the classic converters' ImageNet keys, TFDS's.
RECORD_KEYS = {"imagenet": ("image/encoded", "image/class/label"), "tfds": ("image", "label")}
# Every key tfscale's converters write, with its feature kind.
IMAGENET_FEATURES = {
    "image/encoded": "byte", "image/format": "byte", "image/class/label": "int", "image/class/synset": "byte",
    "image/class/text": "byte", "image/height": "int", "image/width": "int", "image/channels": "int",
    "image/colorspace": "byte", "image/filename": "byte",
}


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}"


def shards_by_split(directory: str, pattern=SHARD_NAME) -> dict:
  """{split: [shard paths, sorted]} of the files in `directory` whose names match `pattern`."""
  found = {}
  for name in sorted(os.listdir(directory)):
    match = pattern.match(name)
    if match:
      found.setdefault(match["split"], []).append(os.path.join(directory, name))
  return found


def record_frames(path: str):
  """Yields (offset, length header bytes, length CRC, data, data CRC) of every record; a truncated record
  raises EOFError with its offset. The CRCs are returned, not checked (data_prep.verify checks them)."""
  with open(path, "rb") as f:
    offset = 0
    while True:
      header = f.read(12)
      if not header:
        return
      if len(header) < 12:
        raise EOFError(f"{path}: truncated record header at byte {offset}")
      length, length_crc = struct.unpack("<QI", header)
      data = f.read(length)
      footer = f.read(4)
      if len(data) < length or len(footer) < 4:
        raise EOFError(f"{path}: truncated record at byte {offset}")
      yield offset, header[:8], length_crc, data, struct.unpack("<I", footer)[0]
      offset += 16 + length


def count_records(path: str) -> int:
  """Records in a TFRecord file, reading only the 12-byte headers and seeking over the data."""
  count = 0
  with open(path, "rb") as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        return count
      (length,) = struct.unpack("<Q", header[:8])
      f.seek(length + 4, os.SEEK_CUR)
      count += 1


def read_manifest(directory: str):
  """The directory's manifest.json as a dict, or None when it has none."""
  path = os.path.join(directory, MANIFEST)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_manifest(directory: str, manifest: dict):
  """Writes manifest.json atomically (readers never see half a file)."""
  path = os.path.join(directory, MANIFEST)
  with open(path + ".tmp", "w") as f:
    json.dump(manifest, f, indent=1)
  os.replace(path + ".tmp", path)


def files_for_rank(files: List[str], rank: int, num_ranks: int):
  """(this rank's shard files, whether records must be sharded too).

  Disjoint files per rank (file i to rank i mod N) when there are at least as many files as ranks;
  otherwise every rank reads every file and keeps every N-th record. Staging (tfscale_tools/staging.py)
  uses the same rule to copy each node only the shards its ranks read.
  """
  if len(files) >= num_ranks:
    return list(files[rank::num_ranks]), False
  return list(files), True

"""The shard contract between data_prep (which writes shards) and tfscale (which reads them). No TensorFlow.

One place for: shard file names (`<split>-NNNNN-of-MMMMM`, and TFDS's `<name>-<split>.tfrecord-NNNNN-of-MMMMM`),
the record keys of each record format (and the one builder of tfscale's records), the TFRecord framing
(12-byte header, data, 4-byte CRC footer), manifest.json (reading, atomic writing and the defaults of its
optional fields), labels.txt, and which shard files a rank reads. Tools and tests use these names and
functions rather than spelling a file name or a key themselves.
"""
import json
import os
import re
import struct
from typing import List

SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")
TFDS_NAME = re.compile(r"^(?P<dataset>.+)-(?P<split>[A-Za-z0-9_]+)\.tfrecord-\d{5}-of-\d{5}$")
# TFDS's own files beside its shards: the split lengths, the feature spec, and its label file(s) (a glob).
TFDS_INFO, TFDS_FEATURES, TFDS_LABELS = "dataset_info.json", "features.json", "*label*.txt"
MANIFEST = "manifest.json"
LABELS = "labels.txt"  # one synset a line, in label order (the manifest's "labels_file")

# tfscale's ImageNet record, field by field: (key, feature kind). The keys are the classic converters', so
# their shards read as ours do; code outside this module names a field, never its key.
IMAGENET_FIELDS = {
    "image": ("image/encoded", "byte"), "format": ("image/format", "byte"), "label": ("image/class/label", "int"),
    "synset": ("image/class/synset", "byte"), "text": ("image/class/text", "byte"),
    "height": ("image/height", "int"), "width": ("image/width", "int"), "channels": ("image/channels", "int"),
    "colorspace": ("image/colorspace", "byte"), "filename": ("image/filename", "byte"),
}
# Every key tfscale's converters write, with its feature kind.
IMAGENET_FEATURES = dict(IMAGENET_FIELDS.values())
# (image key, label key) of each record format: tfscale's and the classic converters' ImageNet keys, TFDS's.
RECORD_KEYS = {"imagenet": (IMAGENET_FIELDS["image"][0], IMAGENET_FIELDS["label"][0]), "tfds": ("image", "label")}


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}"


def imagenet_record(**values) -> dict:
  """{key: (value, kind)} of a record in tfscale's ImageNet format, in the `tfrecord` package's form, from
  {field: value} (IMAGENET_FIELDS' names; the converters give every field, a benchmark may give fewer)."""
  return {IMAGENET_FIELDS[field][0]: (value, IMAGENET_FIELDS[field][1]) for field, value in values.items()}


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


def has_manifest(directory: str) -> bool:
  return os.path.exists(os.path.join(directory, MANIFEST))


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


def manifest_facts(manifest: dict) -> tuple:
  """(dataset name, num_classes, label_offset, record format) of a manifest, with the defaults of its optional
  fields: label_offset 0, and the record format tfscale's converters write ("imagenet") unless the
  manifest's converter (data_prep.verify --write_manifest, for other converters' shards) read exactly one
  other."""
  formats = manifest.get("converter", {}).get("record_format", ["imagenet"])
  return (manifest.get("dataset", "unknown"), int(manifest["num_classes"]), int(manifest.get("label_offset", 0)),
          formats[0] if len(formats) == 1 else "imagenet")


def write_labels(directory: str, synsets):
  """labels.txt (one synset a line, in label order), atomically."""
  path = os.path.join(directory, LABELS)
  with open(path + ".tmp", "w") as f:
    f.writelines(synset + "\n" for synset in synsets)
  os.replace(path + ".tmp", path)


def read_labels(directory: str) -> list:
  """labels.txt's synsets in label order."""
  with open(os.path.join(directory, LABELS)) as f:
    return f.read().split()


def metadata_files(directory: str) -> list:
  """The paths of the directory's files besides its shards that a copy of it needs (manifest.json and
  labels.txt), those it has."""
  return [os.path.join(directory, name) for name in (MANIFEST, LABELS) if os.path.exists(os.path.join(directory, name))]


def files_for_rank(files: List[str], rank: int, num_ranks: int):
  """(this rank's shard files, whether records must be sharded too).

  Disjoint files per rank (file i to rank i mod N) when there are at least as many files as ranks;
  otherwise every rank reads every file and keeps every N-th record. Staging (tfscale_tools/staging.py)
  uses the same rule to copy each node only the shards its ranks read.
  """
  if len(files) >= num_ranks:
    return list(files[rank::num_ranks]), False
  return list(files), True

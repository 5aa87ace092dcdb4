r"""Check a shard directory without TensorFlow: every record's CRCs, counts against the manifest, label range,
label ↔ synset agreement, and a decoded sample of images.

  python -m data_prep.verify /local/i1k [--decode_every=50] [--write_index] [--num_workers=N]
  # shards from another converter (no manifest.json): check them and write one the pipeline can read
  python -m data_prep.verify /pfs/classic_i1k --write_manifest --label_offset=1 --num_classes=1000

Exits 0 with a one-line summary when everything matches; otherwise prints each problem and exits 1.
`--write_index` writes a `<shard>.index` beside each shard (one "offset length" line per record, the
format of the `tfrecord` package's tfrecord2idx) for random access by other readers.
"""
import io
import multiprocessing
import os
import sys

from absl import app, flags

from data_prep.shard_format import (IMAGENET_FIELDS, RECORD_KEYS, read_manifest, record_frames, shards_by_split,
                                 write_manifest)

FLAGS = flags.FLAGS
flags.DEFINE_integer("decode_every", 50, "Decode every Nth image of each shard with PIL (1: all of them).")
flags.DEFINE_bool("write_index", False, "Write <shard>.index files (offset and length of every record).")
flags.DEFINE_bool("write_manifest", False, "For shards without manifest.json: write one from what was read.")
flags.DEFINE_integer("label_offset", None, "Stored label of the first class (needed with --write_manifest).")
flags.DEFINE_integer("num_classes", None, "Number of classes (needed with --write_manifest).")
flags.DEFINE_integer("num_workers", 0, "Worker processes (0: one per core).")

SYNSET_KEY = IMAGENET_FIELDS["synset"][0]  # checked against the manifest's classes where a record has it


class CorruptShard(Exception):
  pass


def _masked_crc(data: bytes) -> int:
  import crc32c  # installed with `tfrecord`
  crc = crc32c.crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path: str):
  """Yields (offset, serialized record) and checks both CRCs of every record."""
  try:
    for offset, length_bytes, length_crc, data, data_crc in record_frames(path):
      if _masked_crc(length_bytes) != length_crc:
        raise CorruptShard(f"{path}: bad length CRC at byte {offset}")
      if _masked_crc(data) != data_crc:
        raise CorruptShard(f"{path}: bad data CRC at byte {offset}")
      yield offset, data
  except EOFError as e:
    raise CorruptShard(str(e)) from None


def check_shard(task):
  """Reads one shard; returns its counts, label range, problems, and (optionally) writes its index."""
  from PIL import Image
  from tfrecord import example_pb2

  path, decode_every, write_index, synsets = task
  result = {"path": path, "records": 0, "min_label": None, "max_label": None, "problems": [], "format": None,
            "decoded": 0}
  index_lines = []
  try:
    for n, (offset, data) in enumerate(read_records(path)):
      index_lines.append(f"{offset} {len(data) + 16}\n")
      features = example_pb2.Example.FromString(data).features.feature
      if result["format"] is None:
        result["format"] = next((f for f, keys in RECORD_KEYS.items() if all(k in features for k in keys)), None)
        if result["format"] is None:
          result["problems"].append(f"{path}: record 0 has neither ImageNet nor TFDS keys: {sorted(features)[:6]}")
          break
      image_key, label_key = RECORD_KEYS[result["format"]]
      label = features[label_key].int64_list.value[0]
      result["records"] += 1
      result["min_label"] = label if result["min_label"] is None else min(result["min_label"], label)
      result["max_label"] = label if result["max_label"] is None else max(result["max_label"], label)
      synset = features[SYNSET_KEY].bytes_list.value if SYNSET_KEY in features else None
      if synsets and synset and synsets.get(label) != synset[0].decode():
        result["problems"].append(f"{path}: record {n} has label {label} but synset {synset[0].decode()} "
                                  f"(labels.txt says {synsets.get(label)})")
      if n % decode_every == 0:
        try:
          Image.open(io.BytesIO(features[image_key].bytes_list.value[0])).load()
          result["decoded"] += 1
        except Exception as e:  # any PIL failure is a bad image
          result["problems"].append(f"{path}: record {n} does not decode: {e}")
  except CorruptShard as e:
    result["problems"].append(str(e))
  if write_index and not result["problems"]:
    with open(path + ".index", "w") as f:
      f.writelines(index_lines)
  return result


def verify(data_dir: str, decode_every: int, write_index: bool, num_workers: int):
  """(problems, per-split results, manifest or None)."""
  manifest = read_manifest(data_dir)
  synsets = {}
  if manifest is not None:
    splits = {s: [os.path.join(data_dir, sh["name"]) for sh in v["shards"]] for s, v in manifest["splits"].items()}
    synsets = {c["label"]: c["synset"] for c in manifest.get("classes", [])}
  else:
    splits = shards_by_split(data_dir)
  problems = []
  for split, paths in splits.items():
    problems += [f"{p}: listed in manifest.json but missing" for p in paths if not os.path.exists(p)]
  tasks = [(p, max(decode_every, 1), write_index, synsets) for paths in splits.values() for p in paths
           if os.path.exists(p)]
  if not tasks:
    return problems + [f"{data_dir}: no shards found"], {}, manifest
  with multiprocessing.get_context("spawn").Pool(min(num_workers or os.cpu_count(), len(tasks))) as pool:
    results = {r["path"]: r for r in pool.imap_unordered(check_shard, tasks)}
  per_split = {}
  for split, paths in splits.items():
    found = [results[p] for p in paths if p in results]
    for r in found:
      problems += r["problems"]
    per_split[split] = found
  if manifest:
    low, high = manifest["label_offset"], manifest["label_offset"] + manifest["num_classes"] - 1
    for split, found in per_split.items():
      expected = {os.path.join(data_dir, s["name"]): s["records"] for s in manifest["splits"][split]["shards"]}
      for r in found:
        if r["records"] != expected[r["path"]]:
          problems.append(f"{r['path']}: {r['records']} records, manifest.json says {expected[r['path']]}")
        if r["records"] and (r["min_label"] < low or r["max_label"] > high):
          problems.append(f"{r['path']}: labels {r['min_label']}..{r['max_label']} outside {low}..{high}")
  return problems, per_split, manifest


def external_manifest(data_dir, per_split, label_offset, num_classes):
  """A manifest for shards another converter wrote, so the input pipeline need not guess."""
  formats = {r["format"] for found in per_split.values() for r in found if r["format"]}
  return {
      "dataset": os.path.basename(os.path.normpath(data_dir)),
      "converter": {"name": "external", "verified_by": "data_prep.verify", "record_format": sorted(formats)},
      "num_classes": num_classes,
      "label_offset": label_offset,
      "splits": {split: {"records": sum(r["records"] for r in found),
                         "shards": [{"name": os.path.basename(r["path"]), "records": r["records"]} for r in found]}
                 for split, found in per_split.items()},
      "skipped": [],
  }


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: python -m data_prep.verify DIR [flags]")
  data_dir = argv[1]
  if not os.path.isdir(data_dir):
    sys.exit(f"data_prep.verify: error: {data_dir} is not a directory")
  problems, per_split, manifest = verify(data_dir, FLAGS.decode_every, FLAGS.write_index, FLAGS.num_workers)
  if manifest is None and not problems:
    labels = [(r["min_label"], r["max_label"]) for found in per_split.values() for r in found if r["records"]]
    low, high = min(l for l, _ in labels), max(h for _, h in labels)
    if FLAGS.write_manifest:
      if FLAGS.label_offset is None or FLAGS.num_classes is None:
        sys.exit("data_prep.verify: error: --write_manifest needs --label_offset and --num_classes "
                 f"(labels seen: {low}..{high})")
      if low < FLAGS.label_offset or high >= FLAGS.label_offset + FLAGS.num_classes:
        problems.append(f"labels {low}..{high} do not fit --label_offset={FLAGS.label_offset} "
                        f"--num_classes={FLAGS.num_classes}")
      else:
        manifest = external_manifest(data_dir, per_split, FLAGS.label_offset, FLAGS.num_classes)
        write_manifest(data_dir, manifest)
  if problems:
    for problem in problems[:50]:
      print(problem, file=sys.stderr)
    sys.exit(f"data_prep.verify: {len(problems)} problem(s) in {data_dir}")
  summary = ", ".join(f"{split} {sum(r['records'] for r in found)} records in {len(found)} shards"
                      for split, found in per_split.items())
  decoded = sum(r["decoded"] for found in per_split.values() for r in found)
  print(f"{data_dir}: ok: {summary}; {decoded} images decoded" + ("" if manifest else " (no manifest.json)"))


if __name__ == "__main__":
  app.run(main)

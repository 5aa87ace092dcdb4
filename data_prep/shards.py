"""TF-free shard writer shared by every converter: image checks, a worker pool, atomic shards, the manifest.

A converter lists its images as `Entry`s per split; `convert` does the rest. Each shard is one task for a
pool of light processes that never import TensorFlow (the `tfrecord` package writes the records, and it
cannot share a process with TF). A shard is written under a temporary name and renamed when complete,
beside a small sidecar with its counts, so a killed run is resumed by simply running it again: finished
shards are kept, the rest are written, and the result is byte-identical to an uninterrupted run.
"""
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import random
import re
import struct
import sys
import time
from typing import Dict, List, Optional, Sequence

from PIL import Image

from data_prep.shard_format import LABELS, imagenet_record, shard_name, write_labels, write_manifest

CONVERTER_VERSION = 1
SIDE_CAR_DIR = ".shards"


@dataclasses.dataclass(frozen=True, slots=True)  # slots: ImageNet-22K lists 14 M of these
class Entry:
  """One image to convert: where it is, its stored label and its class.

  An image inside an uncompressed tar (ImageNet-22K ships one per synset) is `path` = the tar, with the
  member's data `offset` and `size`, so a worker reads it with one seek instead of scanning the tar.
  """
  path: str
  label: int
  synset: str
  text: str = ""
  name: str = ""          # file name recorded in the record's filename field (default: basename of path)
  offset: int = -1
  size: int = 0

  @property
  def filename(self) -> str:
    return self.name or os.path.basename(self.path)

  def read(self) -> bytes:
    with open(self.path, "rb") as f:
      if self.offset < 0:
        return f.read()
      f.seek(self.offset)
      return f.read(self.size)


@dataclasses.dataclass(frozen=True)
class Split:
  """The images of one split and how many shards they go into."""
  entries: Sequence[Entry]
  num_shards: int


class BadImage(Exception):
  """An image that cannot be converted; the message is the reason recorded in the manifest."""


def load_jpeg(raw: bytes, resize_shorter: int = 0, quality: int = 90):
  """Returns (jpeg_bytes, height, width, channels); re-encodes anything that is not a plain JPEG."""
  try:
    image = Image.open(io.BytesIO(raw))
    width, height = image.size
    # CMYK JPEGs and PNGs (both occur in ImageNet-1K under .JPEG names) are not what decode_jpeg wants.
    keep_bytes = image.format == "JPEG" and image.mode in ("RGB", "L")
    resize = bool(resize_shorter and min(width, height) > resize_shorter)
    if keep_bytes and not resize:
      # Only validating: libjpeg still reads every entropy-coded byte (truncated or corrupt files fail)
      # but runs the inverse DCT at 1/8 scale, 1.5× cheaper than a full decode on ImageNet-sized JPEGs.
      image.draft(image.mode, (1, 1))
    image.load()
  except Exception as e:  # PIL raises many types for bad data; every one means "skip this file".
    # No object addresses in the reason: a resumed run must write the same manifest.
    raise BadImage(f"undecodable: {type(e).__name__}: {re.sub(r' <[^>]* at 0x[0-9a-f]+>', '', str(e))}") from None
  if width < 1 or height < 1:
    raise BadImage(f"empty image {width}x{height}")
  if keep_bytes and not resize:
    return raw, height, width, 3 if image.mode == "RGB" else 1
  if resize:
    scale = resize_shorter / min(width, height)
    width, height = max(1, round(width * scale)), max(1, round(height * scale))
    image = image.resize((width, height), Image.BICUBIC)
  if image.mode not in ("RGB", "L"):
    image = image.convert("RGB")
  out = io.BytesIO()
  image.save(out, format="JPEG", quality=quality)
  return out.getvalue(), height, width, 3 if image.mode == "RGB" else 1


def example_features(entry: Entry, jpeg: bytes, height: int, width: int, channels: int) -> dict:
  """Every field of the standard ImageNet record (shard_format.IMAGENET_FIELDS), in the `tfrecord` package's
  (value, kind) form."""
  return imagenet_record(
      image=jpeg, format=b"JPEG", label=entry.label, synset=entry.synset.encode(), text=entry.text.encode(),
      height=height, width=width, channels=channels, colorspace=b"RGB" if channels == 3 else b"Grayscale",
      filename=entry.filename.encode())


@dataclasses.dataclass(frozen=True)
class ShardTask:
  output_dir: str
  name: str
  entries: Sequence[Entry]
  resize_shorter: int
  quality: int

  def inputs(self) -> str:
    """A hash of everything the shard's bytes depend on: its images (by class and file name, as the records
    name them: the same tree under another path or mount is the same input) and their labels and texts, and
    the re-encoding. A rerun keeps a finished shard only if this is unchanged."""
    digest = hashlib.sha256(f"{self.resize_shorter}\0{self.quality}".encode())
    for e in self.entries:
      digest.update(f"\n{e.synset}\0{e.filename}\0{e.label}\0{e.text}\0{e.size}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def _where(entry: Entry) -> str:
  return entry.path if entry.offset < 0 else f"{entry.path}:{entry.filename}"


def _sidecar(output_dir: str, name: str) -> str:
  return os.path.join(output_dir, SIDE_CAR_DIR, name + ".json")


def _record_writer(path: str):
  """tfrecord's writer, with each Example serialized in key order (protobuf's deterministic=True).

  Example.features is a protobuf map; protobuf 7's upb runtime writes maps in an order that follows a
  per-process hash seed, so the same images written by another worker process gave different bytes
  (TF 2.21's stack; protobuf 5 happened to keep the order). Shards are a function of their inputs."""
  from tfrecord import example_pb2
  from tfrecord.writer import TFRecordWriter  # Never TensorFlow in this process.

  class Writer(TFRecordWriter):
    def write(self, datum):
      record = example_pb2.Example.FromString(TFRecordWriter.serialize_tf_example(datum)).SerializeToString(
          deterministic=True)
      length = struct.pack("<Q", len(record))  # TFRecord framing: length, its CRC, record, its CRC
      self.file.write(length + self.masked_crc(length) + record + self.masked_crc(record))

  return Writer(path)


def write_shard(task: ShardTask) -> dict:
  """Writes one shard atomically; returns its sidecar (record count, skipped files)."""
  final = os.path.join(task.output_dir, task.name)
  tmp = final + f".tmp-{os.getpid()}"
  records, skipped = 0, []
  writer = _record_writer(tmp)
  try:
    for entry in task.entries:
      try:
        jpeg, height, width, channels = load_jpeg(entry.read(), task.resize_shorter, task.quality)
      except (BadImage, OSError) as e:
        skipped.append({"file": _where(entry), "reason": str(e)})
        continue
      writer.write(example_features(entry, jpeg, height, width, channels))
      records += 1
  finally:
    writer.close()
  meta = {"name": task.name, "records": records, "images": len(task.entries), "inputs": task.inputs(),
          "skipped": skipped}
  sidecar = _sidecar(task.output_dir, task.name)
  with open(sidecar + ".tmp", "w") as f:
    json.dump(meta, f)
  # Sidecar first, shard last: a shard under its final name always has its sidecar beside it.
  os.replace(sidecar + ".tmp", sidecar)
  os.replace(tmp, final)
  return meta


def _finished(output_dir: str, name: str) -> Optional[dict]:
  sidecar = _sidecar(output_dir, name)
  if os.path.exists(os.path.join(output_dir, name)) and os.path.exists(sidecar):
    with open(sidecar) as f:
      return json.load(f)
  return None


def split_into_shards(entries: Sequence[Entry], num_shards: int) -> List[List[Entry]]:
  """Contiguous, nearly equal chunks (sizes differ by at most one), in order."""
  num_shards = max(1, min(num_shards, len(entries)))
  base, extra = divmod(len(entries), num_shards)
  chunks, start = [], 0
  for i in range(num_shards):
    end = start + base + (1 if i < extra else 0)
    chunks.append(list(entries[start:end]))
    start = end
  return chunks


class _Progress:
  """One self-overwriting line on stderr: shards done, images done, images/s."""

  def __init__(self, total_shards: int, total_images: int):
    self.total_shards, self.total_images = total_shards, total_images
    self.shards = self.images = 0
    self.start = time.monotonic()
    self.tty = sys.stderr.isatty()
    self.last = 0.0

  def update(self, images: int):
    self.shards += 1
    self.images += images
    now = time.monotonic()
    if self.tty or now - self.last > 10 or self.shards == self.total_shards:
      self.last = now
      rate = self.images / max(now - self.start, 1e-9)
      line = (f"shards {self.shards}/{self.total_shards}  images {self.images}/{self.total_images}"
              f"  {rate:,.0f} images/s")
      print(("\r" if self.tty else "") + line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

  def close(self):
    if self.tty:
      print(file=sys.stderr)


def convert(dataset: str, output_dir: str, splits: Dict[str, Split], classes: Sequence[dict],
            label_offset: int, options: dict, num_workers: int = 0, shuffle_seed: int = 0,
            extra: Optional[dict] = None) -> dict:
  """Writes every split's shards (resuming), `labels.txt` and `manifest.json`; returns the manifest.

  `extra` adds converter-specific facts to the manifest (e.g. classes dropped as too small).
  `classes` is the label order: classes[i] = {"synset": ..., "text": ...} has stored label i + label_offset.
  Splits named "train..." are shuffled with `shuffle_seed` so every shard mixes classes.
  """
  os.makedirs(os.path.join(output_dir, SIDE_CAR_DIR), exist_ok=True)
  for stale in os.listdir(output_dir):  # half-written shards of a killed run
    if ".tmp-" in stale:
      os.remove(os.path.join(output_dir, stale))
  layout, tasks, done, changed = _plan_shards(output_dir, splits, options, shuffle_seed)
  if done or changed:
    print(f"resuming: {len(done)} shards already written, {len(tasks)} to go"
          + (f" ({changed} of them written before from other inputs or options)" if changed else ""),
          file=sys.stderr)
  done.update(_write_shards(tasks, num_workers))
  manifest = _manifest(dataset, layout, splits, done, classes, label_offset, options, extra)
  write_labels(output_dir, [c["synset"] for c in classes])
  write_manifest(output_dir, manifest)
  return manifest


def _plan_shards(output_dir, splits, options, shuffle_seed):
  """({split: shard names}, tasks still to write, {name: metadata} of shards a previous run finished from
  the same inputs, how many finished shards had other inputs — e.g. another --label_offset — and are redone)."""
  tasks, done, layout, changed = [], {}, {}, 0
  for split, spec in splits.items():
    entries = list(spec.entries)
    if split.startswith("train"):
      random.Random(shuffle_seed).shuffle(entries)
    chunks = split_into_shards(entries, spec.num_shards) if entries else []
    layout[split] = [shard_name(split, i, len(chunks)) for i in range(len(chunks))]
    for name, chunk in zip(layout[split], chunks):
      task = ShardTask(output_dir, name, chunk, options.get("resize_shorter", 0), options.get("jpeg_quality", 90))
      meta, inputs = _finished(output_dir, name), task.inputs()
      # A sidecar from before inputs were recorded keeps the old rule (the image count), so a long
      # conversion started by an older tfscale is not redone from scratch.
      if meta is not None and meta.get("inputs", inputs if meta["images"] == len(chunk) else None) == inputs:
        done[name] = meta
      else:
        if meta is not None:  # redo it; gone first, so a kill mid-rewrite cannot leave it beside a new sidecar
          changed += 1
          os.remove(_sidecar(output_dir, name))
          os.remove(os.path.join(output_dir, name))
        tasks.append(task)
  return layout, tasks, done, changed


def _write_shards(tasks, num_workers) -> dict:
  """{name: metadata} of the shards written, by a pool of workers (largest shards first keeps it busy)."""
  progress = _Progress(len(tasks), sum(len(t.entries) for t in tasks))
  num_workers = num_workers or os.cpu_count() or 1
  tasks = sorted(tasks, key=lambda t: -len(t.entries))
  if num_workers == 1 or len(tasks) <= 1:
    results, pool = map(write_shard, tasks), None
  else:
    pool = multiprocessing.get_context("spawn").Pool(min(num_workers, len(tasks)))
    results = pool.imap_unordered(write_shard, tasks)
  written = {}
  try:
    for meta in results:
      written[meta["name"]] = meta
      progress.update(meta["images"])
  finally:
    if pool is not None:
      pool.close()
      pool.join()
  progress.close()
  return written


def _manifest(dataset, layout, splits, done, classes, label_offset, options, extra) -> dict:
  manifest = {
      "dataset": dataset,
      "converter": {"name": "tfscale.data_prep", "version": CONVERTER_VERSION, "options": options},
      "num_classes": len(classes),
      "label_offset": label_offset,
      "labels_file": LABELS,
      "classes": [{"label": i + label_offset, **c} for i, c in enumerate(classes)],
      "splits": {},
      "skipped": [],
      **(extra or {}),
  }
  for split, names in layout.items():
    shards = [{"name": n, "records": done[n]["records"]} for n in names]
    manifest["splits"][split] = {
        "records": sum(s["records"] for s in shards),
        "shards": shards,
        "class_counts": _class_counts(splits[split].entries, done, names, label_offset, len(classes)),
    }
    for n in names:
      manifest["skipped"].extend({"split": split, **s} for s in done[n]["skipped"])
  return manifest


def _class_counts(entries, done, names, label_offset, num_classes) -> List[int]:
  """Records per class actually written (skipped files excluded)."""
  skipped = {s["file"] for n in names for s in done[n]["skipped"]}
  counts = [0] * num_classes
  for e in entries:
    if _where(e) not in skipped:
      counts[e.label - label_offset] += 1
  return counts

"""data_prep: the digits tree, the ILSVRC2012 converter's output, bad files, and resume."""
import io
import os

import numpy as np
from PIL import Image

from conftest import read_with_tensorflow, run_module
from data_prep import shard_format

DIGIT_OF = {f"n9000000{d}": d for d in range(10)}


def test_digits_tree_is_imagenet_shaped(digits_raw):
  wnids = sorted(os.listdir(digits_raw / "train"))
  assert wnids == sorted(DIGIT_OF)
  assert all(f.startswith(w + "_") and f.endswith(".JPEG") for w in wnids for f in os.listdir(digits_raw / "train" / w))
  val = sorted(os.listdir(digits_raw / "val"))
  truth = (digits_raw / "ILSVRC2012_validation_ground_truth.txt").read_text().split()
  assert len(val) == len(truth) == 359 and val[0] == "ILSVRC2012_val_00000001.JPEG"
  train = sum(len(os.listdir(digits_raw / "train" / w)) for w in wnids)
  assert train + len(val) == 1797


def test_manifest_counts_and_labels(digits_shards):
  manifest = shard_format.read_manifest(str(digits_shards))
  assert manifest["num_classes"] == 10 and manifest["label_offset"] == 0
  assert manifest["splits"]["train"]["records"] == 1438
  assert manifest["splits"]["validation"]["records"] == 359
  assert [s["name"] for s in manifest["splits"]["validation"]["shards"]] == [
      f"validation-0000{i}-of-00003" for i in range(3)]
  assert sum(manifest["splits"]["train"]["class_counts"]) == 1438
  assert shard_format.read_labels(str(digits_shards)) == sorted(DIGIT_OF)
  assert manifest["skipped"] == []


def test_records_parse_in_tensorflow_with_true_labels(digits_shards, digits_raw):
  """Validation labels come through the devkit's own id order, which differs from sorted wnid order."""
  from sklearn.datasets import load_digits
  digits = load_digits()
  seen = 0
  for shard in sorted(digits_shards.glob("validation-*")):
    for record in read_with_tensorflow(shard):
      label = int(record["label"])
      synset = record["synset"].numpy().decode()
      assert DIGIT_OF[synset] == label
      assert record["text"].numpy().decode().startswith("digit ")
      assert record["format"].numpy() == b"JPEG"
      image = Image.open(io.BytesIO(record["image"].numpy()))
      assert image.size == (int(record["width"]), int(record["height"]))
      # The pixels are the digit of the label: closer to that class's mean image than to any other.
      small = np.asarray(image.convert("L").resize((8, 8), Image.BILINEAR), np.float64) * 16 / 255
      distances = [np.abs(small - digits.images[digits.target == d].mean(0)).sum() for d in range(10)]
      seen += int(np.argmin(distances) == label)
  assert seen >= 0.8 * 359


def make_tree_with_bad_files(root):
  """A two-class tree with a CMYK JPEG, a PNG named .JPEG, a truncated and a non-image file."""
  rng = np.random.default_rng(0)
  for wnid in ("n00000001", "n00000002"):
    os.makedirs(root / "train" / wnid)
    os.makedirs(root / "val" / wnid)
    for i in range(6):
      Image.fromarray(rng.integers(0, 255, (40, 50, 3), np.uint8)).save(root / "train" / wnid / f"{wnid}_{i}.JPEG")
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), np.uint8)).save(root / "val" / wnid / "v.JPEG")
  bad = root / "train" / "n00000001"
  Image.fromarray(rng.integers(0, 255, (32, 48, 4), np.uint8), "CMYK").save(bad / "cmyk.JPEG", format="JPEG")
  Image.fromarray(rng.integers(0, 255, (20, 24, 3), np.uint8)).save(bad / "png.JPEG", format="PNG")
  full = io.BytesIO()
  Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(full, format="JPEG")
  (bad / "truncated.JPEG").write_bytes(full.getvalue()[:300])
  (bad / "text.JPEG").write_bytes(b"not an image at all")


def test_bad_files_are_reencoded_or_skipped(tmp_path):
  make_tree_with_bad_files(tmp_path / "raw")
  run_module("data_prep.imagenet1k", f"--raw_dir={tmp_path / 'raw'}", f"--output_dir={tmp_path / 'out'}",
             "--train_shards=2", "--val_shards=1", "--num_workers=1")
  manifest = shard_format.read_manifest(str(tmp_path / "out"))
  skipped = {os.path.basename(s["file"]) for s in manifest["skipped"]}
  assert skipped == {"truncated.JPEG", "text.JPEG"}
  assert manifest["splits"]["train"]["records"] == 14  # 12 good + CMYK + PNG, both re-encoded
  records = [r for s in sorted((tmp_path / "out").glob("train-*")) for r in read_with_tensorflow(s)]
  by_name = {r["filename"].numpy().decode(): r for r in records}
  for name in ("cmyk.JPEG", "png.JPEG"):
    image = Image.open(io.BytesIO(by_name[name]["image"].numpy()))
    assert image.format == "JPEG" and image.mode == "RGB"


def test_rerun_after_lost_shards_is_byte_identical(digits_raw, tmp_path):
  """A killed run leaves some shards missing (and maybe a temp file); rerunning writes only those."""
  out = tmp_path / "out"
  args = ("data_prep.imagenet1k", f"--raw_dir={digits_raw}", f"--output_dir={out}", "--train_shards=6",
          "--val_shards=2", "--num_workers=2")
  run_module(*args)
  reference = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
  for name in ("train-00002-of-00006", "validation-00001-of-00002"):
    os.remove(out / name)
  (out / "train-00004-of-00006.tmp-123").write_bytes(b"half a shard")
  os.remove(out / shard_format.MANIFEST)
  result = run_module(*args)
  assert "2 to go" in result.stderr
  again = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
  assert again == reference


def test_distorted_digits_split_by_source_deterministic_and_counted(tmp_path):
  """Validation renderings come from held-out source digits; the tuning tree's validation digits are
  training digits of the reported tree and leave the tuning tree's training set; the same seed writes the
  same files."""
  from data_prep import digits
  report = digits.build(str(tmp_path / "a"), task="distorted", train_copies=1, val_copies=2)
  again = digits.build(str(tmp_path / "b"), task="distorted", train_copies=1, val_copies=2)
  tune = digits.build(str(tmp_path / "t"), task="distorted", train_copies=1, val_copies=2, holdout="tune")
  assert again == report
  train, val = set(report["sources"]["train"]), set(report["sources"]["val"])
  assert not train & val and len(train | val) == 1797
  assert len(val) == 539 and report["val"] == 2 * 539 and report["train"] == 1797 - 539
  assert set(tune["sources"]["val"]) <= train and not set(tune["sources"]["val"]) & set(tune["sources"]["train"])
  assert not set(tune["sources"]["train"]) & val and len(tune["sources"]["val"]) == 250
  for name in ("val/ILSVRC2012_val_00000001.JPEG", "val/ILSVRC2012_val_00001078.JPEG",
               "train/n90000003/n90000003_7.JPEG", "ILSVRC2012_validation_ground_truth.txt"):
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
  image = Image.open(tmp_path / "a" / "val" / "ILSVRC2012_val_00000001.JPEG")
  assert image.size == (32, 32) and image.mode == "RGB"

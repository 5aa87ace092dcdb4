"""ILSVRC2012 layouts and blacklist, ImageNet-22K tars/folders and its hashed split, Places365, killed runs."""
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

import raw_trees
from conftest import REPO, read_with_tensorflow, run_module
from data_prep import shard_format, shards


def convert(module, raw, out, *flags):
  result = run_module(f"data_prep.{module}", f"--raw_dir={raw}", f"--output_dir={out}", *flags)
  return shard_format.read_manifest(str(out)), result


def records(out, split):
  return [r for shard in sorted(out.glob(f"{split}-*")) if not shard.name.endswith(".index")
          for r in read_with_tensorflow(shard)]


@pytest.mark.parametrize("layout", ["devkit", "devkit_meta_mat", "loc_csv", "sorted"])
def test_imagenet1k_validation_layouts_agree(tmp_path, layout):
  raw = tmp_path / "raw"
  wnids = raw_trees.imagenet1k_tree(raw)
  if layout == "devkit":
    os.remove(raw / "LOC_val_solution.csv")
  elif layout == "devkit_meta_mat":  # the devkit as it ships: ids in data/meta.mat, beside non-leaf synsets
    from scipy.io import savemat
    os.remove(raw / "LOC_val_solution.csv")
    order = (raw / "ILSVRC2012_synsets.txt").read_text().split()
    os.remove(raw / "ILSVRC2012_synsets.txt")
    rows = [(i + 1, wnid, 0) for i, wnid in enumerate(order)] + [(len(order) + 1, "n00001740", 2)]
    synsets = np.array(rows[::-1], dtype=[("ILSVRC2012_ID", "i4"), ("WNID", "U9"), ("num_children", "i4")])
    os.makedirs(raw / "ILSVRC2012_devkit_t12" / "data")
    savemat(raw / "ILSVRC2012_devkit_t12" / "data" / "meta.mat", {"synsets": synsets.reshape(-1, 1)})
  elif layout == "sorted":  # val/<wnid>/ as many mirrors ship it
    os.remove(raw / "LOC_val_solution.csv")
    truth = (raw / "ILSVRC2012_validation_ground_truth.txt").read_text().split()
    order = (raw / "ILSVRC2012_synsets.txt").read_text().split()
    for i, name in enumerate(sorted(os.listdir(raw / "val"))):
      os.makedirs(raw / "val" / order[int(truth[i]) - 1], exist_ok=True)
      os.rename(raw / "val" / name, raw / "val" / order[int(truth[i]) - 1] / name)
  manifest, _ = convert("imagenet1k", raw, tmp_path / "out", "--train_shards=2", "--val_shards=2", "--num_workers=1")
  assert manifest["splits"]["validation"]["records"] == 6
  for r in records(tmp_path / "out", "validation"):
    # Image i+1 belongs to wnids[i % 3] by construction; the label is its sorted-wnid index.
    index = int(r["filename"].numpy().decode()[15:23]) - 1
    assert r["synset"].numpy().decode() == wnids[index % 3]
    assert int(r["label"]) == index % 3
    assert r["text"].numpy().decode().startswith("thing ")


def test_imagenet1k_refuses_a_sorted_synset_list_for_the_devkit_ids(tmp_path):
  """Caffe's synsets.txt is the 1,000 wnids sorted; the devkit's ground-truth ids are not in that order."""
  from data_prep import listing
  synsets = tmp_path / "synsets.txt"
  synsets.write_text("".join(f"n{i:08d}\n" for i in range(1000)))
  with pytest.raises(ValueError, match="sorted order, not the devkit's ILSVRC2012_ID order"):
    listing.read_devkit_order(str(synsets))


def test_imagenet1k_blacklist_and_one_based_labels(tmp_path):
  raw = tmp_path / "raw"
  raw_trees.imagenet1k_tree(raw)
  manifest, _ = convert("imagenet1k", raw, tmp_path / "out", "--train_shards=3", "--val_shards=2",
                        f"--val_blacklist={raw / 'blacklist.txt'}", "--label_offset=1", "--num_workers=2")
  assert manifest["splits"]["validation"]["records"] == 4
  assert manifest["splits"]["validation_blacklisted"]["records"] == 2
  names = sorted(r["filename"].numpy().decode() for r in records(tmp_path / "out", "validation_blacklisted"))
  assert names == ["ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000005.JPEG"]
  labels = [int(r["label"]) for r in records(tmp_path / "out", "train")]
  assert min(labels) == 1 and max(labels) == 3 and manifest["label_offset"] == 1
  assert [c["label"] for c in manifest["classes"]] == [1, 2, 3]
  assert {os.path.basename(s["file"]) for s in manifest["skipped"]} == {"truncated.JPEG", "text.JPEG"}
  assert manifest["splits"]["train"]["class_counts"] == [7, 5, 5]  # 5 + re-encoded CMYK and PNG


def test_imagenet22k_tars_folders_and_hashed_split(tmp_path):
  raw = tmp_path / "raw"
  raw_trees.imagenet22k_tree(raw)
  flags = ("--train_shards=3", "--test_shards=2", "--test_fraction=0.25", "--min_images_per_class=1")
  manifest, _ = convert("imagenet22k", raw, tmp_path / "a", "--num_workers=1", *flags)
  assert [c["synset"] for c in manifest["classes"]] == ["n00000001", "n00000002", "n00000003", "n00000004"]
  assert manifest["dropped_classes"] == [{"synset": "n00000005", "images": 0}]
  train, test = manifest["splits"]["train"]["class_counts"], manifest["splits"]["test"]["class_counts"]
  # Bad files: CMYK and PNG in the n00000001 tar are kept (re-encoded), truncated and text are skipped.
  assert [tr + te for tr, te in zip(train, test)] == [22, 9, 1, 2]
  # round-half-up of n × 0.25 per class (24 files → 6, 9 → 2, 2 → 1), but a 1-image class keeps its image;
  # the two skipped bad files of n00000001 both hashed to train.
  assert test == [6, 2, 0, 1]
  assert all(t >= 1 for t in train)
  by_name = {r["filename"].numpy().decode(): r
             for r in records(tmp_path / "a", "train") + records(tmp_path / "a", "test")}
  assert int(by_name["n00000003_0.JPEG"]["label"]) == 2
  assert by_name["n00000002_0.JPEG"]["text"].numpy() == b"word 2"
  # The split is a function of the names and the seed: another worker count gives the same shards.
  convert("imagenet22k", raw, tmp_path / "b", "--num_workers=2", *flags)
  for shard in ("train-00000-of-00003", "test-00001-of-00002"):
    assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes()
  # A different seed moves images between train and test but keeps the per-class test counts.
  other, _ = convert("imagenet22k", raw, tmp_path / "c", "--num_workers=1", "--split_seed=7", *flags)
  assert other["splits"]["test"]["class_counts"] == test
  dropped, _ = convert("imagenet22k", raw, tmp_path / "d", "--num_workers=1", "--min_images_per_class=3",
                       "--train_shards=2", "--test_shards=1")
  assert [d["synset"] for d in dropped["dropped_classes"]] == ["n00000003", "n00000004", "n00000005"]


@pytest.mark.parametrize("variant,train_records", [("standard", 11), ("challenge", 14)])
def test_places365_lists(tmp_path, variant, train_records):
  raw = tmp_path / "raw"
  categories = raw_trees.places365_tree(raw)
  manifest, _ = convert("places365", raw, tmp_path / "out", f"--variant={variant}", "--train_shards=2",
                        "--val_shards=1", "--num_workers=1")
  assert manifest["dataset"] == f"places365_{variant}"
  assert manifest["splits"]["train"]["records"] == train_records  # 9 or 12 good + CMYK + PNG
  assert manifest["splits"]["validation"]["records"] == 6
  assert [c["synset"] for c in manifest["classes"]] == categories
  assert manifest["classes"][1]["text"] == "bakery/shop"
  for r in records(tmp_path / "out", "validation"):
    index = int(r["filename"].numpy().decode()[14:22]) - 1
    assert int(r["label"]) == index % 3


def test_a_rerun_with_other_options_rewrites_the_shards_they_change(tmp_path):
  """The same command with another --label_offset (or re-encoding) must not keep shards written with the old
  labels under a manifest that states the new ones; unchanged inputs are still kept."""
  raw = tmp_path / "raw"
  raw_trees.imagenet1k_tree(raw, classes=3, per_class=4, val_per_class=2)
  out = tmp_path / "out"
  args = ["--train_shards=2", "--val_shards=1", "--num_workers=1"]
  convert("imagenet1k", raw, out, *args)
  manifest, result = convert("imagenet1k", raw, out, *args, "--label_offset=1")
  assert "resuming: 0 shards already written, 3 to go (3 of them written before from other inputs" in result.stderr
  assert manifest["label_offset"] == 1
  assert sorted({int(r["label"]) for r in records(out, "train")}) == [1, 2, 3]
  _, again = convert("imagenet1k", raw, out, *args, "--label_offset=1")
  assert "resuming: 3 shards already written, 0 to go" in again.stderr
  # Sidecars written before inputs were recorded keep the old rule (the image count): no long conversion
  # started by an older tfscale is redone from scratch.
  for sidecar in (out / shards.SIDE_CAR_DIR).glob("*.json"):
    meta = json.loads(sidecar.read_text())
    del meta["inputs"]
    sidecar.write_text(json.dumps(meta))
  _, legacy = convert("imagenet1k", raw, out, *args, "--label_offset=1")
  assert "resuming: 3 shards already written, 0 to go" in legacy.stderr


def test_converters_refuse_raw_trees_that_would_convert_to_nothing(tmp_path):
  """The unextracted fall11_whole.tar is not a class, and Places without its validation files is not done."""
  raw = tmp_path / "i22k"
  raw.mkdir()
  with tarfile.open(raw / "fall11_whole.tar", "w"):
    pass
  result = run_module("data_prep.imagenet22k", f"--raw_dir={raw}", f"--output_dir={tmp_path / 'a'}", check=False)
  assert result.returncode != 0 and "has no <wnid>.tar files or <wnid>/ folders" in result.stderr
  assert "extract fall11_whole.tar first" in result.stderr
  places = tmp_path / "places"
  raw_trees.places365_tree(places)
  (places / "places365_val.txt").unlink()
  result = run_module("data_prep.places365", f"--raw_dir={places}", f"--output_dir={tmp_path / 'b'}", check=False)
  assert result.returncode != 0 and "lacks places365_val.txt (--val_shards=0 converts" in result.stderr
  manifest, _ = convert("places365", places, tmp_path / "c", "--train_shards=2", "--val_shards=0", "--num_workers=1")
  assert list(manifest["splits"]) == ["train"]


def test_killed_run_resumes_to_byte_identical_output(tmp_path):
  """SIGKILL a real conversion mid-way, run it again, compare with a run that was never interrupted."""
  raw = tmp_path / "raw"
  raw_trees.imagenet1k_tree(raw, classes=4, per_class=60, val_per_class=5)
  args = ["--train_shards=40", "--val_shards=4", "--num_workers=1", "--resize_shorter=24"]
  reference, _ = convert("imagenet1k", raw, tmp_path / "reference", *args)

  out = tmp_path / "killed"
  command = [sys.executable, "-m", "data_prep.imagenet1k", f"--raw_dir={raw}", f"--output_dir={out}", *args]
  process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline and len(list(out.glob("train-*-of-00040"))) < 5:
    time.sleep(0.02)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  written = len(list(out.glob("train-*-of-00040")))
  assert 5 <= written < 40, f"{written} shards when killed: make the tree bigger"
  assert not shard_format.has_manifest(str(out))

  _, result = convert("imagenet1k", raw, out, *args)
  assert f"resuming: {written} shards already written" in result.stderr
  files = lambda d: {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}
  assert files(out) == files(tmp_path / "reference")

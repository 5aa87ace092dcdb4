"""The training and evaluation entry points: fail-fast errors, a real run, and a real 2-rank Horovod run."""
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_module
from data_prep import shard_format
from tfscale import workdir as workdir_files

TINY = "--config=configs/demo_digits.py:tiny"


def one_line_error(result, expected):
  assert result.returncode != 0
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1, result.stderr
  assert expected in lines[0]


def test_helpfull_lists_flags():
  out = run_module("tfscale.train", "--helpfull", check=False).stdout  # absl exits 1 after help
  assert "--config" in out and "--workdir" in out


def test_missing_config_is_one_line(tmp_path):
  one_line_error(run_module("tfscale.train", f"--workdir={tmp_path}", check=False), "--config is required")


def test_missing_data_dir_is_one_line(tmp_path):
  result = run_module("tfscale.train", TINY, f"--workdir={tmp_path}", f"--config.data.dir={tmp_path}/nowhere",
                      check=False)
  one_line_error(result, "does not exist")


def test_unwritable_workdir_is_one_line(tmp_path, digits_shards):
  (tmp_path / "a_file").write_text("")
  result = run_module("tfscale.train", TINY, f"--workdir={tmp_path}/a_file/run", f"--config.data.dir={digits_shards}",
                      check=False)
  one_line_error(result, "not writable")


def test_unknown_config_field_is_one_line(tmp_path):
  result = run_module("tfscale.train", TINY, f"--workdir={tmp_path}", "--config.train.batch_per_rnak=8", check=False)
  one_line_error(result, "unknown config field 'batch_per_rnak' in --config.train.batch_per_rnak=8")


def test_empty_data_dir_is_one_line(tmp_path):
  (tmp_path / "empty").mkdir()
  result = run_module("tfscale.train", TINY, f"--workdir={tmp_path}/run", f"--config.data.dir={tmp_path}/empty",
                      check=False)
  one_line_error(result, f"{tmp_path}/empty")


def test_num_classes_not_matching_the_data_is_one_line(tmp_path, digits_shards):
  result = run_module("tfscale.train", TINY, f"--workdir={tmp_path}", f"--config.data.dir={digits_shards}",
                      "--config.data.num_classes=1000", check=False)
  one_line_error(result, "the data says num_classes=10, the config says 1000")


def test_fewer_shards_than_ranks_without_the_fallback_is_one_line(tmp_path, digits_shards):
  """8 training shards for the 16 ranks a launcher announced, record-level fallback switched off."""
  env = dict(os.environ, OMPI_COMM_WORLD_SIZE="16")
  result = run_module("tfscale.train", TINY, f"--workdir={tmp_path}", f"--config.data.dir={digits_shards}",
                      "--config.data.record_sharding_fallback=False", check=False, env=env)
  one_line_error(result, "8 train shard files for 16 ranks")


@pytest.mark.parametrize("override,message", [
    ("--config.model.name=resnet5O", "model.name 'resnet5O' is not a model tfscale has; known: "),
    ("--config.model.conv_init=he", "model.conv_init must be one of"),
    ("--config.optim.name=adam", "optim.name must be one of ('lars', 'sgd'), got 'adam'"),
    ("--config.data.crop=random", "data.crop must be one of ('inception', 'intel_caffe'), got 'random'"),
    ("--config.data.resize_method=cubic", "data.resize_method must be one of ("),
    ("--config.model.dtype=bfloat16", "model.dtype must be one of ('float32', 'mixed_bfloat16'), got 'bfloat16'"),
    ("--config.train.gradient_compression=fp8", "train.gradient_compression must be one of ['none', 'fp16']"),
    ("--config.train.progress=yes", "train.progress must be one of ('auto', 'on', 'off'), got 'yes'"),
])
def test_a_config_value_that_names_no_choice_is_one_line(tmp_path, digits_shards, override, message):
  """Found by trainer.check_config before the backend starts or the log's first line."""
  result = run_module("tfscale.train", TINY, f"--workdir={tmp_path}", f"--config.data.dir={digits_shards}", override,
                      check=False)
  one_line_error(result, f"tfscale.train: error: {message}")


def test_evaluate_without_a_run_is_one_line(tmp_path):
  one_line_error(run_module("tfscale.evaluate", f"--workdir={tmp_path}", check=False), "snapshots")


@pytest.fixture(scope="module")
def single_rank_run(digits_shards, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run1")
  # Deterministic (seeded, tf.data's order kept, deterministic kernels): the same five epochs every time, so
  # the accuracy bounds below hold or fail for good, not one run in a few.
  result = run_module("tfscale.train", TINY, f"--workdir={workdir}", f"--config.data.dir={digits_shards}",
                      "--config.train.deterministic=True")
  (workdir.parent / "run1.log").write_text(result.stderr)  # beside the workdir, which the run owns
  return workdir


def software_is_recorded(workdir, log, controller):
  """The versions the run executes on: its first log line and config.json's "software". `controller`:
  Horovod's ("gloo", "mpi"), or "tf" for TensorFlow's collectives (mpirun's rendezvous)."""
  import platform
  import tensorflow as tf
  import tf_keras
  from tfscale import workdir as workdir_files
  software = workdir_files.read_software(str(workdir))
  assert software["python"] == platform.python_version() and software["tensorflow"] == tf.__version__
  assert software["tf_keras"] == tf_keras.__version__ and software["mpi"].startswith("Open MPI v"), software
  if controller == "tf":
    assert software["backend"] == "tf" and software["launcher"] == "mpi" and "horovod" not in software, software
    backend = "TF collectives (mpi rendezvous)"
  else:
    import horovod
    assert software["backend"] == "horovod" and software["horovod"] == horovod.__version__ == "0.28.1"
    assert software["controller"] == controller, software
    backend = f"Horovod 0.28.1 ({controller} controller)"
  first = next(line for line in log.splitlines() if "software: " in line)
  assert first.endswith(f"software: Python {software['python']}, TensorFlow {tf.__version__}, tf_keras "
                        f"{tf_keras.__version__}, {backend}, {software['mpi']}"), first


def test_single_process_run_writes_snapshots_and_ensemble(single_rank_run):
  workdir = single_rank_run
  config = json.loads((workdir / workdir_files.CONFIG).read_text())
  assert config["model"]["name"] == "resnet_cifar8"
  software_is_recorded(workdir, (workdir.parent / "run1.log").read_text(), "mpi")
  snapshots = workdir_files.read_snapshots(str(workdir))
  assert [s["phase"] for s in snapshots] == ["cycle1", "collapse"]
  for s in snapshots:
    assert {workdir_files.SNAPSHOT_MODEL, workdir_files.SNAPSHOT_WEIGHTS, workdir_files.SNAPSHOT_INFO} <= set(
        os.listdir(workdir / s["path"]))
  result = run_module("tfscale.evaluate", f"--workdir={workdir}")
  assert "ensemble of 2" in result.stdout
  evaluation = workdir_files.read_eval(str(workdir))["evals"]["val"]
  assert evaluation["count"] == 359 and evaluation["splits"] == ["validation"]
  assert [m["name"] for m in evaluation["members"]] == [s["name"] for s in snapshots]
  # Evaluation reproduces the accuracy measured when each snapshot was taken.
  for member, snapshot in zip(evaluation["members"], snapshots):
    assert member["top1"] == pytest.approx(snapshot["val_top1"], abs=1e-9)
  assert evaluation["ensemble"]["top1"] > 0.5  # five epochs of digits: well above chance (0.1)
  assert (workdir / workdir_files.EVAL_MARKDOWN).read_text().count("|") > 10
  assert "Pairwise top-1 disagreement" in (workdir / workdir_files.EVAL_MARKDOWN).read_text()
  # What the ensemble cost, so it is never compared with a single run without it (plan.json's budget).
  assert ("Training cost: main line 5 epochs + branches 0 epochs = 5 epochs (220 steps, 7,040 images at "
          "global batch 32)") in (workdir / workdir_files.EVAL_MARKDOWN).read_text()
  assert "ensemble top-1 gain" in result.stdout


def test_one_pass_evaluation_equals_sorting_every_members_probabilities(single_rank_run, digits_shards):
  """The counts-only evaluation against the way it used to be computed: every member's full probability
  matrix, rows sorted, the ensemble as the mean matrix; equal to the last image."""
  script = f"""
import json, os, sys
import numpy as np
sys.path.insert(0, {REPO!r})
import tfscale
from tfscale import datasets, input_pipeline
import tf_keras
from tfscale import workdir
config, snapshots = workdir.read_run({str(single_rank_run)!r})
info = datasets.load({str(digits_shards)!r})
probabilities, labels = [], None
for s in snapshots:
  model = workdir.load_snapshot({str(single_rank_run)!r}, s)
  batches = list(input_pipeline.eval_dataset(info, config.data, "validation", 64, crops=1))
  probabilities.append(np.concatenate([tf_keras.activations.softmax(model(x, training=False)).numpy() for x, _ in batches]))
  labels = np.concatenate([y.numpy() for _, y in batches])
def hits(p, k):
  return int((np.argsort(-p, axis=1, kind="stable")[:, :k] == labels[:, None]).any(axis=1).sum())
mean = sum(probabilities) / len(probabilities)
top1 = [p.argmax(axis=1) for p in probabilities]
print(json.dumps({{"members": [[hits(p, 1), hits(p, 5)] for p in probabilities], "ensemble": [hits(mean, 1), hits(mean, 5)],
                  "disagree": int((top1[0] != top1[1]).sum()), "count": len(labels)}}))
"""
  reference = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                        check=True).stdout.strip().splitlines()[-1])
  run_module("tfscale.evaluate", f"--workdir={single_rank_run}")
  ours = workdir_files.read_eval(str(single_rank_run))["evals"]["val"]
  n = reference["count"]
  assert ours["count"] == n == 359
  for member, (top1, top5) in zip(ours["members"], reference["members"]):
    assert round(member["top1"] * n) == top1 and round(member["top5"] * n) == top5
  assert round(ours["ensemble"]["top1"] * n) == reference["ensemble"][0]
  assert round(ours["ensemble"]["top5"] * n) == reference["ensemble"][1]
  assert round(ours["diversity"]["pairwise_disagreement"][0][1] * n) == reference["disagree"]


def test_imagenet_protocols_are_two_named_evaluations_over_splits(single_rank_run, digits_raw, tmp_path):
  """Converted with a blacklist, the same 359 images give the ILSVRC2012 protocol (an evaluation over
  validation + validation_blacklisted, which must equal the plain evaluation exactly) and the ILSVRC2014
  one (validation alone: the 319 not blacklisted), from one command: the seed recipes name both."""
  plain = workdir_files.read_eval(str(single_rank_run))["evals"]["val"]
  blacklist = tmp_path / "blacklist.txt"
  blacklist.write_text("\n".join(str(i) for i in range(1, 360, 9)) + "\n")  # 40 of the 359 ids
  shards = tmp_path / "shards"
  run_module("data_prep.imagenet1k", f"--raw_dir={digits_raw}", f"--output_dir={shards}", "--train_shards=2",
             "--val_shards=2", f"--val_blacklist={blacklist}", "--num_workers=2")
  protocols = "('validation', 'validation_blacklisted')"
  result = run_module("tfscale.evaluate", f"--workdir={single_rank_run}", f"--config.data.dir={shards}",
                      f"--config.evals.val.splits={protocols}")
  assert "val: validation + validation_blacklisted, 359 images" in result.stdout
  both = workdir_files.read_eval(str(single_rank_run))["evals"]["val"]
  for ours, reference in zip(both["members"] + [both["ensemble"]], plain["members"] + [plain["ensemble"]]):
    assert ours["top1"] == pytest.approx(reference["top1"], abs=1e-12)
    assert ours["top5"] == pytest.approx(reference["top5"], abs=1e-12)
  result = run_module("tfscale.evaluate", f"--workdir={single_rank_run}", f"--config.data.dir={shards}")
  assert "val: validation, 319 images" in result.stdout
  assert (single_rank_run / workdir_files.EVAL_PLOT).exists()
  unknown = run_module("tfscale.evaluate", f"--workdir={single_rank_run}", "--evals=nope", check=False)
  one_line_error(unknown, "unknown evaluations ['nope']")
  views = run_module("tfscale.evaluate", f"--workdir={single_rank_run}", "--config.evals.val.crops=5", check=False)
  one_line_error(views, "tfscale.evaluate: error: crops must be one of (1, 12, 24), got 5")
  run_module("tfscale.evaluate", f"--workdir={single_rank_run}")  # leave the plain result for later tests


def test_run_leaves_readable_reports(single_rank_run):
  """plan.png, training.png, metrics.jsonl (one row per epoch) and TensorBoard scalars people look for."""
  import tfscale  # noqa: F401
  import tensorflow as tf
  workdir = single_rank_run
  for picture in (workdir_files.PLAN_PLOT, workdir_files.TRAINING_PLOT):
    assert (workdir / picture).read_bytes()[:4] == b"\x89PNG", picture
  rows = [json.loads(l) for l in (workdir / workdir_files.METRICS).read_text().splitlines()]
  assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
  assert {"loss", "top1", "top5", "val_top1", "lr", "weight_decay", "images_per_second", "epoch_seconds"} <= set(rows[-1])
  tags = set()
  for events in (workdir / workdir_files.TENSORBOARD).glob("events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(str(events)):
      tags.update(value.tag for value in event.summary.value)
  assert {"loss", "top1", "top5", "val_top1", "val_top5", "lr", "weight_decay", "images_per_second",
          "images_per_second_rank/0", "epoch_seconds"} <= tags, tags


def test_rerun_of_a_finished_run_resumes_and_does_nothing(single_rank_run, digits_shards):
  before = workdir_files.read_snapshots(str(single_rank_run))
  run_module("tfscale.train", TINY, f"--workdir={single_rank_run}", f"--config.data.dir={digits_shards}")
  assert workdir_files.read_snapshots(str(single_rank_run)) == before


TWO_RANK_SCRIPT = r'''
import sys, json
import numpy as np
sys.path.insert(0, {repo!r})
import tfscale
from configs.demo_digits import get_config
from tfscale import trainer, distributed, metrics
validations = []  # one entry per validation run (the trainer's validate calls metrics.global_accuracy)
global_accuracy = metrics.global_accuracy
metrics.global_accuracy = lambda *args, **kwargs: validations.append(1) or global_accuracy(*args, **kwargs)
config = get_config({variant!r})
config.data.dir = {data!r}
config.train.backend = {backend!r}
result = trainer.train_and_evaluate(config, {workdir!r})
assert (config.train.backend == "tf") != ("horovod" in sys.modules)  # the tf backend runs without Horovod
weights = {{v.name: v.numpy() for v in result.model.variables}}
np.savez({workdir!r} + f"/rank{{distributed.rank()}}.npz", **weights)
with open({workdir!r} + f"/rank{{distributed.rank()}}_history.json", "w") as f:
  json.dump(dict(result.history, validations=len(validations)), f)
'''


@pytest.mark.parametrize("launch,variant", [("--gloo", "tiny"), ("--mpi", "tiny"), ("--gloo", "tiny_branched"),
                                            ("tf", "tiny_branched")])
def test_two_ranks_end_identical(launch, variant, digits_shards, tmp_path):
  """tiny_branched: after the branch's hand-back (rank 0 reads the kept state, a broadcast) the ranks go
  on identical too. "tf": mpirun, TensorFlow's collectives, no Horovod."""
  script = tmp_path / "two_ranks.py"
  workdir = tmp_path / "run"
  script.write_text(TWO_RANK_SCRIPT.format(repo=REPO, data=str(digits_shards), workdir=str(workdir),
                                           variant=variant, backend="tf" if launch == "tf" else "horovod"))
  result = launch_two_ranks(launch, sys.executable, str(script))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  rank0, rank1 = np.load(workdir / "rank0.npz"), np.load(workdir / "rank1.npz")
  assert sorted(rank0.files) == sorted(rank1.files) and len(rank0.files) > 20
  for name in rank0.files:  # trainable weights and the (averaged) BN statistics alike
    np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)
  h0 = json.loads((workdir / "rank0_history.json").read_text())
  h1 = json.loads((workdir / "rank1_history.json").read_text())
  assert h0 == h1
  assert len(h0["loss"]) == 5 and "val_top1" in h0
  # Each rank trained on its own images: an unaveraged metric would differ between ranks.
  snapshots = workdir_files.read_snapshots(str(workdir))
  assert len(snapshots) == 2
  # Validated at most once a step: every epoch end (validate_every_epochs=1) and the two snapshots, whose
  # steps are epoch ends (tiny: cycle1's end and the last step; tiny_branched: the branch's end and the last
  # step) — 5 distinct steps, where validating snapshot and epoch separately made 7 (tiny) or 6.
  assert h0["validations"] == 5, h0["validations"]
  assert h0["val_top1"][-1] == snapshots[-1]["val_top1"]  # the last epoch's row is the last snapshot's validation


def launch_two_ranks(launch, *args, timeout=900):
  """`args` on 2 local ranks: horovodrun (launch "--gloo", "--mpi" or "" for its default) or mpirun ("tf")."""
  from test_resilience import ENV, launch_command
  command = launch_command(launch) if launch else launch_command("--gloo")[:-1]
  return subprocess.run([*command, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


PERSONS_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?!rank )")  # rank 0: date, time, message
RANK_TAG = re.compile(r"^\[\d+(,\d+)?\]<std(out|err)>:")  # horovodrun's (Gloo) or Open MPI's (--tag-output)


@pytest.mark.parametrize("launch,tag_output", [("--gloo", False), ("--mpi", False), ("--mpi", True)])
def test_a_job_log_reads_like_a_persons_log(launch, tag_output, digits_shards, tmp_path):
  """`horovodrun -np 2 … python -m tfscale.train`'s whole output, unedited: rank 0's lines are `date time
  message` (a message of several lines ends its first with ':'), no absl or TensorFlow line, no rank tag
  unless asked for with --tag-output, and nothing of rank 1's (it reports no epoch: each is listed once)."""
  from test_resilience import ENV, launch_command
  command = [*launch_command(launch), *(["--tag-output"] if tag_output else []), sys.executable, "-m",
             "tfscale.train", TINY, f"--workdir={tmp_path / 'run'}", f"--config.data.dir={digits_shards}"]
  result = subprocess.run(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stdout[-3000:]
  lines = result.stdout.splitlines()
  if tag_output:
    assert lines and all(RANK_TAG.match(line) for line in lines), lines[:5]
    lines = [RANK_TAG.sub("", line) for line in lines]
    assert any(line.startswith("[1,0]<stderr>:") for line in result.stdout.splitlines())
  else:
    assert not any(RANK_TAG.match(line) for line in lines)
  assert PERSONS_LINE.match(lines[0]) and " software: Python " in lines[0], lines[:3]
  continues = False
  for line in lines:
    if PERSONS_LINE.match(line):
      continues = line.endswith(":")
    else:
      assert continues, f"not a line of rank 0's log: {line!r}"
  assert [int(m[1]) for line in lines for m in [re.search(r" epoch (\d+)/5 \[", line)] if m] == [1, 2, 3, 4, 5]


def test_persons_log_says_which_rank_warns():
  from tfscale.job_log import PersonsLog
  record = lambda level: logging.LogRecord("absl", level, "trainer.py", 1, "%d shard files", (3,), None)
  assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d 3 shard files", PersonsLog(0).format(record(logging.INFO)))
  assert re.fullmatch(r"\S+ \S+ rank 1 WARNING: 3 shard files", PersonsLog(1).format(record(logging.WARNING)))
  assert re.fullmatch(r"\S+ \S+ ERROR: 3 shard files", PersonsLog(0).format(record(logging.ERROR)))


@pytest.mark.parametrize("launch", ["", "tf"])
def test_two_rank_multicrop_evaluation_covers_the_odd_split_exactly(launch, single_rank_run):
  """359 validation images over 2 ranks × batch 16, 12 views each: every image counted once."""
  run_module("tfscale.evaluate", f"--workdir={single_rank_run}", "--config.evals.val.crops=12")
  single = workdir_files.read_eval(str(single_rank_run))["evals"]["val"]
  backend = ["--config.train.backend=tf"] if launch == "tf" else []
  result = launch_two_ranks(launch, sys.executable, "-m", "tfscale.evaluate", f"--workdir={single_rank_run}",
                            "--config.evals.val.crops=12", "--config.eval.batch_size=16", *backend)
  assert result.returncode == 0, result.stderr[-3000:]
  double = workdir_files.read_eval(str(single_rank_run))["evals"]["val"]
  assert double["count"] == single["count"] == 359 and double["crops"] == 12
  for a, b in zip(double["members"] + [double["ensemble"]], single["members"] + [single["ensemble"]]):
    assert abs(a["top1"] - b["top1"]) * 359 <= 1  # other batch shapes may flip a near-tie, no more
  assert "ensemble of 2" in result.stdout and result.stdout.count("ensemble of 2") == 1  # rank 0 alone prints


def test_corrupt_shard_stops_training_with_its_name(digits_shards, tmp_path):
  copy = tmp_path / "shards"
  shutil.copytree(digits_shards, copy)
  shard = copy / "train-00005-of-00008"
  data = bytearray(shard.read_bytes())
  data[4000] ^= 0xFF
  shard.write_bytes(bytes(data))
  result = run_module("tfscale.train", TINY, f"--workdir={tmp_path / 'run'}", f"--config.data.dir={copy}",
                      check=False)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"tfscale.train: error: corrupt shard {shard}: corrupted record at")


def test_staging_copies_each_node_only_its_ranks_shards(digits_shards, tmp_path):
  from tfscale import datasets
  from tfscale_tools import staging
  copied, _, kept = staging.stage(str(digits_shards), str(tmp_path / "node1"), node=1, nodes=2, ranks_per_node=1,
                                  splits=["train", "validation"])
  names = sorted(os.listdir(tmp_path / "node1"))
  # Rank 1 of 2 reads train shards 1, 3, 5, 7 and validation shard 1 (of 3).
  assert names == sorted([shard_format.MANIFEST, shard_format.LABELS, "train-00001-of-00008", "train-00003-of-00008",
                          "train-00005-of-00008", "train-00007-of-00008", "validation-00001-of-00003"])
  assert (copied, kept) == (7, 0)
  assert staging.stage(str(digits_shards), str(tmp_path / "node1"), 1, 2, 1, ["train", "validation"])[0] == 0
  info = datasets.load(str(tmp_path / "node1"))
  assert shard_format.files_for_rank(info.split("train").files, 1, 2)[0] == [
      str(tmp_path / "node1" / f"train-0000{i}-of-00008") for i in (1, 3, 5, 7)]


def test_stage_data_sh_stages_every_split_and_evaluate_names_what_is_missing(single_rank_run, digits_raw, tmp_path):
  """scripts/stage_data.sh as a Slurm step runs it: node 1 of 2 gets its rank's files of every split the
  manifest lists (ILSVRC2012's protocol needs validation_blacklisted too); evaluating from that copy with
  one rank, which reads every file, ends in one line naming what is missing."""
  blacklist = tmp_path / "blacklist.txt"
  blacklist.write_text("\n".join(str(i) for i in range(1, 360, 9)) + "\n")
  source, staged = tmp_path / "pfs", tmp_path / "local"
  run_module("data_prep.imagenet1k", f"--raw_dir={digits_raw}", f"--output_dir={source}", "--train_shards=2",
             "--val_shards=32", f"--val_blacklist={blacklist}", "--num_workers=2")
  subprocess.run([os.path.join(REPO, "scripts/stage_data.sh"), str(source), str(staged), "1"], check=True,
                 capture_output=True, env={**os.environ, "SLURM_NODEID": "1", "SLURM_NNODES": "2",
                                           "PYTHON": sys.executable})
  expected = ([shard_format.MANIFEST, shard_format.LABELS, "train-00001-of-00002", "validation_blacklisted-00001-of-00002"]
              + [f"validation-{i:05d}-of-00032" for i in range(1, 32, 2)])
  assert sorted(os.listdir(staged)) == sorted(expected)
  both = "--config.evals.val.splits=('validation', 'validation_blacklisted')"
  result = run_module("tfscale.evaluate", f"--workdir={single_rank_run}", f"--config.data.dir={staged}", both,
                      check=False)
  one_line_error(result, "tfscale.evaluate: error: rank 0: 16 of the shards it reads are missing, e.g. ")  # validation


def test_batch_renorm_run_trains_snapshots_and_evaluates(digits_shards, tmp_path):
  """model.renorm through the real entry points: the ramp runs, snapshots load in a fresh process."""
  workdir = tmp_path / "renorm"
  run_module("tfscale.train", TINY, f"--workdir={workdir}", f"--config.data.dir={digits_shards}",
             "--config.model.renorm=True", "--config.model.renorm_ramp_epochs=(0.5, 3.0)")
  result = run_module("tfscale.evaluate", f"--workdir={workdir}")
  assert "ensemble of 2" in result.stdout
  assert workdir_files.read_eval(str(workdir))["evals"]["val"]["count"] == 359


@pytest.mark.parametrize("launch", ["--gloo", "tf"])
def test_ranks_with_different_record_counts_finish_together(launch, digits_raw, tmp_path):
  """3 shard files for 2 ranks: rank 0 reads two, rank 1 one, so per epoch and per validation pass the ranks
  hold different numbers of records (and of validation batches). Every collective is reached by every rank
  at the same step, so the run finishes; a collective behind a rank-dependent branch would hang it."""
  shards = tmp_path / "uneven"
  run_module("data_prep.imagenet1k", f"--raw_dir={digits_raw}", f"--output_dir={shards}", "--train_shards=3",
             "--val_shards=3", "--num_workers=2")
  info = shard_format.read_manifest(str(shards))
  files = [str(shards / s["name"]) for s in info["splits"]["validation"]["shards"]]
  per_rank = [sum(shard_format.count_records(f) for f in shard_format.files_for_rank(files, r, 2)[0]) for r in (0, 1)]
  assert per_rank[0] > 1.5 * per_rank[1]
  workdir = tmp_path / "run"
  backend = ["--config.train.backend=tf"] if launch == "tf" else []
  result = launch_two_ranks(launch, sys.executable, "-m", "tfscale.train", TINY, f"--workdir={workdir}",
                            f"--config.data.dir={shards}", "--config.eval.batch_size=32", *backend, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  software_is_recorded(workdir, result.stdout + result.stderr, "tf" if launch == "tf" else "gloo")
  assert [s["phase"] for s in workdir_files.read_snapshots(str(workdir))] == ["cycle1", "collapse"]
  rows = [json.loads(line) for line in (workdir / workdir_files.METRICS).read_text().splitlines()]
  assert len(rows) == 5 and rows[-1]["ranks"] == 2 and "val_top1" in rows[-1]


EXPORTED_COUNT = r'''
import json, sys
import tensorflow as tf
assert not any(m.startswith("tfscale") for m in sys.modules)
serve = tf.saved_model.load({model!r}).signatures["serving_default"]
spec = {{{image_key!r}: tf.io.FixedLenFeature([], tf.string), {label_key!r}: tf.io.FixedLenFeature([], tf.int64)}}
records = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset({files!r})]
correct = 0
for start in range(0, len(records), 32):
  chunk = records[start:start + 32]
  out = serve(images=tf.stack([r[{image_key!r}] for r in chunk]))
  labels = tf.stack([r[{label_key!r}] for r in chunk]) - {offset}
  correct += int(tf.reduce_sum(tf.cast(out["class_ids"][:, 0] == tf.cast(labels, tf.int32), tf.int32)))
print(json.dumps({{"correct": correct, "count": len(records), "synsets": out["synsets"].shape.as_list()}}))
'''


def test_exported_ensemble_serves_jpegs_with_plain_tensorflow_and_matches_evaluate(single_rank_run, digits_shards,
                                                                                  tmp_path):
  run_module("tfscale.evaluate", f"--workdir={single_rank_run}")
  evaluation = workdir_files.read_eval(str(single_rank_run))["evals"]["val"]
  model = tmp_path / "exported"
  result = run_module("tfscale.export", f"--workdir={single_rank_run}", f"--output={model}")
  assert "ensemble of 2" in result.stdout
  manifest = shard_format.read_manifest(str(digits_shards))
  files = [str(digits_shards / s["name"]) for s in manifest["splits"]["validation"]["shards"]]
  image_key, label_key = shard_format.RECORD_KEYS["imagenet"]
  script = EXPORTED_COUNT.format(model=str(model), files=files, offset=manifest["label_offset"],
                                 image_key=image_key, label_key=label_key)
  counted = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                      cwd=str(tmp_path)).stdout.strip().splitlines()[-1])
  assert counted["count"] == evaluation["count"] == 359
  assert counted["correct"] == round(evaluation["ensemble"]["top1"] * 359)  # to the last image
  assert counted["synsets"][1] == 5
  again = run_module("tfscale.export", f"--workdir={single_rank_run}", f"--output={model}", check=False)
  one_line_error(again, "exists and is not empty")
  unknown = run_module("tfscale.export", f"--workdir={single_rank_run}", f"--output={tmp_path / 'x'}", "--eval=test",
                       check=False)
  one_line_error(unknown, "--eval=test: the run's config.evals has ['val']")


def test_export_takes_its_members_and_views_from_the_runs_evaluation(single_rank_run, tmp_path):
  """A run whose evaluation names one member and 12 views exports that, unless told otherwise."""
  run = tmp_path / "run"
  shutil.copytree(single_rank_run, run, ignore=shutil.ignore_patterns(workdir_files.CHECKPOINTS))
  config_file = workdir_files.path(str(run), workdir_files.CONFIG)
  with open(config_file) as f:
    config = json.load(f)
  config["evals"]["val"].update(snapshots="collapse", crops=12)
  with open(config_file, "w") as f:
    json.dump(config, f)
  result = run_module("tfscale.export", f"--workdir={run}", f"--output={tmp_path / 'one'}")
  assert re.search(r"ensemble of 1 \(collapse-\d+\), 12 view\(s\) per image", result.stdout), result.stdout
  result = run_module("tfscale.export", f"--workdir={run}", f"--output={tmp_path / 'all'}", "--snapshots=all",
                      "--crops=1")
  assert re.search(r"ensemble of 2 \(cycle1-\d+, collapse-\d+\), 1 view\(s\) per image", result.stdout), result.stdout


def test_predict_names_bad_files_and_classifies_the_rest(single_rank_run, digits_raw, tmp_path):
  model = tmp_path / "exported"
  run_module("tfscale.export", f"--workdir={single_rank_run}", f"--output={model}", "--crops=12")
  good = digits_raw / "val" / "ILSVRC2012_val_00000001.JPEG"
  png = tmp_path / "digit.png"
  from PIL import Image
  Image.open(good).save(png)
  truncated, text = tmp_path / "truncated.jpg", tmp_path / "notes.jpg"
  truncated.write_bytes(good.read_bytes()[:200])
  text.write_text("not an image")
  result = run_module("tfscale.predict", f"--model={model}", str(good), str(png), str(tmp_path / "missing.jpg"),
                      str(truncated), str(text), check=False)
  assert result.returncode == 1
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 2 and lines[0].startswith(f"{good}: 1. n9000000") and lines[1].startswith(f"{png}: 1. n9000000")
  assert all(line.count(". n9000000") == 5 for line in lines)
  problems = [l for l in result.stderr.splitlines() if ": skipped: " in l]
  assert [p.split(": skipped: ")[0] for p in problems] == [str(tmp_path / "missing.jpg"), str(truncated), str(text)]

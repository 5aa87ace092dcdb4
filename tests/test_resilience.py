"""A 2-rank run killed with SIGKILL mid-epoch resumes to the uninterrupted result; a dead rank ends the job."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from tfscale import schedules
from tfscale import workdir as workdir_files

TINY = "--config=configs/demo_digits.py:tiny"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


# How a 2-rank job starts: horovodrun with either controller, or mpirun on the tf backend (no Horovod).
LAUNCHES = ("--gloo", "--mpi", "tf")


def launch_command(launch: str) -> list:
  if launch == "tf":
    return ["mpirun", "-np", "2", "--bind-to", "none"]
  return [os.path.join(os.path.dirname(sys.executable), "horovodrun"), "-np", "2", "-H", "localhost:2", launch]


def train_job(workdir, data, launch="--gloo", *overrides, config=TINY):
  backend = ["--config.train.backend=tf"] if launch == "tf" else []
  command = [*launch_command(launch), sys.executable, "-m", "tfscale.train", config, f"--workdir={workdir}",
             f"--config.data.dir={data}", *backend, *overrides]
  return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def descendants(pid: int) -> list:
  """Every process below `pid` (launchers may start workers in sessions of their own)."""
  parents = {}
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/stat") as f:
          parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
      except (OSError, IndexError, ValueError):
        pass
  found, frontier = [], [pid]
  while frontier:
    children = [p for p, parent in parents.items() if parent in frontier]
    found += children
    frontier = children
  return found


def kill_tree(job):
  """SIGKILL a launcher and every process below it, as a node failure would."""
  for pid in [job.pid] + descendants(job.pid):
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  job.wait()


def training_workers(job, environment_marker: str) -> list:
  """The training processes below `job` whose environment holds `environment_marker` (e.g. HOROVOD_RANK=1)."""
  found = []
  for pid in descendants(job.pid):
    try:
      cmdline = open(f"/proc/{pid}/cmdline").read()
      environ = open(f"/proc/{pid}/environ").read()
    except OSError:
      continue
    if "tfscale.train" in cmdline and os.path.basename(cmdline.split("\0")[0]).startswith("python") \
        and f"{environment_marker}\0" in environ:
      found.append(pid)
  return found


def rank_worker(job, rank: int) -> list:
  """Rank `rank`'s training process below `job`, as horovodrun or mpirun announced it."""
  return training_workers(job, f"HOROVOD_RANK={rank}") or training_workers(job, f"OMPI_COMM_WORLD_RANK={rank}")


def wait_for(predicate, timeout, what):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    time.sleep(0.2)
  raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def tf_latest(workdir) -> str:
  import tensorflow as tf
  return tf.train.latest_checkpoint(str(workdir / workdir_files.CHECKPOINTS))


def epochs_done(workdir) -> int:
  path = workdir_files.path(str(workdir), workdir_files.METRICS)
  return sum(1 for line in open(path) if line.strip()) if os.path.exists(path) else 0


def expected_snapshots(variant: str = "tiny") -> list:
  """What an uninterrupted tiny run on the digits ends with: 1,438 images, global batch 2 × 32."""
  sys.path.insert(0, REPO)
  from configs.demo_digits import get_config
  plan = schedules.compile_plan(list(get_config(variant).plan), 1438 // 64, 64)
  return [(f"{name}-{step}", step) for name, step in plan.snapshot_steps()], plan.total_steps


@pytest.mark.parametrize("launch", ["--gloo", "tf"])
def test_sigkill_mid_epoch_then_rerun_ends_like_an_uninterrupted_run(launch, digits_shards, tmp_path):
  workdir = tmp_path / "run"
  # Checkpoints every 4 steps (22 steps per epoch), so the rerun resumes mid-epoch.
  every_4_steps = "--config.train.checkpoint_every_steps=4"
  job = train_job(workdir, digits_shards, launch, every_4_steps)
  try:
    # Kill everything once a checkpoint early in epoch 2 or later is the latest (a fixed sleep after epoch 1 landed
    # on the step-44 epoch boundary one run in five: an epoch takes 0.7 s here). Early in the epoch, so the
    # next epoch-boundary checkpoint is more than one checkpoint away from the kill.
    def early_in_an_epoch(step):
      return step > 22 and 0 < step % 22 <= 14
    wait_for(lambda: early_in_an_epoch(int((tf_latest(workdir) or "-0").rsplit("-", 1)[1])) or job.poll() is not None,
             400, "a checkpoint early in epoch 2 or later")
    assert job.poll() is None, job.stdout.read()[-3000:]
  finally:
    kill_tree(job)
  snapshots_before = workdir_files.read_snapshots(str(workdir))
  expected, total_steps = expected_snapshots()
  assert len(snapshots_before) < len(expected), "the kill came too late to interrupt anything"
  assert (workdir / workdir_files.CHECKPOINTS / "checkpoint").exists()

  resumed_at = int(tf_latest(workdir).rsplit("-", 1)[1])
  assert resumed_at % 22 and resumed_at % 4 == 0, resumed_at  # mid-epoch
  rerun = train_job(workdir, digits_shards, launch, every_4_steps)
  output = rerun.communicate(timeout=600)[0]
  assert rerun.returncode == 0, output[-3000:]
  assert f"at step {resumed_at}" in output
  snapshots = workdir_files.read_snapshots(str(workdir))
  assert [(s["name"], s["step"]) for s in snapshots] == expected
  assert tf_latest(workdir).endswith(f"ckpt-{total_steps}")
  assert [row["epoch"] for row in json.loads("[" + ",".join(
      l for l in (workdir / workdir_files.METRICS).read_text().splitlines() if l.strip()) + "]")][-1] == 5


@pytest.mark.parametrize("launch", LAUNCHES)
def test_a_dead_rank_ends_the_job_within_60_seconds(launch, digits_shards, tmp_path):
  workdir = tmp_path / "run"
  job = train_job(workdir, digits_shards, launch)
  try:
    wait_for(lambda: epochs_done(workdir) >= 1 or job.poll() is not None, 400, "epoch 1")
    assert job.poll() is None
    rank1 = rank_worker(job, 1)
    assert len(rank1) == 1, rank1
    os.kill(rank1[0], signal.SIGKILL)
    killed = time.time()
    output = job.communicate(timeout=120)[0]
    assert time.time() - killed < 60, output[-3000:]
    assert job.returncode != 0
  finally:
    kill_tree(job)
  print(output[-2000:])


def test_elastic_run_survives_a_dead_worker(digits_shards, tmp_path):
  """Horovod elastic over Gloo with two one-slot "hosts" (both local): the worker on one is killed after
  epoch 1; the other rolls back to its last commit and finishes the plan alone."""
  discover = tmp_path / "discover_hosts.sh"
  discover.write_text("#!/bin/sh\necho localhost:1\necho 127.0.0.1:1\n")
  discover.chmod(0o755)
  workdir = tmp_path / "run"
  command = [os.path.join(os.path.dirname(sys.executable), "horovodrun"), "-np", "2", "--min-np", "1",
             "--max-np", "2", "--host-discovery-script", str(discover), sys.executable, "-m", "tfscale.train",
             TINY, f"--workdir={workdir}", f"--config.data.dir={digits_shards}", "--config.train.elastic=True",
             "--config.train.elastic_commit_steps=4"]
  job = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    wait_for(lambda: epochs_done(workdir) >= 1 or job.poll() is not None, 400, "epoch 1")
    assert job.poll() is None
    victims = training_workers(job, "HOROVOD_HOSTNAME=127.0.0.1")
    assert victims, "no worker on host 127.0.0.1"
    for pid in victims:
      os.kill(pid, signal.SIGKILL)
    output = job.communicate(timeout=600)[0]
  finally:
    kill_tree(job)
  assert job.returncode == 0, output[-4000:]
  rows = [json.loads(l) for l in (workdir / workdir_files.METRICS).read_text().splitlines() if l.strip()]
  assert rows[0]["ranks"] == 2 and rows[-1]["ranks"] == 1 and rows[-1]["epoch"] == 5
  expected, _ = expected_snapshots()
  assert [(s["name"], s["step"]) for s in workdir_files.read_snapshots(str(workdir))] == expected

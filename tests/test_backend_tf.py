"""The tf backend (TensorFlow's collectives, no Horovod) started the way clusters start jobs: srun on a real
one-node Slurm (ranks and peers from Slurm's environment), and the one-line endings when a peer dies or a
port is taken. The guarantees it shares with Horovod (identical ranks, SIGKILL resume, the agreed SIGTERM
stop, uneven shards, exact evaluation counts) run in the same tests as Horovod's, with launch "tf"."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_module
from slurm_cluster import one_node_slurm
from test_resilience import epochs_done, kill_tree, wait_for

TINY = "--config=configs/demo_digits.py:tiny"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
  with one_node_slurm(str(tmp_path_factory.mktemp("slurm"))) as env:
    yield env


def srun_train(slurm, workdir, data, *overrides, extra_env=None):
  command = ["srun", "-n", "2", "--job-name=tfscale-test", sys.executable, "-m", "tfscale.train", TINY,
             f"--workdir={workdir}", f"--config.data.dir={data}", "--config.train.backend=tf", *overrides]
  return subprocess.Popen(command, cwd=REPO, env=dict(slurm, **(extra_env or {})), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def cancel_jobs(slurm):
  """srun killed by a test leaves its tasks to slurmstepd: cancel them with the job."""
  subprocess.run(["scancel", "--full", "--signal=KILL", "--name=tfscale-test"], env=slurm, capture_output=True)


def srun_rank(job, rank: int) -> list:
  """Rank `rank`'s training process of an srun job (slurmstepd starts it, not srun: found by its workdir)."""
  found = []
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        cmdline = open(f"/proc/{entry}/cmdline").read()
        environ = open(f"/proc/{entry}/environ").read()
      except OSError:
        continue
      if "tfscale.train" in cmdline and job.args[job.args.index(TINY) + 1] in cmdline \
          and f"\0SLURM_PROCID={rank}\0" in f"\0{environ}":
        found.append(int(entry))
  return found


def test_srun_trains_two_ranks_from_slurms_environment(slurm, digits_shards, tmp_path):
  workdir = tmp_path / "run"
  job = srun_train(slurm, workdir, digits_shards)
  output = job.communicate(timeout=600)[0]
  assert job.returncode == 0, output[-3000:]
  from tfscale import workdir as workdir_files
  software = workdir_files.read_software(str(workdir))
  assert software["backend"] == "tf" and software["launcher"] == "srun", software
  assert "TF collectives (srun rendezvous)" in output and output.count("software: ") == 1  # rank 0 alone logs
  rows = [json.loads(line) for line in (workdir / workdir_files.METRICS).read_text().splitlines()]
  assert len(rows) == 5 and rows[-1]["ranks"] == 2
  assert [s["phase"] for s in workdir_files.read_snapshots(str(workdir))] == ["cycle1", "collapse"]


def test_srun_a_dead_peer_ends_the_job_in_one_line_within_90_seconds(slurm, digits_shards, tmp_path):
  """srun does not end a step when one task is killed (--kill-on-bad-exit is off by default): the survivor's
  next collective must fail, and it says so in one line instead of hanging."""
  workdir = tmp_path / "run"
  job = srun_train(slurm, workdir, digits_shards, "--config.train.checkpoint_every_steps=1000")
  try:
    wait_for(lambda: epochs_done(workdir) >= 1 or job.poll() is not None, 400, "epoch 1")
    assert job.poll() is None
    rank1 = srun_rank(job, 1)
    assert len(rank1) == 1, rank1
    os.kill(rank1[0], signal.SIGKILL)
    killed = time.time()
    output = job.communicate(timeout=300)[0]
    took = time.time() - killed
  finally:
    kill_tree(job)
    cancel_jobs(slurm)
  print(f"job ended {took:.1f} s after SIGKILL to rank 1")
  assert job.returncode != 0 and took < 90, output[-3000:]
  errors = [line for line in output.splitlines() if line.startswith("tfscale.train: error:")]
  assert len(errors) == 1 and "rank 0" in errors[0] and "peer" in errors[0], output[-3000:]
  assert "Traceback" not in output, output[-3000:]


def test_srun_a_port_already_in_use_ends_the_job_in_one_line(slurm, digits_shards, tmp_path):
  """Under srun each rank listens on TFSCALE_TF_PORT + its local rank: rank 1's is taken here. Rank 1 says
  so and exits; rank 0, whose peer never comes, ends after the join timeout (30 s here, 120 s by default)."""
  with socket.socket() as taken:
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    port = taken.getsockname()[1]
    started = time.time()
    job = srun_train(slurm, tmp_path / "run", digits_shards,
                     extra_env={"TFSCALE_TF_PORT": str(port - 1), "TFSCALE_TF_JOIN_TIMEOUT": "30"})
    try:
      output = job.communicate(timeout=300)[0]
    finally:
      kill_tree(job)
      cancel_jobs(slurm)
  took = time.time() - started
  assert job.returncode != 0 and took < 120, output[-3000:]
  errors = [line for line in output.splitlines() if line.startswith("tfscale.train: error:")]
  assert len(errors) == 2, output[-3000:]
  assert any("rank 1 cannot listen on" in line and f"port {port} is already in use" in line for line in errors), errors
  assert any("rank 0 could not join 2 ranks" in line and "within 30 s" in line for line in errors), errors
  assert "Traceback" not in output, output[-3000:]


def test_elastic_on_the_tf_backend_is_refused_in_one_line(digits_shards, tmp_path):
  result = run_module("tfscale.train", TINY, f"--workdir={tmp_path / 'run'}", f"--config.data.dir={digits_shards}",
                      "--config.train.backend=tf", "--config.train.elastic=True", check=False)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == [
      "tfscale.train: error: train.elastic needs train.backend='horovod' (the tf backend's world is fixed at start-up)"]

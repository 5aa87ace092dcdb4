"""Collapses branched off the main line, on 2 Horovod ranks: the main line gets back exactly the state it had
before the branch, and a run stopped or killed inside a branch, or between a branch and the next main-line
step, resumes to the snapshots of an uninterrupted run.

The tiny branched digits plan (configs/demo_digits.py:tiny_branched, 22 steps per epoch at 2 × 32): warmup [0, 22), cycle1
[22, 44), the branch collapse1 [44, 66) ending in a snapshot, the main line's collapse [66, 110).
"""
import json
import os
import shutil
import signal
import time

import numpy as np
import pytest

import test_resilience
from test_resilience import kill_tree, training_workers, wait_for
from tfscale import workdir as workdir_files

BRANCH_START, BRANCH_END = 44, 66
TINY_BRANCHED = "--config=configs/demo_digits.py:tiny_branched"


def train_job(workdir, data, controller, *overrides):
  return test_resilience.train_job(workdir, data, controller, *overrides, config=TINY_BRANCHED)


def expected_snapshots():
  return test_resilience.expected_snapshots("tiny_branched")


def test_the_tiny_plan_has_the_branch_these_tests_expect():
  import sys
  from conftest import REPO
  sys.path.insert(0, REPO)
  from configs.demo_digits import get_config
  from tfscale import schedules
  plan = schedules.compile_plan(list(get_config("tiny_branched").plan), 1438 // 64, 64)
  assert plan.branches() == [(BRANCH_START, BRANCH_END, ["collapse1"])]


def latest_step(workdir) -> int:
  """The step of the checkpoint the index names (read as text: the test polls it while the run writes)."""
  try:
    text = (workdir / workdir_files.CHECKPOINTS / "checkpoint").read_text()
  except OSError:
    return -1
  return int(text.split('model_checkpoint_path: "ckpt-')[1].split('"')[0])


def branch_started(workdir) -> bool:
  return (workdir / workdir_files.MAIN_LINE_INDEX).exists()


def checkpoint_values(prefix) -> dict:
  """Every saved variable (weights, BN statistics, optimizer velocities) but the step counters."""
  import tensorflow as tf
  reader = tf.train.load_checkpoint(str(prefix))
  return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
          if "VARIABLE_VALUE" in key and "iter" not in key and "save_counter" not in key}


def assert_same_state(a: dict, b: dict, what: str):
  assert sorted(a) == sorted(b) and len(a) > 50, what
  assert any("velocity" in key or "optimizer" in key for key in a), "no optimizer slots in the state"
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{what}: {key}")


def snapshot_weights(workdir, name) -> list:
  entry = next(s for s in workdir_files.read_snapshots(str(workdir)) if s["name"] == name)
  return [w.numpy() for w in workdir_files.load_snapshot(str(workdir), entry).weights]


def main_line_weights(workdir, prefix) -> list:
  """The model weights of a checkpoint, in the snapshot model's variable order."""
  import tensorflow as tf
  entry = workdir_files.read_snapshots(str(workdir))[0]
  model = workdir_files.load_snapshot(str(workdir), entry)
  tf.train.Checkpoint(model=model).read(str(prefix)).expect_partial()
  return [w.numpy() for w in model.weights]


def stop_ranks(job, signum):
  ranks = training_workers(job, "HOROVOD_RANK=0") + training_workers(job, "HOROVOD_RANK=1")
  assert len(ranks) == 2, ranks
  for pid in ranks:
    os.kill(pid, signum)


KEEP_ALL = "--config.train.keep_checkpoints=20"  # every checkpoint stays, so the tests can read them


def wait_inside_the_branch(job, workdir):
  """Until the main line's state is kept (at step 44), then a moment more: the agreed-stop check of step
  44 runs right after the keep, in the same batch end, so a signal sent at once could still land there."""
  wait_for(lambda: branch_started(workdir) or job.poll() is not None, 400, "the branch's start")
  assert job.poll() is None
  time.sleep(0.3)


def sigterm_run(workdir, shards, ready, *overrides) -> str:
  """Starts the 2-rank run, SIGTERMs both ranks once `ready(job)` returns, and returns the output."""
  job = train_job(workdir, shards, "--gloo", *overrides)
  try:
    ready(job)
    stop_ranks(job, signal.SIGTERM)
    return job.communicate(timeout=120)[0]
  finally:
    kill_tree(job)


def finish_and_check(workdir, shards, *overrides):
  """Reruns the same command; it must end with the uninterrupted run's snapshots and last step, and the
  main line must have gone on from the kept state: the checkpoint rank 0 writes right after the branch
  holds it, weights, BN statistics and velocities alike."""
  rerun = train_job(workdir, shards, "--gloo", *overrides)
  output = rerun.communicate(timeout=600)[0]
  assert rerun.returncode == 0, output[-3000:]
  expected, total_steps = expected_snapshots()
  assert [(s["name"], s["step"]) for s in workdir_files.read_snapshots(str(workdir))] == expected
  assert latest_step(workdir) == total_steps
  assert_same_state(checkpoint_values(workdir / workdir_files.CHECKPOINTS / f"ckpt-{BRANCH_END}"),
                    checkpoint_values(workdir / workdir_files.MAIN_LINE_STATE), "after the branch vs the kept state")
  return output


def test_sigterm_inside_the_branch_resumes_the_branch(digits_shards, tmp_path):
  workdir = tmp_path / "run"
  output = sigterm_run(workdir, digits_shards, lambda job: wait_inside_the_branch(job, workdir), KEEP_ALL)
  assert "tfscale.train: stopped at step" in output, output[-3000:]
  stopped = latest_step(workdir)
  assert BRANCH_START < stopped < BRANCH_END, f"stopped at {stopped}, outside the branch"
  assert not any("collapse1" in s["phase"] for s in workdir_files.read_snapshots(str(workdir)))
  output = finish_and_check(workdir, digits_shards, KEEP_ALL)
  assert "resuming from" in output and f"at step {stopped}" in output
  assert f"the main line goes on from its state at step {BRANCH_START}" in output


def test_sigterm_at_the_branch_start_resumes_there(digits_shards, tmp_path):
  """Stops agreed once per epoch (22 steps), a SIGTERM sent in epoch 2 stops at step 44: the checkpoint
  is the main line before the branch, and the rerun keeps it again when `fit` starts."""
  workdir = tmp_path / "run"
  once_per_epoch = "--config.train.stop_check_every_steps=22"

  def after_epoch_1(job):
    wait_for(lambda: latest_step(workdir) >= 22 or job.poll() is not None, 400, "epoch 1's checkpoint")
    assert job.poll() is None
  output = sigterm_run(workdir, digits_shards, after_epoch_1, once_per_epoch, KEEP_ALL)
  assert f"tfscale.train: stopped at step {BRANCH_START} by SIGTERM" in output, output[-3000:]
  output = finish_and_check(workdir, digits_shards, once_per_epoch, KEEP_ALL)
  assert f"at step {BRANCH_START}" in output
  assert_same_state(checkpoint_values(workdir / workdir_files.CHECKPOINTS / f"ckpt-{BRANCH_START}"),
                    checkpoint_values(workdir / workdir_files.MAIN_LINE_STATE), "the resumed step vs the kept state")


EVERY_4_STEPS = "--config.train.checkpoint_every_steps=4"


def killed_inside_the_branch(workdir, shards):
  """A 2-rank run checkpointing every 4 steps, SIGKILLed (launcher and ranks) once a checkpoint inside the
  branch exists."""
  job = train_job(workdir, shards, "--gloo", EVERY_4_STEPS, KEEP_ALL)
  try:
    wait_for(lambda: latest_step(workdir) > BRANCH_START or job.poll() is not None, 400, "a checkpoint in the branch")
    assert job.poll() is None
  finally:
    kill_tree(job)
  killed_at = latest_step(workdir)
  assert BRANCH_START < killed_at < BRANCH_END, f"the kill came at step {killed_at}, outside the branch"


def test_sigkill_inside_the_branch_resumes_from_its_checkpoint_and_the_kept_state(digits_shards, tmp_path):
  workdir = tmp_path / "run"
  killed_inside_the_branch(workdir, digits_shards)
  finish_and_check(workdir, digits_shards, EVERY_4_STEPS, KEEP_ALL)


def test_stop_between_the_branch_and_the_main_line_hands_back_the_kept_state(digits_shards, tmp_path):
  """Ranks agree on stops once per epoch here (22 steps), so a SIGTERM sent inside the branch stops at its
  end, step 66: after the branch's snapshot and the main line's hand-back, before its next step. That
  checkpoint, the kept state and the checkpoint before the branch (step 44) hold the same weights, BN
  statistics and velocities; the branch's snapshot does not."""
  workdir = tmp_path / "run"
  once_per_epoch = "--config.train.stop_check_every_steps=22"
  output = sigterm_run(workdir, digits_shards, lambda job: wait_inside_the_branch(job, workdir), once_per_epoch,
                       KEEP_ALL)
  assert f"tfscale.train: stopped at step {BRANCH_END} by SIGTERM" in output, output[-3000:]
  assert latest_step(workdir) == BRANCH_END
  kept = workdir / workdir_files.MAIN_LINE_STATE
  assert json.loads((workdir / workdir_files.MAIN_LINE_INDEX).read_text())["step"] == BRANCH_START
  kept_values = checkpoint_values(kept)
  assert_same_state(checkpoint_values(workdir / workdir_files.CHECKPOINTS / f"ckpt-{BRANCH_START}"), kept_values,
                    "before the branch vs the kept state")
  assert_same_state(checkpoint_values(workdir / workdir_files.CHECKPOINTS / f"ckpt-{BRANCH_END}"), kept_values,
                    "after the branch vs the kept state")
  branch = snapshot_weights(workdir, f"collapse1-{BRANCH_END}")
  main = main_line_weights(workdir, workdir / workdir_files.CHECKPOINTS / f"ckpt-{BRANCH_END}")
  assert len(branch) == len(main) and any(not np.array_equal(b, m) for b, m in zip(branch, main))
  finish_and_check(workdir, digits_shards, once_per_epoch, KEEP_ALL)


def test_a_resume_inside_a_branch_without_its_kept_state_is_one_line(digits_shards, tmp_path):
  """A checkpoint inside the branch, and main_line/ lost: every rank stops before training, one line."""
  workdir = tmp_path / "run"
  killed_inside_the_branch(workdir, digits_shards)
  shutil.rmtree(workdir / workdir_files.MAIN_LINE)
  rerun = train_job(workdir, digits_shards, "--gloo", EVERY_4_STEPS, KEEP_ALL)
  output = rerun.communicate(timeout=300)[0]
  assert rerun.returncode != 0
  assert f"does not hold the main line's state at step {BRANCH_START}" in output, output[-3000:]


def test_elastic_refuses_a_plan_with_branches_in_one_line(digits_shards, tmp_path):
  from conftest import run_module
  result = run_module("tfscale.train", TINY_BRANCHED, f"--workdir={tmp_path}",
                      f"--config.data.dir={digits_shards}", "--config.train.elastic=True", check=False)
  assert result.returncode != 0
  lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
  assert len(lines) == 1 and "train.elastic cannot run a plan with branches" in lines[0], result.stderr

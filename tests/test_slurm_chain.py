"""Walltime chains through scripts/launch/slurm.sh's batch script, under a fake scheduler: each allocation
gets Slurm's early warning (SIGUSR1 to the batch shell) after a few seconds, the run stops at a checkpointed
step, the script requeues, and the next allocation resumes there, until the plan is done."""
import os
import signal
import subprocess
import sys

from conftest import REPO
from test_resilience import epochs_done, wait_for
from tfscale import schedules
from tfscale import workdir as workdir_files

FAKE_MPIRUN = """#!/bin/bash
# Runs the rank command (what follows cpu_env.sh N --) as one process in place of mpirun's ranks.
while (($#)) && [[ $1 != -- ]]; do shift; done
shift
exec "$@"
"""
FAKE_SCONTROL = """#!/bin/bash
echo "$*" >> "$FAKE_SLURM_LOG"
"""


def batch_script(tmp_path, workdir, data, *options):
  command = ["bash", os.path.join(REPO, "scripts/launch/slurm.sh"), "--nodes=1", "--ranks-per-node=1",
             "--cores-per-node=2", "--bind=none", "--dry-run", *options, "--", sys.executable, "-m", "tfscale.train",
             "--config=configs/demo_digits.py:tiny", f"--workdir={workdir}", f"--config.data.dir={data}"]
  script = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
  path = tmp_path / "job.sh"
  path.write_text(script)
  return script, path


def fake_bin(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, text in (("mpirun", FAKE_MPIRUN), ("scontrol", FAKE_SCONTROL), ("sbatch", FAKE_SCONTROL)):
    (bin_dir / name).write_text(text)
    (bin_dir / name).chmod(0o755)
  return bin_dir


def test_dry_run_shows_the_warning_signal_and_the_chain(tmp_path):
  script, _ = batch_script(tmp_path, "/w", "/d", "--signal-lead=600", "--max-chain=5")
  assert "#SBATCH --signal=B:USR1@600" in script and "#SBATCH --requeue" in script
  assert "scontrol requeue" in script and "allocation >= 5" in script
  resubmit, _ = batch_script(tmp_path, "/w", "/d", "--chain=resubmit")
  assert "#SBATCH --requeue" not in resubmit and "scontrol write batch_script" in resubmit and "sbatch" in resubmit
  none, _ = batch_script(tmp_path, "/w", "/d", "--chain=none")
  assert "--signal" not in none and "requeue" not in none


def test_a_recipe_finishes_across_allocations_with_no_step_lost(digits_shards, tmp_path):
  workdir = tmp_path / "run"
  _, path = batch_script(tmp_path, workdir, digits_shards)
  log = tmp_path / "slurm.log"
  env = dict(os.environ, PATH=f"{fake_bin(tmp_path)}:{os.environ['PATH']}", FAKE_SLURM_LOG=str(log),
             SLURM_JOB_ID="7")
  outputs = []
  for allocation in range(8):
    env["SLURM_RESTART_COUNT"] = str(allocation)
    requeues = log.read_text().count("requeue 7") if log.exists() else 0
    epochs_before = epochs_done(workdir)
    job = subprocess.Popen(["bash", str(path)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    # The "walltime": the warning comes once this allocation has trained an epoch (what
    # #SBATCH --signal=B:USR1@… does before the time limit), unless the plan ends first.
    wait_for(lambda: job.poll() is not None or epochs_done(workdir) > epochs_before, 300, "an epoch")
    if job.poll() is None:
      job.send_signal(signal.SIGUSR1)
    output = job.communicate(timeout=300)[0]
    outputs.append(output)
    if (log.read_text().count("requeue 7") if log.exists() else 0) == requeues:
      assert job.returncode == 0, output[-3000:]
      break
    assert job.returncode == 75, output[-3000:]
  assert len(outputs) >= 2, "the first allocation was long enough for the whole plan: nothing was chained"
  stops = [int(o.split("stopped at step ")[1].split()[0]) for o in outputs[:-1]]
  resumes = [int(line.split(" at step ")[1].split()[0]) for o in outputs[1:] for line in o.splitlines()
             if "resuming from" in line]
  assert resumes == stops, (stops, resumes)  # every allocation starts exactly where the last one stopped
  sys.path.insert(0, REPO)
  from configs.demo_digits import get_config
  plan = schedules.compile_plan(list(get_config("tiny").plan), 1438 // 32, 32)
  snapshots = workdir_files.read_snapshots(str(workdir))
  assert [(s["name"], s["step"]) for s in snapshots] == [(f"{n}-{s}", s) for n, s in plan.snapshot_steps()]

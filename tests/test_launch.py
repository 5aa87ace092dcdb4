"""The launchers' dry runs print the exact command they would run, and scripts/cpu_env.sh gives each rank
the threads of the cores it owns; one real 2-rank mpirun checks the binding and the environment."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

MINIMAL_ENV = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}


def launch(script, *args, env=None, check=True):
  result = subprocess.run([os.path.join(REPO, "scripts/launch", script), *args], capture_output=True,
                          text=True, timeout=60, env=env or MINIMAL_ENV, cwd=REPO)
  if check:
    assert result.returncode == 0, result.stderr
  return result


def cpu_env(*args, env=None):
  result = subprocess.run([os.path.join(REPO, "scripts/cpu_env.sh"), *args, "--print"], capture_output=True,
                          text=True, timeout=30, env={**MINIMAL_ENV, **(env or {})})
  assert result.returncode == 0, result.stderr
  return dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines())


TRAIN = ["--", "python", "-m", "tfscale.train", "--config=configs/resnet50_i1k_ce72.py",
         "--workdir=/pfs/runs/ce72", "--config.train.note=two words"]
CPU_ENV = os.path.join(REPO, "scripts/cpu_env.sh")


def test_mpirun_dry_run_pins_one_rank_per_socket():
  out = launch("mpirun.sh", "--hosts=node001,node002", "--ranks-per-node=2", "--cores-per-node=40",
               "--dry-run", *TRAIN).stdout.strip()
  assert out == (f"mpirun -np 4 --host node001:2,node002:2 --map-by ppr:2:node:PE=20 --bind-to core "
                 f"--report-bindings -x PATH {CPU_ENV} 20 -- python -m tfscale.train "
                 "--config=configs/resnet50_i1k_ce72.py --workdir=/pfs/runs/ce72 --config.train.note=two\\ words")


def test_mpirun_dry_run_with_image_hostfile_and_no_binding(tmp_path):
  hostfile = tmp_path / "hosts"
  hostfile.write_text("# the nodes\nknl001 slots=1\n\nknl002\nknl003  # spare\n")
  out = launch("mpirun.sh", f"--hostfile={hostfile}", "--ranks-per-node=1", "--cores-per-node=68",
               "--bind=none", "--image=/images/tfscale.sif", "--dry-run", "--", "python", "-m",
               "tfscale.evaluate").stdout.strip()
  assert out == ("mpirun -np 3 --host knl001:1,knl002:1,knl003:1 --map-by ppr:1:node --bind-to none -x PATH "
                 "apptainer exec /images/tfscale.sif /opt/tfscale/scripts/cpu_env.sh 68 -- "
                 "python -m tfscale.evaluate")


def test_horovodrun_dry_run_for_both_controllers():
  for controller in ("mpi", "gloo"):
    out = launch("horovodrun.sh", "--hosts=a,b", "--cores-per-node=4", f"--controller={controller}",
                 "--dry-run", "--", "python", "-m", "tfscale.train").stdout.strip()
    assert out == f"horovodrun -np 4 -H a:2,b:2 --{controller} {CPU_ENV} 2 -- python -m tfscale.train"


def test_slurm_dry_run_is_a_batch_script_around_the_same_mpirun():
  script = launch("slurm.sh", "--nodes=64", "--ranks-per-node=2", "--cores-per-node=48", "--time=05:00:00",
                  "--partition=skx-normal", "--image=tfscale.sif", "--stage-data=/pfs/i1k:/local/i1k",
                  "--dry-run", *TRAIN).stdout
  lines = script.splitlines()
  assert lines[0] == "#!/bin/bash"
  for directive in ("--nodes=64", "--ntasks-per-node=2", "--cpus-per-task=24", "--exclusive",
                    "--time=05:00:00", "--partition=skx-normal"):
    assert f"#SBATCH {directive}" in lines, directive
  # Apptainer binds only $HOME, $PWD and /tmp: the staging step binds both ends, the node-local one made first.
  assert "srun --ntasks-per-node=1 mkdir -p /local/i1k" in lines
  assert ("srun --ntasks-per-node=1 apptainer exec -B /pfs/i1k,/local/i1k tfscale.sif "
          "/opt/tfscale/scripts/stage_data.sh /pfs/i1k /local/i1k 2") in lines
  mpirun = next(line for line in lines if line.startswith("mpirun "))
  assert mpirun == ("mpirun -np 128 --map-by ppr:2:node:PE=24 --bind-to core --report-bindings -x PATH "
                    "apptainer exec tfscale.sif /opt/tfscale/scripts/cpu_env.sh 24 -- python -m tfscale.train "
                    "--config=configs/resnet50_i1k_ce72.py --workdir=/pfs/runs/ce72 --config.train.note=two\\ words &")
  # The walltime chain: Slurm's early warning, forwarded to mpirun; a requeue after a stop (exit 75).
  assert "#SBATCH --signal=B:USR1@300" in lines and "#SBATCH --requeue" in lines
  assert "trap 'kill -USR1 \"$launcher\" 2>/dev/null' USR1" in lines and lines[-1] == 'exit "$status"'
  # Inside an allocation Slurm provides the shape; the script then needs no --nodes/--cores-per-node.
  allocated = launch("slurm.sh", "--ranks-per-node=2", "--dry-run", "--", "true",
                     env={**MINIMAL_ENV, "SLURM_NNODES": "8", "SLURM_CPUS_ON_NODE": "40"}).stdout
  assert "#SBATCH --nodes=8" in allocated and "mpirun -np 16 --map-by ppr:2:node:PE=20" in allocated


def test_tf_backend_forms_mpirun_and_srun():
  """--backend=tf: the same mpirun with the backend chosen in the command; under Slurm srun starts the
  ranks (no MPI), pinned per rank as mpirun pins them; horovodrun refuses it."""
  out = launch("mpirun.sh", "--hosts=node001,node002", "--cores-per-node=40", "--backend=tf", "--dry-run",
               *TRAIN).stdout.strip()
  assert out == (f"mpirun -np 4 --host node001:2,node002:2 --map-by ppr:2:node:PE=20 --bind-to core "
                 f"--report-bindings -x PATH {CPU_ENV} 20 -- python -m tfscale.train "
                 "--config=configs/resnet50_i1k_ce72.py --workdir=/pfs/runs/ce72 --config.train.note=two\\ words "
                 "--config.train.backend=tf")
  script = launch("slurm.sh", "--nodes=64", "--cores-per-node=48", "--image=tfscale.sif", "--backend=tf",
                  "--dry-run", *TRAIN).stdout
  lines = script.splitlines()
  assert not any(line.startswith("mpirun") for line in lines)
  assert ("srun --nodes=64 --ntasks-per-node=2 --cpus-per-task=24 --cpu-bind=cores apptainer exec tfscale.sif "
          "/opt/tfscale/scripts/cpu_env.sh 24 -- python -m tfscale.train --config=configs/resnet50_i1k_ce72.py "
          "--workdir=/pfs/runs/ce72 --config.train.note=two\\ words --config.train.backend=tf &") in lines
  assert "# checkpointed stop at the next step (exit 75). Only the warning continues the run in a new allocation." \
      in lines and any("as SIGUSR1 through srun" in line for line in lines)
  unbound = launch("slurm.sh", "--nodes=2", "--cores-per-node=4", "--bind=none", "--backend=tf", "--chain=none",
                   "--dry-run", "--", "python", "-m", "tfscale.evaluate").stdout.splitlines()
  assert unbound[-1] == (f"srun --nodes=2 --ntasks-per-node=2 --cpus-per-task=2 --cpu-bind=none {CPU_ENV} 2 -- "
                         "python -m tfscale.evaluate --config.train.backend=tf")
  refused = launch("horovodrun.sh", "--backend=tf", "--dry-run", "--", "x", check=False)
  assert refused.returncode == 2 and refused.stderr.strip() == (
      "horovodrun.sh: horovodrun starts Horovod's ranks: for --backend=tf use mpirun.sh or slurm.sh")


@pytest.mark.parametrize("args, message", [
    (["--cores-per-node=3", "--", "x"], "3 cores per node do not split evenly over 2 ranks"),
    (["--nodes=2", "--hosts=a", "--", "x"], "--nodes=2 but 1 hosts given"),
    (["--ranks-per-node=0", "--", "x"], "--ranks-per-node must be a positive integer"),
    (["--bind=socket", "--", "x"], "--bind must be core or none"),
    (["--cores-per-node=2"], "no command"),
    (["--gpus=1", "--", "x"], "unknown option '--gpus=1'"),
    (["--backend=nccl", "--", "x"], "--backend must be horovod or tf, got 'nccl'"),
])
def test_launchers_refuse_bad_shapes_in_one_line(args, message):
  result = launch("mpirun.sh", *args, check=False)
  assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_mpirun_forwards_the_launching_shells_settings_to_remote_ranks():
  env = {**MINIMAL_ENV, "TFSCALE_TF_IFACE": "ib0", "TFSCALE_TF_TIMEOUT": "900", "TFSCALE_MALLOC": "jemalloc",
         "APPTAINER_BIND": "/pfs,/local"}
  out = launch("mpirun.sh", "--hosts=a,b", "--cores-per-node=4", "--dry-run", "--", "x", env=env).stdout
  assert " -x PATH -x APPTAINER_BIND -x TFSCALE_MALLOC -x TFSCALE_TF_IFACE -x TFSCALE_TF_TIMEOUT " in out, out


def test_slurm_script_refused_while_written_submits_nothing(tmp_path):
  """A refusal while the batch script is written (here a ':' in --stage-data's DST) must not reach sbatch:
  piped, sbatch got the lines written so far and submitted them."""
  (tmp_path / "sbatch").write_text(f"#!/bin/sh\ncat > {tmp_path}/submitted\n")
  os.chmod(tmp_path / "sbatch", 0o755)
  env = {**MINIMAL_ENV, "PATH": f"{tmp_path}:{MINIMAL_ENV['PATH']}"}
  result = launch("slurm.sh", "--nodes=1", "--cores-per-node=2", "--stage-data=/pfs/d:/local/x:y", "--", "x",
                  env=env, check=False)
  assert result.returncode == 2 and "the paths cannot contain ',' or ':'" in result.stderr
  assert not (tmp_path / "submitted").exists()
  launch("slurm.sh", "--nodes=1", "--cores-per-node=2", "--", "x", env=env)
  assert (tmp_path / "submitted").read_text().startswith("#!/bin/bash\n#SBATCH --job-name=tfscale\n")


def test_slurm_script_outside_an_allocation_needs_the_compute_nodes_cores():
  """sbatch runs on a login node: its CPU count would size every rank of the job (it did, silently)."""
  result = launch("slurm.sh", "--nodes=2", "--dry-run", "--", "x", check=False)
  assert result.returncode == 2 and result.stderr.strip() == (
      "slurm.sh: --cores-per-node=C is needed outside an allocation (the compute nodes' physical cores)")


def test_cpu_env_threads_follow_the_cores_of_the_rank():
  all_cores = os.cpu_count()
  assert cpu_env("20") == {"TF_NUM_INTRAOP_THREADS": "20", "TF_NUM_INTEROP_THREADS": "2", "OMP_NUM_THREADS": "20",
                           "KMP_AFFINITY": "granularity=fine,compact,1,0", "KMP_BLOCKTIME": "1"}
  assert cpu_env(env={"SLURM_CPUS_PER_TASK": "24"})["OMP_NUM_THREADS"] == "24"
  assert cpu_env()["TF_NUM_INTRAOP_THREADS"] == str(all_cores)
  assert cpu_env(env={"OMPI_COMM_WORLD_LOCAL_SIZE": "2"})["TF_NUM_INTRAOP_THREADS"] == str(max(1, all_cores // 2))
  assert cpu_env(env={"SLURM_NTASKS_PER_NODE": "2(x64)"})["TF_NUM_INTRAOP_THREADS"] == str(max(1, all_cores // 2))
  # An allocator on request (scripts/install.sh installs both); none by default.
  assert "LD_PRELOAD" not in cpu_env("4")
  assert cpu_env("4", env={"TFSCALE_MALLOC": "jemalloc"})["LD_PRELOAD"].endswith("/libjemalloc.so.2")
  assert cpu_env("4", env={"TFSCALE_MALLOC": "tcmalloc"})["LD_PRELOAD"].endswith("/libtcmalloc_minimal.so.4")
  wrong = subprocess.run([CPU_ENV, "4", "--print"], capture_output=True, text=True, timeout=30,
                         env={**MINIMAL_ENV, "TFSCALE_MALLOC": "hoard"})
  assert wrong.returncode == 2 and "TFSCALE_MALLOC must be" in wrong.stderr
  # A rank that the launcher bound to one CPU gets one thread, whatever the node has.
  bound = subprocess.run(["taskset", "-c", "0", CPU_ENV, "--print"], capture_output=True, text=True, timeout=30,
                         env=MINIMAL_ENV).stdout
  assert "export TF_NUM_INTRAOP_THREADS=1" in bound.splitlines()


def test_a_real_two_rank_mpirun_binds_each_rank_to_its_core(tmp_path):
  if os.cpu_count() < 2:
    pytest.skip("needs 2 CPUs")
  # Each rank writes its own file: mpirun forwards the ranks' untagged stdout through a pty in whatever
  # pieces it reads, so two ranks' lines can run together ('{...}{...}\n\n', seen in CI).
  probe = ("import json, os, sys; rank = os.environ['OMPI_COMM_WORLD_RANK']; "
           "open(os.path.join(sys.argv[1], rank + '.json'), 'w').write(json.dumps({'rank': rank, "
           "'cpus': sorted(os.sched_getaffinity(0)), 'intra': os.environ['TF_NUM_INTRAOP_THREADS'], "
           "'omp': os.environ['OMP_NUM_THREADS']}))")
  env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
  result = launch("mpirun.sh", "--ranks-per-node=2", "--cores-per-node=2", "--", sys.executable, "-c", probe,
                  str(tmp_path), env=env)
  ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in ("0", "1")
           if (tmp_path / f"{rank}.json").exists()]
  assert [r["cpus"] for r in ranks] == [[0], [1]], result.stdout + result.stderr
  assert all(r["intra"] == r["omp"] == "1" for r in ranks)


def test_tfscale_takes_its_threads_from_cpu_env_or_its_binding():
  probe = ("from tfscale import distributed; import tensorflow as tf; distributed.configure_threads(0, 0); "
           "print(tf.config.threading.get_intra_op_parallelism_threads(), "
           "tf.config.threading.get_inter_op_parallelism_threads(), distributed.cores_per_rank())")
  run = lambda prefix, extra: subprocess.run(
      [*prefix, sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO,
      env={**os.environ, **extra}).stdout.split()
  assert run([], {"TF_NUM_INTRAOP_THREADS": "7", "TF_NUM_INTEROP_THREADS": "3"})[:2] == ["7", "3"]
  if os.cpu_count() >= 2:
    assert run(["taskset", "-c", "1"], {}) == ["1", "2", "1"]


def test_the_readmes_slurm_dry_run_is_what_the_script_prints():
  readme = open(os.path.join(REPO, "README.md")).read()
  command, printed = re.search(r"\n\$ (scripts/launch/slurm\.sh .*?)\n(#!/bin/bash\n.*?)```", readme, re.S).groups()
  args = command.replace("\\\n", " ").split()
  out = launch(args[0].removeprefix("scripts/launch/"), *args[1:]).stdout
  assert out.replace(f"cd {REPO}\n", "cd /home/me/tfscale\n") == printed

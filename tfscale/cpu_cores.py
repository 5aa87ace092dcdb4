"""How many cores a rank owns: the one rule, used by tfscale (distributed.configure_threads) and by the
launchers' rank wrapper (scripts/cpu_env.sh runs this file). Standard library only, so any python3 runs it:

  python3 tfscale/cpu_cores.py [CORES_PER_RANK]      # prints the rank's cores

First that applies:
  1. an explicit count (CORES_PER_RANK, or the config's intra-op threads);
  2. SLURM_CPUS_PER_TASK (srun --cpus-per-task);
  3. the rank's CPU affinity, when the launcher bound it to fewer CPUs than the node has;
  4. the node's CPUs divided by the ranks on this node (Horovod's local size when known, else
     OMPI_COMM_WORLD_LOCAL_SIZE, SLURM_NTASKS_PER_NODE or HOROVOD_LOCAL_SIZE).
"""
import os
import sys

LOCAL_SIZE_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "HOROVOD_LOCAL_SIZE")


def cores_per_rank(explicit: int = 0, local_ranks: int = 0, environ=None) -> int:
  environ = os.environ if environ is None else environ
  if explicit:
    return int(explicit)
  if environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
    return int(environ["SLURM_CPUS_PER_TASK"])
  node = os.cpu_count() or 1
  bound = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else node
  if bound < node:
    return bound
  if not local_ranks:
    # SLURM_NTASKS_PER_NODE can read "2(x64)".
    values = [environ[v].split("(")[0] for v in LOCAL_SIZE_VARIABLES if environ.get(v, "").split("(")[0].isdigit()]
    local_ranks = int(values[0]) if values else 1
  return max(1, node // max(local_ranks, 1))


if __name__ == "__main__":
  argument = sys.argv[1] if len(sys.argv) > 1 else ""
  if argument and not argument.isdigit():
    sys.exit(f"cpu_cores.py: cores per rank must be a positive integer, got {argument!r}")
  print(cores_per_rank(int(argument or 0)))

#!/usr/bin/env bash
# Launch a tfscale command on N nodes × P ranks with Open MPI's mpirun; each rank gets its own cores and
# the thread environment for them (scripts/cpu_env.sh).
#
#   scripts/launch/mpirun.sh --hosts=node001,node002 --ranks-per-node=2 --cores-per-node=40 --dry-run \
#       -- python -m tfscale.train --config=configs/resnet50_i1k_ce72.py --workdir=/pfs/runs/ce72
#   (inside a Slurm allocation leave out --hosts: Open MPI reads the allocation)
#   --image=tfscale.sif runs the ranks with `apptainer exec` (the hybrid MPI model: host mpirun, image MPI).
set -euo pipefail
launch_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$launch_repo/scripts/launch/common.sh"
launch_parse "$@"
launch_mpirun_command
if ((dry_run)); then
  launch_print "${mpirun_command[@]}"
else
  exec "${mpirun_command[@]}"
fi

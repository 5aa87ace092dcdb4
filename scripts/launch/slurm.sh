#!/usr/bin/env bash
# Submit a tfscale command to Slurm as N nodes × P ranks (the paper: 2 ranks per 2-socket Skylake node).
#
#   scripts/launch/slurm.sh --nodes=64 --ranks-per-node=2 --cores-per-node=40 --time=05:00:00 \
#       --image=tfscale.sif --stage-data=/pfs/i1k:/local/i1k --dry-run \
#       -- python -m tfscale.train --config=configs/resnet50_i1k_ce72.py --workdir=/pfs/runs/ce72 \
#          --config.data.dir=/local/i1k
#
# Writes a batch script and pipes it to sbatch; --dry-run prints the script instead. Inside it mpirun
# reads the allocation (no host list) and pins rank r of a node to cores [r·C/P, (r+1)·C/P).
set -euo pipefail
launch_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$launch_repo/scripts/launch/common.sh"
launch_parse "$@"
((${#hosts[@]} == 0)) || launch_die "Slurm picks the nodes: leave out --hosts/--hostfile"
launch_mpirun_command

batch_script() {
  echo "#!/bin/bash"
  echo "#SBATCH --job-name=$slurm_job_name"
  echo "#SBATCH --nodes=$nodes"
  echo "#SBATCH --ntasks-per-node=$ranks_per_node"
  echo "#SBATCH --cpus-per-task=$cores_per_rank"
  echo "#SBATCH --exclusive"
  echo "#SBATCH --time=$slurm_time"
  echo "#SBATCH --output=%x-%j.out"
  [[ -n $slurm_partition ]] && echo "#SBATCH --partition=$slurm_partition"
  [[ -n $slurm_account ]] && echo "#SBATCH --account=$slurm_account"
  echo "set -euo pipefail"
  echo "cd $(printf '%q' "$PWD")"
  if [[ -n $stage_data ]]; then
    [[ $stage_data == *:* ]] || launch_die "--stage-data wants SRC:DST"
    local stage=("$launch_repo/scripts/stage_data.sh" "${stage_data%%:*}" "${stage_data#*:}" "$ranks_per_node")
    [[ -n $image ]] && stage=(apptainer exec "$image" /opt/tfscale/scripts/stage_data.sh "${stage[@]:1}")
    echo "# each node copies the shards its ranks will read (the input pipeline's file-to-rank rule)"
    launch_print srun --ntasks-per-node=1 "${stage[@]}"
  fi
  launch_print "${mpirun_command[@]}"
}

if ((dry_run)); then
  batch_script
else
  batch_script | sbatch
fi

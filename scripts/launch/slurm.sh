#!/usr/bin/env bash
# Submit a tfscale command to Slurm as N nodes × P ranks (the paper: 2 ranks per 2-socket Skylake node).
#
#   scripts/launch/slurm.sh --nodes=64 --ranks-per-node=2 --cores-per-node=40 --time=05:00:00 \
#       --image=tfscale.sif --stage-data=/pfs/i1k:/local/i1k --dry-run \
#       -- python -m tfscale.train --config=configs/resnet50_i1k_ce72.py --workdir=/pfs/runs/ce72 \
#          --config.data.dir=/local/i1k
#
# Writes a batch script and pipes it to sbatch; --dry-run prints the script instead. Inside it mpirun
# reads the allocation (no host list) and pins rank r of a node to cores [r·C/P, (r+1)·C/P); with
# --backend=tf srun starts the ranks instead (TF's collectives need no MPI) and pins them the same way.
#
# Walltime chains. The job asks Slurm for an early warning (`--signal=B:USR1@LEAD`, default 300 s before
# the time limit) sent to the batch shell, which forwards it to mpirun (or srun); either forwards SIGUSR1
# to every rank, the ranks agree on a stop at the next step, rank 0 checkpoints it and all exit 75. The script then
# requeues the job (`scontrol requeue`, --chain=requeue, the default; the job keeps its id and appends to
# its output) or submits its own batch script again (--chain=resubmit: `scontrol write batch_script` then
# `sbatch`, for sites that forbid requeueing), until a run exits 0 (the plan is finished) or --max-chain
# allocations have run. scancel (SIGTERM to the batch shell) also checkpoints, but never requeues.
set -euo pipefail
launch_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$launch_repo/scripts/launch/common.sh"
launch_parse "$@"
((${#hosts[@]} == 0)) || launch_die "Slurm picks the nodes: leave out --hosts/--hostfile"
if [[ $backend == tf ]]; then
  launch_srun_command
  job_command=("${srun_command[@]}")
else
  launch_mpirun_command
  job_command=("${mpirun_command[@]}")
fi

batch_script() {
  case $slurm_chain in requeue|resubmit|none) ;; *) launch_die "--chain must be requeue, resubmit or none" ;; esac
  [[ $slurm_signal_lead =~ ^[0-9]+$ && $slurm_max_chain =~ ^[1-9][0-9]*$ ]] || \
    launch_die "--signal-lead and --max-chain take whole numbers"
  echo "#!/bin/bash"
  echo "#SBATCH --job-name=$slurm_job_name"
  echo "#SBATCH --nodes=$nodes"
  echo "#SBATCH --ntasks-per-node=$ranks_per_node"
  echo "#SBATCH --cpus-per-task=$cores_per_rank"
  echo "#SBATCH --exclusive"
  echo "#SBATCH --time=$slurm_time"
  echo "#SBATCH --output=%x-%j.out"
  echo "#SBATCH --open-mode=append"
  if [[ $slurm_chain != none ]]; then
    echo "#SBATCH --signal=B:USR1@$slurm_signal_lead"
    [[ $slurm_chain == requeue ]] && echo "#SBATCH --requeue"
  fi
  [[ -n $slurm_partition ]] && echo "#SBATCH --partition=$slurm_partition"
  [[ -n $slurm_account ]] && echo "#SBATCH --account=$slurm_account"
  echo "set -euo pipefail"
  echo "cd $(printf '%q' "$PWD")"
  if [[ -n $stage_data ]]; then
    [[ $stage_data == *:* ]] || launch_die "--stage-data wants SRC:DST"
    local src=${stage_data%%:*} dst=${stage_data#*:}
    [[ $src$dst != *[,:]* ]] || launch_die "--stage-data=SRC:DST: the paths cannot contain ',' or ':'"
    local stage=("$launch_repo/scripts/stage_data.sh" "$src" "$dst" "$ranks_per_node")
    echo "# each node copies the shards its ranks will read (the input pipeline's file-to-rank rule)"
    if [[ -n $image ]]; then  # Apptainer binds only $HOME, $PWD and /tmp: both ends, DST made first
      launch_print srun --ntasks-per-node=1 mkdir -p "$dst"
      stage=(apptainer exec -B "$src,$dst" "$image" /opt/tfscale/scripts/stage_data.sh "${stage[@]:1}")
    fi
    launch_print srun --ntasks-per-node=1 "${stage[@]}"
  fi
  if [[ $slurm_chain == none ]]; then
    launch_print "${job_command[@]}"
    return
  fi
  local requeue='scontrol requeue "$SLURM_JOB_ID"'
  [[ $slurm_chain == resubmit ]] && \
    requeue='scontrol write batch_script "$SLURM_JOB_ID" - | sbatch --export=ALL,TFSCALE_CHAIN_COUNT=$allocation'
  cat <<SCRIPT
# The early warning (USR1) and scancel (TERM) reach the ranks as SIGUSR1 through ${job_command[0]}: one agreed,
# checkpointed stop at the next step (exit 75). Only the warning continues the run in a new allocation.
set +e
cancelled=0
trap 'kill -USR1 "\$launcher" 2>/dev/null' USR1
trap 'cancelled=1; kill -USR1 "\$launcher" 2>/dev/null' TERM
$(launch_print "${job_command[@]}") &
launcher=\$!
while :; do wait "\$launcher"; status=\$?; kill -0 "\$launcher" 2>/dev/null || break; done
if ((status == 75 && !cancelled)); then
  allocation=\$(( \${SLURM_RESTART_COUNT:-\${TFSCALE_CHAIN_COUNT:-0}} + 1 ))
  if ((allocation >= $slurm_max_chain)); then
    echo "tfscale: stopped before the end of the plan after \$allocation allocations (--max-chain=$slurm_max_chain)" >&2
  else
    echo "tfscale: stopped before the end of the plan (allocation \$allocation); $slurm_chain to resume" >&2
    $requeue
  fi
fi
exit "\$status"
SCRIPT
}

# Whole before anything sees it: a refusal while writing it must not leave sbatch half a script to submit.
script=$(batch_script)
if ((dry_run)); then
  printf '%s\n' "$script"
else
  printf '%s\n' "$script" | sbatch
fi

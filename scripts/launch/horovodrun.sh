#!/usr/bin/env bash
# Launch a tfscale command with horovodrun (MPI or Gloo controller) on N nodes × P ranks.
#
#   scripts/launch/horovodrun.sh --hosts=node001,node002 --ranks-per-node=2 --controller=gloo --dry-run \
#       -- python -m tfscale.train --config=configs/resnet50_i1k_ce72.py --workdir=/pfs/runs/ce72
#
# horovodrun reaches other nodes over ssh and starts ranks unbound (its mpirun runs `-bind-to none
# -map-by slot`), so each rank's scripts/cpu_env.sh gives it cores-per-node ÷ ranks-per-node threads.
# Use mpirun.sh where ranks should be pinned to sockets.
set -euo pipefail
launch_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$launch_repo/scripts/launch/common.sh"
launch_parse "$@"
[[ $backend == horovod ]] || launch_die "horovodrun starts Horovod's ranks: for --backend=$backend use mpirun.sh or slurm.sh"
((${#hosts[@]})) || { ((nodes == 1)) && hosts=(localhost); } ||
  launch_die "horovodrun needs --hosts or --hostfile for $nodes nodes"
launch_rank_command
host_slots=()
for host in "${hosts[@]}"; do host_slots+=("$host:$ranks_per_node"); done
horovodrun_command=(horovodrun -np "$world_size" -H "$(IFS=,; echo "${host_slots[*]}")" "--$controller")
horovodrun_command+=("${rank_command[@]}")
if ((dry_run)); then
  launch_print "${horovodrun_command[@]}"
else
  exec "${horovodrun_command[@]}"
fi

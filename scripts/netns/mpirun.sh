#!/usr/bin/env bash
# mpirun over the namespace hosts of up.sh: RANKS_PER_HOST ranks on each, all MPI traffic over the shaped
# links (TCP only: the shared-memory transport would bypass them).
#
#   scripts/netns/mpirun.sh [--ranks-per-host=1] [--dry-run] -- python -m tfscale_tools.bench comm_worker
set -euo pipefail
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$dir/common.sh"
source "$dir/../launch/common.sh"   # launch_print
per_host=1 dry_run=0
while (($#)); do
  case $1 in
    --ranks-per-host=*) per_host=${1#*=} ;;
    --dry-run) dry_run=1 ;;
    --) shift; break ;;
    *) netns_die "usage: mpirun.sh [--ranks-per-host=P] [--dry-run] -- COMMAND…" ;;
  esac
  shift
done
(($#)) || netns_die "no command after --"
[[ -r $netns_state/hosts ]] || netns_die "no namespace hosts: run scripts/netns/up.sh first"
mapfile -t addresses < <(cut -d' ' -f1 "$netns_state/hosts")
slots=()
for address in "${addresses[@]}"; do slots+=("$address:$per_host"); done
command=(mpirun -np $((${#addresses[@]} * per_host)) --host "$(IFS=,; echo "${slots[*]}")"
         --mca plm_rsh_agent "$dir/rsh" --mca btl tcp,self
         --mca btl_tcp_if_include "$netns_subnet.0/24" --mca oob_tcp_if_include "$netns_subnet.0/24"
         --bind-to none -x PATH "$@")
if ((dry_run)); then
  launch_print "${command[@]}"
else
  exec "${command[@]}"
fi

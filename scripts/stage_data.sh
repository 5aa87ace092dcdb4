#!/usr/bin/env bash
# Stage each node's shards from the parallel file system to node-local storage before a run.
# Run it once per node, e.g. under Slurm:
#   srun --ntasks-per-node=1 scripts/stage_data.sh /pfs/i1k /local/i1k 2
# then train with --config.data.dir=/local/i1k. Arguments: SRC DST RANKS_PER_NODE; the node index and
# count come from Slurm (SLURM_NODEID, SLURM_NNODES) or Open MPI (OMPI_COMM_WORLD_RANK/SIZE with one
# process per node), or NODE/NODES in the environment.
set -euo pipefail
[[ $# -eq 3 ]] || { echo "usage: $0 SRC DST RANKS_PER_NODE" >&2; exit 2; }
src=$1 dst=$2 ranks_per_node=$3
node=${NODE:-${SLURM_NODEID:-${OMPI_COMM_WORLD_RANK:-0}}}
nodes=${NODES:-${SLURM_NNODES:-${OMPI_COMM_WORLD_SIZE:-1}}}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-${TFSCALE_VENV:-$repo/.venv}/bin/python}
[[ -x $python ]] || python=python3
cd "$repo"
exec "$python" -m tfscale_tools.staging --src="$src" --dst="$dst" --node="$node" --nodes="$nodes" \
  --ranks_per_node="$ranks_per_node"

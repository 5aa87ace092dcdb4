# Shared by mpirun.sh, horovodrun.sh and slurm.sh: one flag parser and one place that turns the job's
# shape (nodes × ranks per node × cores per rank) into launcher arguments. Sourced, never run.

launch_usage() {
  cat >&2 <<EOF
usage: $(basename "$0") [options] -- COMMAND [ARGS…]
  --nodes=N             nodes in the job (default: the hosts given, or the Slurm allocation, or 1)
  --ranks-per-node=P    ranks per node (default 2: one per socket of a 2-socket node, as in the paper)
  --cores-per-node=C    physical cores per node (default: SLURM_CPUS_ON_NODE inside an allocation, else
                        this machine's physical cores; slurm.sh outside an allocation needs it)
  --hosts=H1,H2,…       node names (mpirun/horovodrun; each gets P slots)
  --hostfile=FILE       one node name per line instead of --hosts
  --image=FILE.sif      run every rank inside this Apptainer/Singularity image (hybrid MPI model)
  --bind=core|none      pin each rank to its cores (default) or not (shared or oversubscribed machines)
  --controller=mpi|gloo horovodrun only (default mpi)
  --backend=horovod|tf  what carries the collectives (default horovod); tf adds --config.train.backend=tf
                        to the command, and slurm.sh then starts the ranks with srun instead of mpirun
  --time=HH:MM:SS --partition=NAME --account=NAME --job-name=NAME   slurm.sh only
  --stage-data=SRC:DST  slurm.sh only: copy each node's shards to node-local DST before training
  --chain=requeue|resubmit|none  slurm.sh only: continue the run in a new allocation after the walltime
                        warning (default requeue)
  --signal-lead=SECONDS slurm.sh only: how long before the time limit Slurm warns (default 300)
  --max-chain=N         slurm.sh only: allocations at most (default 20)
  --dry-run             print the exact command (slurm.sh: the batch script) instead of running it
EOF
  exit 2
}

launch_die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# Sets: nodes ranks_per_node cores_per_node hosts[] image bind controller backend dry_run slurm_* stage_data
# and command[] (everything after --).
launch_parse() {
  nodes="" ranks_per_node=2 cores_per_node="" image="" bind=core controller=mpi backend=horovod dry_run=0
  slurm_time=01:00:00 slurm_partition="" slurm_account="" slurm_job_name=tfscale stage_data=""
  slurm_chain=requeue slurm_signal_lead=300 slurm_max_chain=20
  hosts=() command=()
  local hostfile=""
  while (($#)); do
    case $1 in
      --nodes=*) nodes=${1#*=} ;;
      --ranks-per-node=*) ranks_per_node=${1#*=} ;;
      --cores-per-node=*) cores_per_node=${1#*=} ;;
      --hosts=*) IFS=, read -r -a hosts <<<"${1#*=}" ;;
      --hostfile=*) hostfile=${1#*=} ;;
      --image=*) image=${1#*=} ;;
      --bind=*) bind=${1#*=} ;;
      --controller=*) controller=${1#*=} ;;
      --backend=*) backend=${1#*=} ;;
      --time=*) slurm_time=${1#*=} ;;
      --partition=*) slurm_partition=${1#*=} ;;
      --account=*) slurm_account=${1#*=} ;;
      --job-name=*) slurm_job_name=${1#*=} ;;
      --stage-data=*) stage_data=${1#*=} ;;
      --chain=*) slurm_chain=${1#*=} ;;
      --signal-lead=*) slurm_signal_lead=${1#*=} ;;
      --max-chain=*) slurm_max_chain=${1#*=} ;;
      --dry-run) dry_run=1 ;;
      --) shift; command=("$@"); break ;;
      -h|--help) launch_usage ;;
      *) launch_die "unknown option '$1' (see --help)" ;;
    esac
    shift
  done
  ((${#command[@]})) || launch_die "no command: put it after --, e.g. -- python -m tfscale.train --config=…"
  if [[ -n $hostfile ]]; then
    [[ -r $hostfile ]] || launch_die "cannot read hostfile $hostfile"
    mapfile -t hosts < <(sed -e 's/#.*//' -e 's/[[:space:]].*//' -e '/^$/d' "$hostfile")
  fi
  if [[ -z $nodes ]]; then
    if ((${#hosts[@]})); then nodes=${#hosts[@]}; else nodes=${SLURM_NNODES:-${SLURM_JOB_NUM_NODES:-1}}; fi
  fi
  if ((${#hosts[@]})) && ((${#hosts[@]} != nodes)); then
    launch_die "--nodes=$nodes but ${#hosts[@]} hosts given"
  fi
  if [[ -z $cores_per_node ]]; then
    if [[ -n ${SLURM_CPUS_ON_NODE:-} ]]; then  # Slurm's CPUs: hardware threads where ThreadsPerCore > 1
      cores_per_node=$((SLURM_CPUS_ON_NODE / ${SLURM_THREADS_PER_CORE:-1}))
    elif [[ $(basename "$0") == slurm.sh ]]; then  # sbatch runs on a login node, whose CPUs say nothing
      launch_die "--cores-per-node=C is needed outside an allocation (the compute nodes' physical cores)"
    else  # this machine's physical cores (hyperthreads are not cores: one rank thread per core)
      cores_per_node=$({ lscpu -p=core,socket 2>/dev/null || true; } | { grep -v '^#' || true; } | sort -u | wc -l)
      ((cores_per_node)) || cores_per_node=$(nproc --all)
    fi
  fi
  for value in nodes ranks_per_node cores_per_node; do
    [[ ${!value} =~ ^[1-9][0-9]*$ ]] || launch_die "--${value//_/-} must be a positive integer, got '${!value}'"
  done
  ((cores_per_node % ranks_per_node == 0)) ||
    launch_die "$cores_per_node cores per node do not split evenly over $ranks_per_node ranks"
  cores_per_rank=$((cores_per_node / ranks_per_node))
  world_size=$((nodes * ranks_per_node))
  [[ $bind == core || $bind == none ]] || launch_die "--bind must be core or none, got '$bind'"
  [[ $controller == mpi || $controller == gloo ]] || launch_die "--controller must be mpi or gloo"
  [[ $backend == horovod || $backend == tf ]] || launch_die "--backend must be horovod or tf, got '$backend'"
  [[ $backend == horovod ]] || command+=(--config.train.backend="$backend")
  return 0
}

# The command every rank runs: the thread environment for its cores, inside the image if there is one.
# Inside the image the repository is at /opt/tfscale (Dockerfile, singularity/tfscale.def).
launch_rank_command() {
  rank_command=()
  if [[ -n $image ]]; then
    rank_command=(apptainer exec "$image" /opt/tfscale/scripts/cpu_env.sh "$cores_per_rank" -- "${command[@]}")
  else
    rank_command=("$launch_repo/scripts/cpu_env.sh" "$cores_per_rank" -- "${command[@]}")
  fi
}

# mpirun arguments for the job's shape. Open MPI's ppr:P:node:PE=C gives each rank C consecutive cores;
# hwloc numbers cores socket by socket, so with P = sockets per node each rank owns one socket.
launch_mpirun_command() {
  launch_rank_command
  mpirun_command=(mpirun -np "$world_size")
  if ((${#hosts[@]})); then
    local host_slots=()
    for host in "${hosts[@]}"; do host_slots+=("$host:$ranks_per_node"); done
    mpirun_command+=(--host "$(IFS=,; echo "${host_slots[*]}")")
  fi
  if [[ $bind == core ]]; then
    mpirun_command+=(--map-by "ppr:$ranks_per_node:node:PE=$cores_per_rank" --bind-to core --report-bindings)
  else
    mpirun_command+=(--map-by "ppr:$ranks_per_node:node" --bind-to none)
  fi
  # Remote ranks do not inherit the launching shell's environment: the ones a venv needs, the image's bind
  # paths (Apptainer binds only $HOME, $PWD and /tmp: APPTAINER_BIND=/pfs,/local), and every TFSCALE_* the
  # shell set (the allocator, the tf backend's interface, port and timeouts).
  local name forwarded=(PATH LD_LIBRARY_PATH PYTHONPATH APPTAINER_BIND SINGULARITY_BIND)
  for name in "${forwarded[@]}" $(compgen -e | grep "^TFSCALE_" | sort); do
    [[ -n ${!name:-} ]] && mpirun_command+=(-x "$name")
  done
  mpirun_command+=("${rank_command[@]}")
}

# srun arguments for the job's shape (the tf backend under Slurm: ranks and peers from Slurm's environment,
# no MPI). srun does not take --cpus-per-task from the batch script since Slurm 22.05, so it is given here;
# srun forwards SIGUSR1 and SIGTERM to every task, as mpirun does.
launch_srun_command() {
  launch_rank_command
  srun_command=(srun --nodes="$nodes" --ntasks-per-node="$ranks_per_node" --cpus-per-task="$cores_per_rank")
  if [[ $bind == core ]]; then srun_command+=(--cpu-bind=cores); else srun_command+=(--cpu-bind=none); fi
  srun_command+=("${rank_command[@]}")
}

# Prints an argv as one shell-quoted line (what --dry-run shows, and what a user can paste).
launch_print() {
  local out="" word
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then out+="$word "; else out+="$(printf '%q' "$word") "; fi
  done
  echo "${out% }"
}

#!/usr/bin/env bash
# CPU threading environment for one tfscale rank, from the cores that rank owns.
#
#   source scripts/cpu_env.sh [CORES_PER_RANK]         # in a shell: exports the variables
#   scripts/cpu_env.sh [CORES_PER_RANK] -- CMD ARGS…   # as a rank wrapper: exports them, then execs CMD
#   scripts/cpu_env.sh [CORES_PER_RANK] --print        # shows what it would set
#
# The launchers in scripts/launch/ put it in front of every rank's command, so each rank computes its
# share on its own node after mpirun/srun have bound it. Cores per rank: tfscale/cpu_cores.py's rule (the
# one tfscale applies itself): CORES_PER_RANK, else SLURM_CPUS_PER_TASK, else the rank's CPU affinity when
# bound, else the node's CPUs ÷ the ranks on this node.
#
# What each variable does with the stock TensorFlow wheel (measured on 2.18; 2.21, too, is oneDNN built on TF's own thread pool;
# `ldd` shows no OpenMP runtime linked):
#   TF_NUM_INTRAOP_THREADS  read by TF and by tfscale (distributed.configure_threads): the oneDNN and Eigen
#                           pool. The one that matters: 1 thread instead of 2 loses 41 % here.
#   TF_NUM_INTEROP_THREADS  TF's pool for independent ops; 2 measured +6 % fp32 / +16 % bf16 over 1.
#   OMP_NUM_THREADS         inert for TF ops; bounds OpenMP in NumPy/BLAS and in OpenMP builds of TF
#                           (intel-tensorflow and custom builds), where it is the intra-op count.
#   KMP_AFFINITY, KMP_BLOCKTIME  Intel OpenMP runtime only: inert with the stock wheel, right for OpenMP
#                           builds (threads pinned compactly, and 1 ms spinning after a parallel region so
#                           the next op finds them awake without starving the input pipeline's threads).
#   LD_PRELOAD              only when TFSCALE_MALLOC=jemalloc or tcmalloc asks for that allocator (Debian's
#                           libjemalloc2 / libtcmalloc-minimal4, which scripts/install.sh and the images
#                           carry). Off by default: on the 2-core development machine neither made the
#                           ResNet-50 step faster (docs/BENCHMARKS.md, 2026-11-29); nodes with many threads per
#                           rank are where glibc malloc's arenas are known to contend, so measure there.
# An explicit `--config.train.intra_op_threads` / `inter_op_threads` still wins over this file.
_tfscale_cores_per_rank() {
  # The rule lives in tfscale/cpu_cores.py (standard library only), which tfscale itself uses too.
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  "${TFSCALE_PYTHON:-python3}" "$here/../tfscale/cpu_cores.py" "${1:-}"
}

_tfscale_malloc() {
  local library path
  case ${TFSCALE_MALLOC:-system} in
    system) return 0 ;;
    jemalloc) library=libjemalloc.so.2 ;;
    tcmalloc) library=libtcmalloc_minimal.so.4 ;;
    *) echo "cpu_env.sh: TFSCALE_MALLOC must be system, jemalloc or tcmalloc, got '$TFSCALE_MALLOC'" >&2; return 2 ;;
  esac
  path=$(/sbin/ldconfig -p 2>/dev/null | awk -v lib="$library" '$1 == lib {print $NF; exit}')
  [[ -n $path ]] || { echo "cpu_env.sh: TFSCALE_MALLOC=$TFSCALE_MALLOC but $library is not installed" >&2; return 2; }
  export LD_PRELOAD=${LD_PRELOAD:+$LD_PRELOAD:}$path
}

_tfscale_cpu_env() {
  local cores
  cores=$(_tfscale_cores_per_rank "${1:-}")
  [[ $cores =~ ^[1-9][0-9]*$ ]] || { echo "cpu_env.sh: cores per rank must be a positive integer, got '$cores'" >&2; return 2; }
  export TF_NUM_INTRAOP_THREADS=$cores
  export TF_NUM_INTEROP_THREADS=2
  export OMP_NUM_THREADS=$cores
  export KMP_AFFINITY=granularity=fine,compact,1,0
  export KMP_BLOCKTIME=1
  _tfscale_malloc
}

_tfscale_cpu_env_main() {
  local cores=""
  if [[ ${1:-} =~ ^[0-9]+$ ]]; then cores=$1; shift; fi
  _tfscale_cpu_env "$cores" || return $?
  case ${1:-} in
    --print)
      for name in TF_NUM_INTRAOP_THREADS TF_NUM_INTEROP_THREADS OMP_NUM_THREADS KMP_AFFINITY KMP_BLOCKTIME; do
        echo "export $name=${!name}"
      done
      [[ ${TFSCALE_MALLOC:-system} == system ]] || echo "export LD_PRELOAD=$LD_PRELOAD" ;;
    --)
      shift
      (($#)) || { echo "cpu_env.sh: no command after --" >&2; return 2; }
      exec "$@" ;;
    "") ;;
    *) echo "cpu_env.sh: usage: cpu_env.sh [CORES_PER_RANK] [--print | -- CMD …]" >&2; return 2 ;;
  esac
}

_tfscale_cpu_env_main "$@"

"""The Horovod boundary: the only module that imports horovod; everything else asks it.

With one process (no horovodrun) Horovod initialises as a world of size 1, so the same code runs
single-process and at 512 ranks.
"""
import ctypes
import ctypes.util
import os
import platform

import numpy as np
import tensorflow as tf
import tf_keras

import horovod
import horovod.tensorflow as hvd
import horovod.tensorflow.keras as hvd_keras
from tfscale import cpu_cores

_initialized = False


# Horovod's background thread negotiates every few milliseconds, and Open MPI busy-polls while it waits for
# the other ranks. Every core of a rank already runs oneDNN threads, so that polling takes compute from its
# own rank: 2 ranks × 1 core trained ResNet-50 at 61 % of one rank alone with Open MPI's default polling,
# 101 % (WRN-50-2: 97 %) with MPI yielding the core when idle (docs/BENCHMARKS.md, weak scaling). Set before hvd.init(): MPI reads its MCA parameters at MPI_Init; the
# environment (or mpirun --mca) still wins. A longer HOROVOD_CYCLE_TIME did not help measurably and delays
# every allreduce (161 unfused ones took 3.2 s at 20 ms), so Horovod's own stays.
RUNTIME_DEFAULTS = {"OMPI_MCA_mpi_yield_when_idle": "1"}


def init():
  """Initialises Horovod once; safe to call again."""
  global _initialized
  if not _initialized:
    for name, value in RUNTIME_DEFAULTS.items():
      os.environ.setdefault(name, value)
    hvd.init()
    _initialized = True


def rank() -> int:
  init()
  return hvd.rank()


def size() -> int:
  init()
  return hvd.size()


def local_rank() -> int:
  init()
  return hvd.local_rank()


def local_size() -> int:
  init()
  return hvd.local_size()


def mpi_library() -> str:
  """The MPI library Horovod is linked with, as it names itself (MPI_Get_library_version, which MPI allows
  before MPI_Init): e.g. "Open MPI v4.1.4"; "none" when no libmpi is installed."""
  name = ctypes.util.find_library("mpi")
  if not name:
    return "none"
  buffer, length = ctypes.create_string_buffer(8192), ctypes.c_int()  # MPICH's MPI_MAX_LIBRARY_VERSION_STRING
  if ctypes.CDLL(name).MPI_Get_library_version(buffer, ctypes.byref(length)) != 0:
    return f"{name} (version unknown)"
  return buffer.value.decode(errors="replace").strip().splitlines()[0].split(",")[0]


def software() -> dict:
  """What this run executes on: rank 0 logs it first and records it in config.json."""
  init()
  return {"python": platform.python_version(), "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
          "horovod": horovod.__version__, "controller": "mpi" if hvd.mpi_enabled() else "gloo",
          "mpi": mpi_library()}


def software_line(versions: dict) -> str:
  return (f"Python {versions['python']}, TensorFlow {versions['tensorflow']}, tf_keras {versions['tf_keras']}, "
          f"Horovod {versions['horovod']} ({versions['controller']} controller), {versions['mpi']}")


def is_chief() -> bool:
  """Rank 0 alone prints, writes the workdir and saves snapshots."""
  return rank() == 0


def cores_per_rank() -> int:
  """The cores this rank may use (tfscale/cpu_cores.py's rule, with Horovod's local size)."""
  return cpu_cores.cores_per_rank(local_ranks=local_size())


def configure_threads(intra_op: int = 0, inter_op: int = 0) -> tuple:
  """Sets TF's thread pools for this rank and returns (intra, inter).

  0 means: TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS if set (scripts/cpu_env.sh sets them per
  rank), otherwise `cores_per_rank()` intra-op threads and 2 inter-op threads. Ranks on one node share
  its cores: without the division oneDNN oversubscribes them (the paper ran 2 ranks per Skylake node).
  Two inter-op threads let small independent ops (optimizer updates, BN statistics) overlap: measured
  +2–13 % fp32 and +13–16 % bf16 over one on a 2-core rank (docs/BENCHMARKS.md, CPU knobs).
  """
  intra = intra_op or int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or cores_per_rank()
  inter = inter_op or int(os.environ.get("TF_NUM_INTEROP_THREADS") or 0) or 2
  tf.config.threading.set_intra_op_parallelism_threads(intra)
  tf.config.threading.set_inter_op_parallelism_threads(inter)
  return intra, inter


GRADIENT_COMPRESSION = {"none": hvd.Compression.none, "fp16": hvd.Compression.fp16}


def distributed_optimizer(optimizer, compression: str = "none"):
  """Wraps an optimizer so gradients are averaged across ranks before it applies them (one rank: as is).
  `compression` 'fp16' halves the bytes on the wire (gradients cast to float16 for the allreduce and back):
  1.8× faster allreduce over a 1 Gbit/s link, ≤ 15 % on shared memory (docs/BENCHMARKS.md, Communication)."""
  if compression not in GRADIENT_COMPRESSION:
    raise ValueError(f"train.gradient_compression must be one of {sorted(GRADIENT_COMPRESSION)}, got {compression!r}")
  if size() == 1:
    return optimizer
  return hvd_keras.DistributedOptimizer(optimizer, compression=GRADIENT_COMPRESSION[compression])


def broadcast_initial_state(model: tf_keras.Model, optimizer=None, root_rank: int = 0):
  """Copies rank 0's weights (and built optimizer slots) to every rank."""
  if size() == 1:
    return
  variables = list(model.variables)
  if optimizer is not None:
    variables += list(optimizer.variables())
  hvd.broadcast_variables(variables, root_rank=root_rank)


def allreduce_mean(value):
  """The mean over ranks of a number or array, as NumPy (every rank gets the same value)."""
  array = np.asarray(value, dtype=np.float64)
  if size() == 1:
    return array
  return hvd.allreduce(tf.constant(array), op=hvd.Average, name=None).numpy()


def allreduce_sum(value):
  """The sum over ranks of a number or array, as NumPy; exact for integer counts below 2**53."""
  array = np.asarray(value, dtype=np.float64)
  if size() == 1:
    return array
  return hvd.allreduce(tf.constant(array), op=hvd.Sum, name=None).numpy()


def allreduce_max(value):
  """The largest over ranks of a number, as a float (every rank gets the same value)."""
  if size() == 1:
    return float(value)
  return float(hvd.allreduce(tf.constant(float(value), tf.float64), op=hvd.Max, name=None).numpy())


def allgather_floats(value: float) -> np.ndarray:
  """Every rank's `value`, in rank order, on every rank."""
  if size() == 1:
    return np.array([value], np.float64)
  return hvd.allgather(tf.constant([value], tf.float64)).numpy()


def average_variables(variables):
  """Replaces each variable by its mean over ranks, in one fused allreduce.

  Used on BN moving statistics: each rank accumulates them from its own batches, so without this the
  ranks' models differ and a snapshot would carry rank 0's statistics only.
  """
  variables = list(variables)
  if size() == 1 or not variables:
    return
  averaged = hvd.grouped_allreduce([tf.convert_to_tensor(v) for v in variables], op=hvd.Average)
  for variable, value in zip(variables, averaged):
    variable.assign(value)


def barrier():
  if size() > 1:
    hvd.allreduce(tf.constant(0.0), op=hvd.Sum, name="barrier")


def broadcast_object(obj, root_rank: int = 0):
  """A picklable Python object from the root rank on every rank."""
  if size() == 1:
    return obj
  return hvd.broadcast_object(obj, root_rank=root_rank)


def run_elastic(train, model, optimizer, commit_every_steps: int):
  """train(extra_callbacks) under Horovod's elastic API (horovodrun --min-np/--max-np, Gloo).

  Model and optimizer state (step included) are committed in memory every `commit_every_steps` steps.
  When a worker dies or joins, the survivors roll back to the last commit, Horovod re-forms the world,
  rank 0's state is broadcast, and `train` runs again: it must rebuild anything that depends on the
  rank or the world size (the input pipelines) and continue from the optimizer's step.
  """
  import horovod.tensorflow.keras.elastic as hvd_elastic  # tf.keras is tf_keras here (TF_USE_LEGACY_KERAS)
  state = hvd_elastic.KerasState(model, optimizer)
  commit = hvd_elastic.CommitStateCallback(state, batches_per_commit=commit_every_steps)

  @hvd_elastic.run
  def run(state):
    return train([commit])
  return run(state)

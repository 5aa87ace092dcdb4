"""The collective boundary: the only module that knows which backend carries tfscale's cross-rank work.

  horovod  Horovod 0.28.1, MPI or Gloo controller (tfscale/backend_horovod.py): horovodrun, mpirun, srun --mpi
  tf       TensorFlow's own collective ops over gRPC (tfscale/backend_tf.py): mpirun, srun, no compiled extension

`config.train.backend` chooses (tfscale.trainer and tfscale.evaluate call start(config.train), which inits it
and sets the threads; tools default to Horovod). With one
process (no launcher) either works as a world of size 1, so the same code runs single-process and at 512
ranks. Everything else in tfscale asks this module: rank and size, reductions of numbers and arrays, the
gradient mean inside the training step, broadcasts of state and of Python objects.
"""
import contextlib
import ctypes
import ctypes.util
import os
import platform

import numpy as np
import tensorflow as tf
import tf_keras

from tfscale import cpu_cores
from tfscale.config_base import ConfigError
from tfscale.backend_tf import BackendError  # noqa: F401  (raised by either backend, caught by the mains)

BACKENDS = ("horovod", "tf")
_backend = None


def init(backend: str):
  """Starts the chosen backend once (before TensorFlow executes anything); safe to call again."""
  global _backend
  if _backend is not None:
    if _backend.name != backend:
      raise BackendError(f"the {_backend.name} backend is already running; cannot switch to {backend!r}")
    return
  if backend == "horovod":
    from tfscale import backend_horovod as module
  elif backend == "tf":
    from tfscale import backend_tf as module
  else:
    raise ConfigError(f"train.backend must be one of {BACKENDS}, got {backend!r}")
  _backend = module.Backend()


@contextlib.contextmanager
def peer_failures_as_errors():
  """Re-raises a collective's failure from a lost peer (dead, unreachable, past the timeout) as one
  BackendError line, which the mains print; every other error passes unchanged."""
  try:
    yield
  except tf.errors.OpError as error:
    failure = _backend.peer_failure(error) if _backend is not None else None
    if failure is None:
      raise
    raise failure from None


def _started():
  if _backend is None:  # asked before any main chose one (a tool, a test): Horovod's view of the launch
    init("horovod")
  return _backend


def backend_name() -> str:
  return _started().name


def rank() -> int:
  return _started().rank


def size() -> int:
  return _started().size


def local_rank() -> int:
  return _started().local_rank


def local_size() -> int:
  return _started().local_size


def is_chief() -> bool:
  """Rank 0 alone prints, writes the workdir and saves snapshots."""
  return rank() == 0


def start(train_config) -> tuple:
  """The backend and this rank's threads as a config's `train` section names them (init, then
  configure_threads); returns (intra, inter). Every main that runs collectives starts here."""
  init(train_config.backend)
  return configure_threads(train_config.intra_op_threads, train_config.inter_op_threads)


def cores_per_rank() -> int:
  """The cores this rank may use (tfscale/cpu_cores.py's rule, with the launcher's local size)."""
  return cpu_cores.cores_per_rank(local_ranks=local_size())


def configure_threads(intra_op: int, inter_op: int) -> tuple:
  """Sets TF's thread pools for this rank, then lets the backend connect to its peers; returns (intra, inter).

  0 means: TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS if set (scripts/cpu_env.sh sets them per
  rank), otherwise `cores_per_rank()` intra-op threads and 2 inter-op threads. Ranks on one node share
  its cores: without the division oneDNN oversubscribes them (the paper ran 2 ranks per Skylake node).
  Two inter-op threads let small independent ops (optimizer updates, BN statistics) overlap: measured
  +2–13 % fp32 and +13–16 % bf16 over one on a 2-core rank (docs/BENCHMARKS.md, CPU knobs). The TF
  backend's server starts TF's runtime, which fixes the thread pools: hence connect after setting them.
  """
  intra = intra_op or int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or cores_per_rank()
  inter = inter_op or int(os.environ.get("TF_NUM_INTEROP_THREADS") or 0) or 2
  tf.config.threading.set_intra_op_parallelism_threads(intra)
  tf.config.threading.set_inter_op_parallelism_threads(inter)
  _started().start()
  return intra, inter


def mpi_library() -> str:
  """The MPI library installed for the launchers, as it names itself (MPI_Get_library_version, which MPI
  allows before MPI_Init): e.g. "Open MPI v4.1.4"; "none" when no libmpi is installed."""
  name = ctypes.util.find_library("mpi")
  if not name:
    return "none"
  buffer, length = ctypes.create_string_buffer(8192), ctypes.c_int()  # MPICH's MPI_MAX_LIBRARY_VERSION_STRING
  if ctypes.CDLL(name).MPI_Get_library_version(buffer, ctypes.byref(length)) != 0:
    return f"{name} (version unknown)"
  return buffer.value.decode(errors="replace").strip().splitlines()[0].split(",")[0]


def software() -> dict:
  """What this run executes on: rank 0 logs it first and records it in config.json."""
  return {"python": platform.python_version(), "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
          "backend": backend_name(), **_started().versions(), "mpi": mpi_library()}


def software_line(versions: dict) -> str:
  backend = (f"Horovod {versions['horovod']} ({versions['controller']} controller)" if versions["backend"] == "horovod"
             else f"TF collectives ({versions['launcher']} rendezvous)")
  return (f"Python {versions['python']}, TensorFlow {versions['tensorflow']}, tf_keras {versions['tf_keras']}, "
          f"{backend}, {versions['mpi']}")


GRADIENT_COMPRESSION = ("none", "fp16")


def check_compression(compression: str):
  if compression not in GRADIENT_COMPRESSION:
    raise ConfigError(f"train.gradient_compression must be one of {list(GRADIENT_COMPRESSION)}, got {compression!r}")


def distributed_optimizer(optimizer, compression: str):
  """An optimizer that averages gradients across ranks before applying them (one rank: as is).
  `compression` 'fp16' halves the bytes on the wire (gradients cast to float16 for the allreduce and back):
  1.8× faster allreduce over a 1 Gbit/s link, ≤ 15 % on shared memory (docs/BENCHMARKS.md, Communication).
  The result is a new optimizer object rebuilt from the optimizer's config: the one to build, checkpoint
  and broadcast."""
  check_compression(compression)
  if size() == 1:
    return optimizer
  return _started().distributed_optimizer(optimizer, compression)


def mean_gradients(gradients, compression: str) -> list:
  """The mean over ranks of a list of gradient tensors, as the training step's optimizer reduces them
  (inside a tf.function; benchmarks time this one function)."""
  return list(gradients) if size() == 1 else _started().mean_gradients(list(gradients), compression)


def broadcast_initial_state(model: tf_keras.Model, optimizer=None, root_rank: int = 0):
  """Copies rank 0's weights (and built optimizer slots) to every rank."""
  if size() == 1:
    return
  variables = list(model.variables)
  if optimizer is not None:
    variables += list(optimizer.variables())
  _started().broadcast_variables(variables, root_rank)


def allreduce_mean(value):
  """The mean over ranks of a number or array, as NumPy (every rank gets the same value)."""
  array = np.asarray(value, dtype=np.float64)
  return array if size() == 1 else _started().reduce(array, "mean")


def allreduce_sum(value):
  """The sum over ranks of a number or array, as NumPy; exact for integer counts below 2**53."""
  array = np.asarray(value, dtype=np.float64)
  return array if size() == 1 else _started().reduce(array, "sum")


def allreduce_max(value):
  """The largest over ranks of a number, as a float (every rank gets the same value)."""
  if size() == 1:
    return float(value)
  return float(_started().reduce(np.asarray(float(value), np.float64), "max"))


def allgather_floats(value: float) -> np.ndarray:
  """Every rank's `value`, in rank order, on every rank."""
  array = np.array([value], np.float64)
  return array if size() == 1 else _started().all_gather(array)


def average_variables(variables):
  """Replaces each variable by its mean over ranks, in one fused allreduce.

  Used on BN moving statistics: each rank accumulates them from its own batches, so without this the
  ranks' models differ and a snapshot would carry rank 0's statistics only.
  """
  variables = list(variables)
  if size() > 1 and variables:
    _started().average_variables(variables)


def barrier():
  if size() > 1:
    _started().reduce(np.zeros([], np.float64), "sum")


def broadcast_object(obj, root_rank: int = 0):
  """A picklable Python object from the root rank on every rank."""
  return obj if size() == 1 else _started().broadcast_object(obj, root_rank)


def run_elastic(train, model, optimizer, commit_every_steps: int):
  """train(extra_callbacks) under Horovod's elastic API (horovodrun --min-np/--max-np, Gloo).

  Model and optimizer state (step included) are committed in memory every `commit_every_steps` steps.
  When a worker dies or joins, the survivors roll back to the last commit, Horovod re-forms the world,
  rank 0's state is broadcast, and `train` runs again: it must rebuild anything that depends on the
  rank or the world size (the input pipelines) and continue from the optimizer's step.
  """
  if backend_name() != "horovod":
    raise BackendError("train.elastic needs the horovod backend (the tf backend has a fixed world)")
  return _started().run_elastic(train, model, optimizer, commit_every_steps)

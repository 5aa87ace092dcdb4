"""The Horovod backend of tfscale.distributed (Horovod 0.28.1, MPI or Gloo controller): the only module
that imports horovod. Only tfscale/distributed.py imports this module.

With one process (no launcher) Horovod initialises as a world of size 1.
"""
import os

import numpy as np
import tensorflow as tf

import horovod
import horovod.tensorflow as hvd
import horovod.tensorflow.keras as hvd_keras

# Horovod's background thread negotiates every few milliseconds, and Open MPI busy-polls while it waits for
# the other ranks. Every core of a rank already runs oneDNN threads, so that polling takes compute from its
# own rank: 2 ranks × 1 core trained ResNet-50 at 61 % of one rank alone with Open MPI's default polling,
# 101 % (WRN-50-2: 97 %) with MPI yielding the core when idle (docs/BENCHMARKS.md, weak scaling). Set before
# hvd.init(): MPI reads its MCA parameters at MPI_Init; the environment (or mpirun --mca) still wins. A
# longer HOROVOD_CYCLE_TIME did not help measurably and delays every allreduce (161 unfused ones took 3.2 s
# at 20 ms), so Horovod's own stays.
RUNTIME_DEFAULTS = {"OMPI_MCA_mpi_yield_when_idle": "1"}
COMPRESSION = {"none": hvd.Compression.none, "fp16": hvd.Compression.fp16}
OPS = {"sum": hvd.Sum, "mean": hvd.Average, "max": hvd.Max}


class Backend:
  name = "horovod"

  def __init__(self):
    for name, value in RUNTIME_DEFAULTS.items():
      os.environ.setdefault(name, value)
    hvd.init()

  # Asked of Horovod each time, never cached: under elastic training the world re-forms during the run.
  rank = property(lambda self: hvd.rank())
  size = property(lambda self: hvd.size())
  local_rank = property(lambda self: hvd.local_rank())
  local_size = property(lambda self: hvd.local_size())

  def start(self):
    """Horovod's connections are up after hvd.init()."""

  def peer_failure(self, error: BaseException):
    """None: a rank lost under Horovod ends the job through its launcher (horovodrun, mpirun)."""
    return None

  def versions(self) -> dict:
    return {"horovod": horovod.__version__, "controller": "mpi" if hvd.mpi_enabled() else "gloo"}

  def reduce(self, array: np.ndarray, op: str) -> np.ndarray:
    return hvd.allreduce(tf.constant(array), op=OPS[op], name=None).numpy()

  def all_gather(self, array: np.ndarray) -> np.ndarray:
    return hvd.allgather(tf.constant(array)).numpy()

  def average_variables(self, variables):
    for variable, value in zip(variables, hvd.grouped_allreduce([tf.convert_to_tensor(v) for v in variables],
                                                                op=hvd.Average)):
      variable.assign(value)

  def broadcast_variables(self, variables, root: int):
    hvd.broadcast_variables(variables, root_rank=root)

  def broadcast_object(self, obj, root: int):
    return hvd.broadcast_object(obj, root_rank=root)

  def mean_gradients(self, gradients, compression: str):
    """What Horovod's optimizer wrapper does to the gradients: compress, one grouped (fused) allreduce, decompress."""
    compressor = COMPRESSION[compression]
    compressed = [compressor.compress(g) for g in gradients]
    reduced = hvd.grouped_allreduce([tensor for tensor, _ in compressed], op=hvd.Average)
    return [compressor.decompress(r, context) for r, (_, context) in zip(reduced, compressed)]

  def distributed_optimizer(self, optimizer, compression: str):
    """Horovod's wrapper is a new optimizer object rebuilt from the optimizer's config (the one to build,
    checkpoint and broadcast)."""
    return hvd_keras.DistributedOptimizer(optimizer, compression=COMPRESSION[compression])

  def run_elastic(self, train, model, optimizer, commit_every_steps: int):
    import horovod.tensorflow.keras.elastic as hvd_elastic  # tf.keras is tf_keras here (TF_USE_LEGACY_KERAS)
    state = hvd_elastic.KerasState(model, optimizer)
    commit = hvd_elastic.CommitStateCallback(state, batches_per_commit=commit_every_steps)

    @hvd_elastic.run
    def run(state):
      return train([commit])
    return run(state)

"""The TensorFlow backend of tfscale.distributed: TensorFlow's own collective ops (the RING implementation
over gRPC behind MultiWorkerMirroredStrategy) under tfscale's Keras loop, with no compiled extension.

Only tfscale/distributed.py imports this module. Ranks and peers come from the launcher:
  mpirun (Open MPI, or any MPI)  rank/size/local rank from MPI; every rank's address:port is exchanged
                                 with one MPI allgather (mpi4py), so nothing needs a shared filesystem
  srun (plain, no PMI)           SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, the peers from
                                 SLURM_STEP_NODELIST (python-hostlist) and a port per local task
  nothing                        one process
Rank 0 leads the collectives and runs TF's coordination service, whose heartbeats turn a dead peer into
an error on every survivor instead of a hang.
"""
import copy
import fcntl
import hashlib
import os
import pickle
import socket
import struct
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import tensorflow as tf

# Environment knobs (the launchers' world, not a recipe's): which interface peers reach each other on
# (default: the first non-loopback one), Slurm's base port, and how long a collective may wait.
IFACE = "TFSCALE_TF_IFACE"
PORT = "TFSCALE_TF_PORT"
TIMEOUT = "TFSCALE_TF_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 600.0
# Every rank must have joined within JOIN_TIMEOUT seconds (default 120) of starting, or it ends in one
# line: a peer that never started, or exited, never answers, and neither TF's server start nor the
# coordination service's registration gives up on its own. A rank silent for HEARTBEAT_SECONDS is dead,
# and every other rank's next collective fails with that news.
JOIN_TIMEOUT = "TFSCALE_TF_JOIN_TIMEOUT"
REGISTER_SECONDS = 120.0
HEARTBEAT_SECONDS = 30.0
GROUP_KEY = 1
# Gradients travel in flat buffers of at most this many bytes: Horovod's default fusion threshold.
FUSION_BYTES = 64 << 20
# The ring splits each buffer into this many interleaved rings at most (TF's default picks fewer for CPU
# buffers): ResNet-50's 102 MB gradient between 2 namespace hosts took 1.21 s by default, 0.94 s with 16
# at 1 Gbit/s (ideal 0.82 s), 0.42–0.51 s against 0.25–0.30 s at 10 Gbit/s (/tmp experiment, 3 repeats each,
# 2026-12-03; docs/BENCHMARKS.md has the alternating comparison with Horovod).
MAX_SUBDIVS = 16


class BackendError(RuntimeError):
  """A cluster that cannot start or lost a rank: one line for the user."""


# What a collective raises when a peer died, cannot be reached, or did not answer within the timeout.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.CancelledError, tf.errors.InternalError)


def first_line(error: BaseException) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0]


class World(NamedTuple):
  rank: int
  size: int
  local_rank: int
  local_size: int
  addresses: tuple  # "host:port" per rank
  launcher: str


def interface_address() -> str:
  """This host's IPv4 address on $TFSCALE_TF_IFACE, else on its first non-loopback interface."""
  wanted = os.environ.get(IFACE)
  names = [wanted] if wanted else [name for _, name in socket.if_nameindex() if name != "lo"]
  with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
    for name in names:
      try:
        request = struct.pack("256s", name.encode()[:15])
        return socket.inet_ntoa(fcntl.ioctl(probe.fileno(), 0x8915, request)[20:24])  # SIOCGIFADDR
      except OSError:
        if wanted:
          raise BackendError(f"{IFACE}={wanted}: no IPv4 address on that interface")
  return "127.0.0.1"


def free_port(address: str) -> int:
  with socket.socket() as s:
    s.bind((address, 0))
    return s.getsockname()[1]


def _mpi_world() -> World:
  from mpi4py import MPI  # initialises MPI: its rendezvous is the only thing tfscale asks of it
  comm = MPI.COMM_WORLD
  local = comm.Split_type(MPI.COMM_TYPE_SHARED)
  address = interface_address()
  addresses = comm.allgather(f"{address}:{free_port(address)}")
  return World(comm.Get_rank(), comm.Get_size(), local.Get_rank(), local.Get_size(), tuple(addresses), "mpi")


def _slurm_world() -> World:
  import hostlist
  env = os.environ
  nodes = hostlist.expand_hostlist(env["SLURM_STEP_NODELIST"])
  per_node = [int(n) for n in hostlist.parse_slurm_tasks_per_node(env["SLURM_STEP_TASKS_PER_NODE"])]
  base = int(env.get(PORT) or 20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
  addresses = tuple(f"{node}:{base + local}" for node, count in zip(nodes, per_node) for local in range(count))
  rank = int(env["SLURM_PROCID"])
  return World(rank, len(addresses), int(env["SLURM_LOCALID"]), per_node[nodes.index(env["SLURMD_NODENAME"])]
               if "SLURMD_NODENAME" in env else int(env.get("SLURM_NTASKS_PER_NODE", "1")), addresses, "srun")


def check_port_free(rank: int, address: str, port: int):
  """A port taken by another process, said plainly (gRPC's own words are "Could not start gRPC server")."""
  with socket.socket() as probe:
    # As gRPC binds: SO_REUSEADDR, so a previous job's connections in TIME_WAIT do not count as taken.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind(("", port))
    except OSError as error:
      raise BackendError(f"rank {rank} cannot listen on {address}: port {port} is already in use "
                         f"({error.strerror}); under srun set {PORT} to a free base port") from None


# The watchdog is a process of its own: TF's calls that wait for peers hold the GIL, so no Python thread or
# signal handler of this process runs until they return. It ends this process in one line unless its
# stdin closes first (cancel(), or this process ending).
WATCHDOG = """
import os, select, signal, sys
ready, _, _ = select.select([sys.stdin], [], [], float(sys.argv[2]))
if not ready:
  sys.stderr.write(sys.argv[3] + chr(10))
  sys.stderr.flush()
  os.kill(int(sys.argv[1]), signal.SIGKILL)
"""


class Watchdog:
  def __init__(self, seconds: float, message: str):
    main = sys.modules["__main__"]
    program = getattr(getattr(main, "__spec__", None), "name", None) or os.path.basename(sys.argv[0])
    self._child = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), str(seconds),
                                    f"{program}: error: {message}"], stdin=subprocess.PIPE)

  def cancel(self):
    self._child.stdin.close()
    self._child.wait()


def discover() -> World:
  env = os.environ
  if any(name in env for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")):
    return _mpi_world()
  if "SLURM_STEP_NODELIST" in env and "SLURM_PROCID" in env:
    return _slurm_world()
  return World(0, 1, 0, 1, ("localhost:0",), "none")


MERGE = {"sum": ("Add", "Id"), "mean": ("Add", "Div"), "max": ("Max", "Id")}


class Backend:
  """tfscale.distributed's operations over TF collectives. Built before TF runs anything: the collective
  ops and the server are configured here and start with TF's runtime, in start()."""
  name = "tf"

  def __init__(self):
    self.world = discover()
    self.rank, self.size = self.world.rank, self.world.size
    self.local_rank, self.local_size = self.world.local_rank, self.world.local_size
    self.timeout = float(os.environ.get(TIMEOUT) or DEFAULT_TIMEOUT_SECONDS)
    self._functions, self._token = {}, None
    if self.size > 1:
      self._configure()

  def versions(self) -> dict:
    return {"launcher": self.world.launcher}

  def _configure(self):
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.core.protobuf import cluster_pb2, tensorflow_server_pb2
    from tensorflow.python.eager import context
    leader = "/job:worker/replica:0/task:0"
    context.context().configure_collective_ops(
        collective_leader=leader, scoped_allocator_enabled_ops=("CollectiveReduce",),
        device_filters=(f"/job:worker/task:{self.rank}",))
    # The coordination service (on rank 0) holds every rank's heartbeat: a dead peer becomes an error on
    # each survivor within its heartbeat timeout, never a hang.
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=leader,
        cluster_register_timeout_in_ms=int(1000 * REGISTER_SECONDS), heartbeat_timeout_in_ms=int(1000 * HEARTBEAT_SECONDS),
        shutdown_barrier_timeout_in_ms=int(1000 * HEARTBEAT_SECONDS),
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name="worker", num_tasks=self.size)])
    cluster = cluster_pb2.ClusterDef(job=[cluster_pb2.JobDef(name="worker", tasks=dict(enumerate(self.world.addresses)))])
    port = int(self.world.addresses[self.rank].rsplit(":", 1)[1])
    check_port_free(self.rank, self.world.addresses[self.rank], port)
    # From here until start() has seen a first collective return: enabling the collectives already waits
    # for every peer's server, with no timeout of its own.
    seconds = float(os.environ.get(JOIN_TIMEOUT) or REGISTER_SECONDS)
    self._watchdog = Watchdog(seconds, f"rank {self.rank} could not join {self.size} ranks from "
                              f"{self.world.addresses[self.rank]} within {seconds:.0f} s: a peer never answered "
                              "(it did not start, or it exited; see its own line)")
    # The servers' session config must name the group leader and filter the devices as the context's does
    # (MultiWorkerMirroredStrategy's _update_config_proto): without it every collective waits forever.
    session = copy.deepcopy(context.context().config)
    session.experimental.collective_group_leader = leader
    del session.device_filters[:]
    session.device_filters.append(f"/job:worker/task:{self.rank}")
    context.context().enable_collective_ops(tensorflow_server_pb2.ServerDef(
        cluster=cluster, job_name="worker", task_index=self.rank, protocol="grpc", port=port,
        default_session_config=session))

  def start(self):
    """Starts this rank's server and joins the others (TF's runtime starts here, with its thread settings):
    done when a first collective over all ranks has returned, or the process ends in one line after the
    join timeout."""
    if self.size == 1 or self._token is not None:
      return
    from tensorflow.python.eager import context
    try:
      context.context().ensure_initialized()
      self._token = tf.Variable(0.0, name="collective_ordering_token", trainable=False)
      self.reduce(np.zeros([], np.float64), "sum")
    except Exception as error:  # an unreachable peer: one line, not a gRPC trace
      raise BackendError(f"rank {self.rank} could not join {self.size} ranks from "
                         f"{self.world.addresses[self.rank]}: {first_line(error)}") from None
    finally:
      self._watchdog.cancel()

  def peer_failure(self, error: BaseException):
    """A collective's failure from a lost peer as one BackendError line; None for any other error."""
    if self.size == 1 or not isinstance(error, PEER_ERRORS):
      return None
    return BackendError(f"rank {self.rank} lost a peer (a collective over {self.size} ranks failed: "
                        f"{first_line(error)}); rerun the same command to resume from the last checkpoint")

  # Every collective is a tf.function per (kind, dtype, shape) with an instance key derived from those, so
  # each execution of it meets the same collective instance on every rank: the ranks call the collectives
  # of an epoch in the same order (distributed.py's contract), and re-tracing cannot shift the keys.
  @staticmethod
  def _key(*parts) -> int:
    return 2 + int(hashlib.sha1(repr(parts).encode()).hexdigest()[:7], 16)

  def _function(self, kind, tensor, build):
    name = (kind, tensor.dtype.name, tuple(tensor.shape))
    if name not in self._functions:
      self.start()
      self._functions[name] = tf.function(build(self._key(*name)), autograph=False)
    return self._functions[name]

  def _common(self, key):
    return dict(group_size=self.size, group_key=GROUP_KEY, instance_key=key, communication_hint="ring",
                timeout=self.timeout)

  def _all_reduce(self, tensor, key, op):
    from tensorflow.python.ops import collective_ops
    merge, final = MERGE[op]
    return collective_ops.all_reduce_v2(tensor, merge_op=merge, final_op=final, ordering_token=self._token.handle,
                                        max_subdivs_per_device=MAX_SUBDIVS, **self._common(key))

  def reduce(self, array: np.ndarray, op: str) -> np.ndarray:
    tensor = tf.constant(array)
    return self._function(f"reduce-{op}", tensor, lambda key: lambda t: self._all_reduce(t, key, op))(tensor).numpy()

  def all_gather(self, array: np.ndarray) -> np.ndarray:
    from tensorflow.python.ops import collective_ops
    tensor = tf.constant(array)
    run = self._function("gather", tensor, lambda key: lambda t: collective_ops.all_gather_v2(
        t, ordering_token=self._token.handle, **self._common(key)))
    return run(tensor).numpy()

  def broadcast(self, tensor, root: int):
    """root's tensor on every rank (the same shape and dtype on every rank)."""
    from tensorflow.python.ops import collective_ops
    tensor = tf.convert_to_tensor(tensor)
    if self.rank == root:
      self._function("bcast", tensor, lambda key: lambda t: collective_ops.broadcast_send_v2(
          t, **self._common(key)))(tensor)
      return tensor
    return self._function("bcast", tensor, lambda key: lambda t: collective_ops.broadcast_recv_v2(
        tf.shape(t), t.dtype, **self._common(key)))(tensor)

  def broadcast_object(self, obj, root: int):
    """The pickle's length, then its bytes padded to whole int32s (collectives carry no uint8)."""
    payload = pickle.dumps(obj) if self.rank == root else b""
    length = int(self.broadcast(np.array([len(payload)], np.int64), root).numpy()[0])
    words = np.frombuffer(payload.ljust(-(-length // 4) * 4, b"\0"), np.int32) if self.rank == root \
        else np.zeros([-(-length // 4)], np.int32)
    return pickle.loads(np.asarray(self.broadcast(words, root)).tobytes()[:length])

  def _flat_groups(self, variables):
    by_dtype = {}
    for variable in variables:
      by_dtype.setdefault(variable.dtype.base_dtype, []).append(variable)
    return by_dtype.values()

  @staticmethod
  def _assign_flat(group, flat):
    offset = 0
    for variable in group:
      count = int(np.prod(variable.shape))
      variable.assign(tf.reshape(flat[offset:offset + count], variable.shape))
      offset += count

  def broadcast_variables(self, variables, root: int):
    """Every variable from root: one flat buffer per dtype."""
    for group in self._flat_groups(variables):
      flat = self.broadcast(tf.concat([tf.reshape(v, [-1]) for v in group], 0), root)
      if self.rank != root:
        self._assign_flat(group, flat)

  def average_variables(self, variables):
    for group in self._flat_groups(variables):
      flat = tf.concat([tf.reshape(v, [-1]) for v in group], 0)
      self._assign_flat(group, self._function("mean-vars", flat, lambda key: lambda t: self._all_reduce(
          t, key, "mean"))(flat))

  def mean_gradients(self, gradients, compression: str):
    """The mean over ranks of `gradients`, traced into the training step: packed into flat buffers of at
    most FUSION_BYTES on the wire dtype (Horovod's tensor fusion, statically), one ring allreduce each,
    ordered by the token so every rank runs them in the same order."""
    self.start()
    wire = tf.float16 if compression == "fp16" else tf.float32
    packs, current, nbytes = [], [], 0
    for index, gradient in enumerate(gradients):
      size = int(np.prod(gradient.shape)) * wire.size
      if current and nbytes + size > FUSION_BYTES:
        packs.append(current)
        current, nbytes = [], 0
      current.append(index)
      nbytes += size
    packs += [current] if current else []
    reduced = list(gradients)
    for number, pack in enumerate(packs):
      flat = tf.concat([tf.reshape(tf.cast(gradients[i], wire), [-1]) for i in pack], 0)
      flat = self._all_reduce(flat, self._key("gradients", number, wire.name, int(flat.shape[0])), "mean")
      offset = 0
      for i in pack:
        count = int(np.prod(gradients[i].shape))
        reduced[i] = tf.cast(tf.reshape(flat[offset:offset + count], gradients[i].shape), gradients[i].dtype)
        offset += count
    return reduced

  def distributed_optimizer(self, optimizer, compression: str):
    """The optimizer's class with apply_gradients averaging the gradients first, rebuilt from its config."""
    backend = self

    def apply_gradients(self, grads_and_vars, *args, **kwargs):
      grads_and_vars = list(grads_and_vars)
      gradients = backend.mean_gradients([tf.convert_to_tensor(g) for g, _ in grads_and_vars], compression)
      return super(cls, self).apply_gradients(
          [(g, v) for g, (_, v) in zip(gradients, grads_and_vars)], *args, **kwargs)

    cls = type(optimizer.__class__.__name__, (optimizer.__class__,), {"apply_gradients": apply_gradients})
    return cls.from_config(optimizer.get_config())

"""Run control on a batch scheduler: one agreed, checkpointed stop; a vanished launcher; one run per workdir.

Stop requests. SIGTERM (scancel, preemption, walltime), SIGINT (Ctrl-C; a second one interrupts at once)
and SIGUSR1 (Slurm's `--signal=…USR1@seconds` early warning) to any rank, or to all, are recorded by a
handler; so is the disappearance of the launcher that started the rank (horovodrun, mpirun, srun: a
SIGKILLed launcher leaves ranks behind otherwise), which a watchdog thread checks every second. At
the next step boundary every rank takes part in one small allreduce of its request
(callbacks.AgreedStop, in callbacks.StepEnd), so
all ranks agree to stop at the same step; rank 0 checkpoints that step, every rank leaves `fit`, and the
program exits with EXIT_STOPPED after one line (rank 0): "stopped at step N by SIGTERM; rerun the same
command to resume". Rerunning resumes from that exact step.

One run per workdir. Rank 0 holds an exclusive POSIX lock on `workdir/run.lock` (which names its host
and pid) for as long as its process lives; the kernel (or the filesystem's lock manager) releases it
however the process ends, crash and SIGKILL included, so a rerun needs no cleanup. A second run on a
held workdir fails at once naming the holder.

Standard library only: train.py takes the lock before TensorFlow is even imported.
"""
import fcntl
import json
import os
import signal
import socket
import threading
import time

from tfscale import workdir as workdir_files  # json and os only

EXIT_STOPPED = 75  # EX_TEMPFAIL (sysexits.h): "try again later" — rerunning the command resumes the run.
LAUNCHERS = ("horovodrun", "mpirun", "mpiexec", "orterun", "prterun", "srun")
# Request codes, ordered: the allreduce keeps the largest, so every rank reports the same reason.
REASONS = {0: None, 1: "SIGINT", 2: "SIGUSR1", 3: "SIGTERM", 4: "the launcher's exit"}
_SIGNAL_CODES = {signal.SIGINT: 1, signal.SIGUSR1: 2, signal.SIGTERM: 3}
LAUNCHER_GONE = 4


class Stopped(Exception):
  """Training stopped at `step` on request (`reason`), with a checkpoint of that step on rank 0."""

  def __init__(self, step: int, reason: str):
    super().__init__(f"stopped at step {step} by {reason}; rerun the same command to resume")
    self.step, self.reason = step, reason


class WorkdirHeld(Exception):
  """Another live run holds the workdir."""


_request = {"code": 0}


def requested() -> int:
  return _request["code"]


def _on_signal(signum, frame):
  if signum == signal.SIGINT and _request["code"]:
    raise KeyboardInterrupt  # a second Ctrl-C: stop now
  _request["code"] = max(_request["code"], _SIGNAL_CODES[signum])


def install_signal_handlers():
  """SIGTERM, SIGINT and SIGUSR1 become stop requests (main thread only, as Python requires)."""
  for signum in _SIGNAL_CODES:
    signal.signal(signum, _on_signal)


def _parent_of(pid: int) -> int:
  with open(f"/proc/{pid}/stat") as f:
    return int(f.read().rsplit(")", 1)[1].split()[1])


SHELLS = ("sh", "bash", "dash")


def _name_of(pid: int) -> str:
  """The launcher a process is (its program, or the first of its first three words that is one), else its
  program. A shell running `sh -c "mpirun …"` counts as that launcher: horovodrun in MPI mode execs into
  one, so that shell is the pid the user holds, and it dies on SIGTERM without passing it on."""
  try:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      raw = [w.decode(errors="replace") for w in f.read().split(b"\0") if w]
  except OSError:
    return ""
  words = [os.path.basename(w) for w in raw]
  if len(raw) >= 3 and words[0] in SHELLS and raw[1] == "-c" and raw[2].split():
    first = os.path.basename(raw[2].split()[0])
    if first in LAUNCHERS:
      return first
  return next((w for w in words[:3] if w in LAUNCHERS), words[0] if words else "")


def launcher_chain(pid: int = None) -> list:
  """The ancestors of this process up to the outermost launcher (horovodrun, mpirun, srun, …), innermost
  first; [] when no launcher started it."""
  chain, outermost = [], -1
  pid = _parent_of(pid or os.getpid())
  while pid > 1:
    chain.append(pid)
    if _name_of(pid) in LAUNCHERS:
      outermost = len(chain)
    try:
      pid = _parent_of(pid)
    except OSError:
      break
  return chain[:outermost] if outermost > 0 else []


def _alive(pid: int) -> bool:
  """Running, not a zombie: a dead launcher stays a zombie until its own parent reaps it, and a workflow
  manager holding its Popen may not do so until it next polls (the shell horovodrun --mpi execs into)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
  except OSError:
    return False


def watch_launcher(every_seconds: float = 1.0):
  """A daemon thread that requests a stop when any process between this rank and its launcher exits
  (reading a handful of /proc/<pid>/stat once a second costs nothing; a slower check let a short run
  outlive its dead launcher)."""
  chain = launcher_chain()
  if not chain:
    return None

  def watch():
    while True:
      time.sleep(every_seconds)
      if not all(map(_alive, chain)):
        _request["code"] = max(_request["code"], LAUNCHER_GONE)
        return

  thread = threading.Thread(target=watch, name="tfscale-launcher-watch", daemon=True)
  thread.start()
  return thread


def hold_workdir(workdir: str):
  """Takes the workdir's run lock for this process's lifetime (rank 0 calls it before any work); raises
  WorkdirHeld naming the live holder. Filesystems without POSIX locks: a warning, and no exclusion."""
  os.makedirs(workdir, exist_ok=True)
  path = workdir_files.path(workdir, workdir_files.RUN_LOCK)
  handle = open(path, "a+")
  try:
    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except (BlockingIOError, PermissionError):
    handle.seek(0)
    try:
      holder = json.loads(handle.read() or "{}")
    except ValueError:
      holder = {}
    handle.close()
    raise WorkdirHeld(f"workdir {workdir} is in use by a live run (host {holder.get('host', '?')}, pid "
                      f"{holder.get('pid', '?')}); wait for it to end or use another --workdir") from None
  except OSError as e:  # ENOLCK/EOPNOTSUPP: e.g. Lustre mounted without -o flock
    import logging
    logging.getLogger("tfscale").warning("%s: no POSIX locks on this filesystem (%s); two runs on this workdir "
                                         "would not be stopped", path, e.strerror)
  handle.seek(0)
  handle.truncate()
  handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}))
  handle.flush()
  _held.append(handle)  # the lock lives as long as the file stays open


_held = []


def interactive_terminal() -> bool:
  """Whether output goes to a terminal that is really the user's: stdout's own when no launcher started this
  process, else the outermost launcher's (mpirun gives every rank a pty, even inside a batch job)."""
  chain = launcher_chain()
  if not chain:
    return os.isatty(1)
  try:
    return os.readlink(f"/proc/{chain[-1]}/fd/1").startswith(("/dev/pts/", "/dev/tty"))
  except OSError:
    return False


def rank_from_environment() -> int:
  """This process's rank as a launcher announced it, before Horovod is imported (0 when none did)."""
  for name in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"):
    if os.environ.get(name, "").isdigit():
      return int(os.environ[name])
  return 0

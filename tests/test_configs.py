"""The recipe files: each loads, compiles at its published batch, has the documented length, opens with the
command that runs it; the 72-epoch plan reproduces the authors' solver chain; the recipe tool and plot."""
import glob
import os

import numpy as np
import pytest
from ml_collections import config_flags  # noqa: F401  (the loader the CLIs use)

from tfscale import plots, schedules
from tfscale.config_base import load_recipe
from tfscale.recipe import PUBLISHED_TRAIN_IMAGES
from conftest import REPO, run_module

# recipe file, variant → (epochs, global batch, augmentation-collapse phases, snapshots)
RECIPES = {
    ("resnet50_i1k_ce72", ""): (72, 4096, 1, 4),
    ("resnet50_i1k", ""): (90, 4096, 0, 1),
    ("resnet50_i1k", "448n"): (90, 14336, 1, 2),
    ("resnet50_i1k_fast", ""): (37, 4096, 1, 2),
    ("wrn50_2_i1k", ""): (72, 4096, 1, 4),
    ("wrn_i22k", ""): (30, 7680, 1, 2),
    ("wrn_places365", ""): (72, 4096, 1, 4),
    ("resnet50_i1k_lars", "8k"): (90, 8192, 0, 1),
    ("resnet50_i1k_lars", "16k"): (90, 16384, 0, 1),
    ("resnet50_i1k_lars", "32k"): (90, 32768, 0, 1),
}


def recipe(name, variant=""):
  module = load_recipe(os.path.join(REPO, "configs", name + ".py"))
  return module, (module.get_config(variant) if variant else module.get_config())


def compiled(config):
  return schedules.compile_for(config, PUBLISHED_TRAIN_IMAGES[config.data.num_classes],
                               config.train.reference_global_batch)


def test_every_recipe_file_is_covered():
  files = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))}
  assert files - {"demo_digits"} == {name for name, _ in RECIPES}


@pytest.mark.parametrize("name,variant", sorted(RECIPES))
def test_recipe_compiles_at_its_published_batch(name, variant):
  module, config = recipe(name, variant)
  epochs, batch, collapses, snapshots = RECIPES[name, variant]
  assert config.train.reference_global_batch == batch
  plan = compiled(config)
  assert plan.total_steps / plan.steps_per_epoch == pytest.approx(epochs)
  assert sum(p["augment"] == "collapse" for p in plan.phases) == collapses
  assert len(plan.snapshot_steps()) == snapshots
  assert plan.phases[-1]["snapshot"], "the run must end in a snapshot"
  assert np.all(plan.lr >= 0) and np.all(np.isfinite(plan.lr))
  if collapses:  # weight decay goes up for the collapse
    assert plan.weight_decay[-1] > plan.weight_decay[0]
  doc = module.__doc__
  assert "horovodrun -np" in doc and f"--config=configs/{name}.py" in doc and "Target" in doc


def test_ce72_reproduces_the_authors_caffe_solver_chain():
  """Absolute LRs at global batch 4,096 where sara-nl/caffe's resnet50_custom_lr solvers put them."""
  _, config = recipe("resnet50_i1k_ce72")
  plan = compiled(config)
  lr_at = lambda epoch: plan.lr[round(epoch * plan.steps_per_epoch)]
  assert lr_at(0) == pytest.approx(0.1, rel=1e-3)            # warmup_start_lr
  assert lr_at(5) == pytest.approx(1.6, rel=1e-3)            # base_lr of solver_init
  assert lr_at(25) == pytest.approx(1.02, rel=5e-3)          # base_lr of solver_cyc1
  assert lr_at(37) == pytest.approx(0.255, rel=5e-3)         # warmup_start_lr of solver_cyc2
  assert lr_at(40) == pytest.approx(0.764, rel=5e-3)         # base_lr of solver_cyc2
  assert lr_at(52) == pytest.approx(0.19, rel=1e-2)          # warmup_start_lr of solver_cyc3
  assert lr_at(55) == pytest.approx(0.572, rel=5e-3)         # base_lr of solver_cyc3
  assert lr_at(67) == pytest.approx(0.143, rel=5e-3)         # base_lr of solver_collapse
  assert plan.lr[-1] < 1e-3
  assert [p["name"] for p in plan.phases] == ["warmup", "decay", "cycle1", "rewarmup2", "cycle2", "rewarmup3",
                                              "cycle3", "collapse"]
  collapse = plan.boundaries[-2]
  assert not plan.collapse[:collapse].any() and plan.collapse[collapse:].all()
  assert set(plan.weight_decay[:collapse]) == {5e-5} and set(plan.weight_decay[collapse:]) == {2e-4}
  assert config.model.bn_momentum == 0.95 and config.optim.name == "sgd"


def test_collapse_cycles_general_form():
  phases = schedules.collapse_cycles(
      peak_lr=1.0, warmup_epochs=1, decay_epochs=2, decay_horizon_epochs=4, cycles=4, cycle_epochs=2,
      cycle_horizon_epochs=4, rewarmup_epochs=1, rewarmup_fraction=0.5, final_collapse_epochs=1,
      weight_decay=1e-4, collapse_weight_decay=4e-4)
  plan = schedules.compile_plan(phases, steps_per_epoch=100, global_batch=256)
  assert [name for name, _ in plan.snapshot_steps()] == ["cycle1", "cycle2", "cycle3", "cycle4", "collapse"]
  # Cycle k starts at rewarmup_fraction^(k-1) × where the decay left off (0.5 at a half-way horizon, power 1).
  starts = [plan.lr[plan.boundaries[i]] for i, p in enumerate(plan.phases) if p["name"].startswith("cycle")]
  np.testing.assert_allclose(starts, [0.5, 0.25, 0.125, 0.0625], rtol=1e-9)
  # Each cycle stops at a quarter of its start (poly-2, half its horizon); the re-warmup climbs from there.
  for i, p in enumerate(plan.phases):
    if p["name"].startswith("rewarmup"):
      assert plan.lr[plan.boundaries[i]] == pytest.approx(plan.lr[plan.boundaries[i] - 1], rel=0.02)
  with pytest.raises(ValueError, match="cycles"):
    schedules.collapse_cycles(peak_lr=1, warmup_epochs=1, decay_epochs=1, cycles=0, cycle_epochs=1,
                              rewarmup_epochs=1, rewarmup_fraction=1, final_collapse_epochs=1, weight_decay=0,
                              collapse_weight_decay=0)


def test_truncated_poly_horizon_matches_caffe():
  plan = schedules.compile_plan([schedules.phase("p", 3, "poly", lr_start=2.0, lr_end=0.0, lr_power=2,
                                                 lr_horizon_epochs=6)], steps_per_epoch=10, global_batch=256)
  np.testing.assert_allclose(plan.lr, 2.0 * (1 - np.arange(30) / 60) ** 2)
  with pytest.raises(ValueError, match="horizon"):
    schedules.phase("p", 3, "poly", lr_end=0.0, lr_horizon_epochs=2)
  with pytest.raises(ValueError, match="horizon"):
    schedules.phase("w", 3, "warmup", lr_end=1.0, lr_horizon_epochs=4)


def test_plan_plot_is_a_png(tmp_path):
  _, config = recipe("resnet50_i1k_ce72")
  path = plots.plot_plan(compiled(config), str(tmp_path / "plan.png"))
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(path) > 20_000


def test_recipe_tool_prints_the_plan_and_plots_it(tmp_path):
  out = tmp_path / "plan.png"
  result = run_module("tfscale.recipe", "--config=configs/resnet50_i1k_lars.py:32k", f"--out={out}")
  assert "global batch 32,768: 39 steps/epoch" in result.stdout and "poly^2" in result.stdout
  assert out.exists()
  bad = run_module("tfscale.recipe", "--config=configs/resnet50_i1k_lars.py:64k", check=False)
  assert bad.returncode != 0 and "unknown variant" in bad.stderr

"""The recipe files: each loads, compiles at its published batch, has the documented length, opens with the
command that runs it; the 72-epoch plan reproduces the authors' solver chain; the recipe tool and plot."""
import glob
import os
import types

import numpy as np
import pytest
from ml_collections import config_flags  # noqa: F401  (the loader the CLIs use)

from tfscale import evaluate, plots, schedules
from tfscale.config_base import load_recipe
from tfscale.datasets import PUBLISHED_TRAIN_IMAGES
from conftest import REPO, run_module

# recipe file, variant → (epochs of the tfscale plan at the published batch, global batch,
# augmentation-collapse phases, snapshots). A Caffe chain's length is its iterations: 22,610 for ce72 at
# 312 steps/epoch (1,281,167 // 4,096), 7,638 + 402 for 448n at 89 steps/epoch.
RECIPES = {
    ("resnet50_i1k_ce72", ""): (22610 / 312, 4096, 1, 4),
    ("resnet50_i1k_ce72", "ce"): ((22610 + 2 * 1560) / 312, 4096, 3, 6),
    ("resnet50_i1k_ce72", "smooth"): (72, 4096, 1, 4),
    ("resnet50_i1k", ""): (90, 4096, 0, 1),
    ("resnet50_i1k", "448n"): (8040 / 89, 14336, 1, 2),
    ("resnet50_i1k", "448n_branched"): ((8040 + 402) / 89, 14336, 1, 2),
    ("resnet50_i1k_fast", ""): (37, 4096, 1, 2),
    ("wrn50_2_i1k", ""): ((22610 + 2 * 1560) / 312, 4096, 3, 6),
    ("wrn_i22k", ""): (30, 7680, 1, 2),
    ("wrn_places365", ""): (72 + 2 * 5, 4096, 3, 6),
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


# The splits each dataset's converter writes (data_prep/imagenet1k.py, imagenet22k.py, places365.py collect()).
CONVERTER_SPLITS = {1000: {"train", "validation", "validation_blacklisted"}, 21841: {"train", "test"},
                    365: {"train", "validation"}}


@pytest.mark.parametrize("name,variant", sorted(RECIPES))
def test_every_recipe_validates_and_evaluates_splits_its_data_has(name, variant):
  _, config = recipe(name, variant)
  splits = CONVERTER_SPLITS[config.data.num_classes]
  assert config.eval.split in splits
  info = types.SimpleNamespace(splits=splits, data_dir=config.data.dir, split=lambda s: None)
  assert set(evaluate.chosen_evals(config, info, [])) == set(config.evals)  # every evaluation runs


def test_a_run_reads_back_with_its_own_evaluations(tmp_path):
  """config.json round trip: a recipe that replaced config.evals (wrn_i22k: `test` only) does not get
  base_config's `val` merged back, and export's default evaluation is its only one."""
  from tfscale import config_base
  from tfscale import workdir as workdir_files
  _, config = recipe("wrn_i22k")
  workdir_files.write_config(str(tmp_path), config)
  read = workdir_files.read_config(str(tmp_path))
  assert list(read.evals) == ["test"] and read.evals.test.to_dict() == config.evals.test.to_dict()
  assert config_base.chosen_evaluation(read.evals) == "test"
  _, ce = recipe("resnet50_i1k_ce72", "ce")
  workdir_files.write_config(str(tmp_path / "ce"), ce)
  read = workdir_files.read_config(str(tmp_path / "ce"))
  assert sorted(read.evals) == ["cycle_snapshots", "ilsvrc2012", "val"]
  assert config_base.chosen_evaluation(read.evals) == "val" and read.evals.val.snapshots == "collapse1,collapse2,collapse"


def test_every_recipe_file_is_covered():
  files = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))}
  assert files - {"demo_digits", "digits_distorted"} == {name for name, _ in RECIPES}


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
  if collapses:  # weight decay goes up for the collapse (wherever it is: a branch may end before the run)
    assert plan.weight_decay[plan.collapse].min() > plan.weight_decay[0]
  doc = module.__doc__
  assert "horovodrun -np" in doc and f"--config=configs/{name}.py" in doc and "Target" in doc


# The solver files as their authors wrote them (github.com/sara-nl/caffe, models/intel_optimized_models/
# multinode/): resnet50_custom_lr/solver_{init,cyc1,cyc2,cyc3,collapse}.prototxt at c31f1191, and
# resnet50_448nodes/solver.prototxt + solver_collapse.prototxt at 002e2d77, whose README stops the main
# solver at iteration 7,638 (`--weights=resnet_50_448nodes_iter_7638`). `noaug`: the net is train_val_noaug.
CE72_SOLVERS = [
    dict(base_lr=1.6, lr_policy="poly_cyc", power=1, max_iter=7800, lr_iter=18720, warmup_iter=1560,
         warmup_start_lr=0.1, weight_decay=0.00005),
    dict(base_lr=1.02, lr_policy="poly_cyc", power=2, max_iter=3750, lr_iter=7500, weight_decay=0.00005),
    dict(base_lr=0.764, lr_policy="poly_cyc", power=2, max_iter=4750, lr_iter=7500, warmup_iter=1000,
         warmup_start_lr=0.255, weight_decay=0.00005),
    dict(base_lr=0.572, lr_policy="poly_cyc", power=2, max_iter=4750, lr_iter=7500, warmup_iter=1000,
         warmup_start_lr=0.19, weight_decay=0.00005),
    dict(base_lr=0.143, lr_policy="poly", power=2, max_iter=1560, weight_decay=0.0002, noaug=True),
]
# The Collapsed Ensemble (variant `ce`): solver_collapse.prototxt run from cyc1's and cyc2's snapshots too, in
# the order they run; the main line's cyc2/cyc3 still start from cyc1/cyc2. Their base_lr is ours: the
# cycle's base_lr / 4, as the authors' last collapse (0.143 = 0.572 / 4).
CE72_CE_SOLVERS = [CE72_SOLVERS[0], CE72_SOLVERS[1],
                   dict(CE72_SOLVERS[4], base_lr=1.02 / 4, branch=True), CE72_SOLVERS[2],
                   dict(CE72_SOLVERS[4], base_lr=0.764 / 4, branch=True), CE72_SOLVERS[3], CE72_SOLVERS[4]]
R448_SOLVERS = [
    dict(base_lr=4.8, lr_policy="poly", power=1, max_iter=8040, warmup_iter=446, warmup_start_lr=0.1,
         weight_decay=0.00005, stopped_at=7638),
    dict(base_lr=0.254, lr_policy="poly", power=2, max_iter=402, weight_decay=0.0001, noaug=True),
]
# All the authors ran: Part 1 to max_iter in one run, Part 2 from its iteration-7,638 snapshot (README lines
# 12-20, 33), laid out as tfscale runs it: the branch between Part 1's iterations 7,637 and 7,638.
R448_BRANCHED_SOLVERS = [R448_SOLVERS[0], dict(R448_SOLVERS[1], branch=True),
                         dict(R448_SOLVERS[0], resumed_at=7638, stopped_at=8040)]


def caffe_learning_rate(solver, iteration):
  """SGDSolver<Dtype>::GetLearningRate and GetWarmUpLR (sara-nl/caffe src/caffe/solvers/sgd_solver.cpp)."""
  if solver.get("warmup_iter", 0) > 0 and iteration < solver["warmup_iter"]:
    cur_iter = max(iteration, 0)
    return (cur_iter * solver["base_lr"] + (solver["warmup_iter"] - cur_iter) * solver["warmup_start_lr"]) / \
        solver["warmup_iter"]
  if solver["lr_policy"] == "poly":
    return solver["base_lr"] * (1.0 - iteration / solver["max_iter"]) ** solver["power"]
  if solver["lr_policy"] == "poly_cyc":
    return solver["base_lr"] * (1.0 - iteration / solver["lr_iter"]) ** solver["power"]
  raise AssertionError(solver["lr_policy"])


def what_the_chain_executes(solvers):
  """Per iteration of the whole chain: (LR, weight decay, velocity starts empty, noaug, off the main line:
  a run whose result no later solver starts from). Each solver is a
  fresh `caffe train --weights=…`: iter_ = 0 and empty momentum history at its start; Solver::Step runs
  iterations 0 … max_iter − 1 (or until the authors stopped it); a solver resumed_at an iteration goes on
  with its velocity."""
  rows = []
  for solver in solvers:
    for iteration in range(solver.get("resumed_at", 0), solver.get("stopped_at", solver["max_iter"])):
      rows.append((caffe_learning_rate(solver, iteration), solver["weight_decay"], iteration == 0,
                   solver.get("noaug", False), solver.get("branch", False)))
  return [np.array(column) for column in zip(*rows)]


@pytest.mark.parametrize("name,variant,solvers", [("resnet50_i1k_ce72", "", CE72_SOLVERS),
                                                  ("resnet50_i1k_ce72", "ce", CE72_CE_SOLVERS),
                                                  ("resnet50_i1k", "448n", R448_SOLVERS),
                                                  ("resnet50_i1k", "448n_branched", R448_BRANCHED_SOLVERS),
                                                  ("wrn50_2_i1k", "", CE72_CE_SOLVERS)])
def test_plan_is_the_caffe_chain_at_every_step(name, variant, solvers):
  _, config = recipe(name, variant)
  plan = compiled(config)
  lr, weight_decay, reset, noaug, branch = what_the_chain_executes(solvers)
  lengths = [s.get("stopped_at", s["max_iter"]) - s.get("resumed_at", 0) for s in solvers]
  assert plan.total_steps == len(lr) == sum(lengths)
  np.testing.assert_allclose(plan.lr, lr, rtol=1e-9, atol=0)
  np.testing.assert_array_equal(plan.weight_decay, weight_decay)
  np.testing.assert_array_equal(plan.momentum_reset, reset)
  np.testing.assert_array_equal(plan.collapse, noaug)
  np.testing.assert_array_equal(plan.branch, branch)
  solver_ends = np.cumsum(lengths)
  assert [step for _, step in plan.snapshot_steps()] == list(solver_ends[-len(plan.snapshot_steps()):])
  assert config.model.bn_momentum == 0.95 and config.optim.name == "sgd" and config.optim.momentum == 0.9


def test_the_chain_jumps_where_the_issue_says():
  """The executed curve's values at the solver boundaries (issue 13's table), not the smooth variant's."""
  _, config = recipe("resnet50_i1k_ce72")
  plan = compiled(config)
  first = dict(zip([p["name"] for p in plan.phases], plan.boundaries[:-1]))
  last = {name: step - 1 for name, step in zip(first, plan.boundaries[1:])}
  expected = {"init": (0.1, 0.9334), "cyc1": (1.02, 0.2551), "cyc2": (0.255, 0.1028), "cyc3": (0.19, 0.07696),
              "collapse": (0.143, 0.143 / 1560 ** 2)}
  for name, (at_start, at_end) in expected.items():
    assert plan.lr[first[name]] == pytest.approx(at_start, rel=1e-3)
    assert plan.lr[last[name]] == pytest.approx(at_end, rel=1e-3)
  assert plan.lr[1560] == pytest.approx(1.6 * (1 - 1560 / 18720))  # poly counted from iteration 0: 1.467
  _, smooth = recipe("resnet50_i1k_ce72", "smooth")
  smooth_plan = compiled(smooth)
  assert not smooth_plan.momentum_reset.any()
  assert smooth_plan.lr[round(5 * smooth_plan.steps_per_epoch)] == pytest.approx(1.6, rel=1e-3)


def test_the_collapsed_ensemble_recipe_takes_only_collapses():
  _, config = recipe("resnet50_i1k_ce72", "ce")
  plan = compiled(config)
  assert [names for _, _, names in plan.branches()] == [["collapse1"], ["collapse2"]]
  assert [(first, end) for first, end, _ in plan.branches()] == [(7800 + 3750, 7800 + 3750 + 1560),
                                                                 (7800 + 3750 + 1560 + 4750, 7800 + 3750 + 2 * 1560 + 4750)]
  budget = plan.budget()
  assert (budget["main_line"]["steps"], budget["branches"]["steps"], budget["total"]["steps"]) == (22610, 3120, 25730)
  # After the branch, cyc2 runs its own solver file from its first iteration (warmup from 0.255).
  assert plan.lr[7800 + 3750 + 1560] == pytest.approx(0.255, rel=1e-9)
  for name in ("val", "ilsvrc2012"):
    assert config.evals[name].snapshots == "collapse1,collapse2,collapse"
  assert config.evals.cycle_snapshots.snapshots == "cyc1,cyc2,cyc3"


@pytest.mark.parametrize("recipe_file,variants", [
    ("digits_distorted", ["", "branched_long", "branched_late", "sequential", "single"]),
    ("demo_digits", ["tiny", "tiny_branched"])])
def test_compared_digits_variants_see_the_same_images(recipe_file, variants):
  """The study's arms (and the two tiny test plans) cost the same: main line + branches, step for step."""
  budgets = []
  for variant in variants:
    _, config = recipe(recipe_file, variant)
    budgets.append(schedules.compile_for(config, 5032, 64).budget()["total"])
  assert all(b == budgets[0] for b in budgets), budgets
  if recipe_file == "digits_distorted":
    _, branched = recipe(recipe_file, "")
    plan = schedules.compile_for(branched, 5032, 64)
    assert [names for _, _, names in plan.branches()] == [["collapse1"], ["collapse2"]]
    assert plan.budget()["main_line"]["epochs"] == 22 and plan.budget()["branches"]["epochs"] == 2


def test_caffe_solver_keeps_its_images_at_another_batch():
  """At half the published batch a solver runs twice the steps along the same curve in images."""
  solver = schedules.caffe_solver("s", base_lr=1.0, lr_policy="poly_cyc", power=2, max_iter=100, lr_iter=200,
                                  warmup_iter=10, warmup_start_lr=0.1, global_batch=512)
  published = schedules.compile_plan([solver], steps_per_epoch=10, global_batch=512)
  half = schedules.compile_plan([solver], steps_per_epoch=20, global_batch=256)
  assert published.total_steps == 100 and half.total_steps == 200
  np.testing.assert_allclose(half.lr[::2], published.lr / 2, rtol=1e-12)  # linear scaling rule
  with pytest.raises(ValueError, match="lr_iter"):
    schedules.caffe_solver("s", base_lr=1, lr_policy="poly_cyc", max_iter=10, global_batch=256)
  with pytest.raises(ValueError, match="stop_iter"):
    schedules.caffe_solver("s", base_lr=1, lr_policy="poly", max_iter=10, stop_iter=11, global_batch=256)
  with pytest.raises(ValueError, match="start_iter"):
    schedules.caffe_solver("s", base_lr=1, lr_policy="poly", max_iter=10, start_iter=10, global_batch=256)
  resumed = schedules.caffe_solver("s", base_lr=1.0, lr_policy="poly", max_iter=100, start_iter=40, global_batch=256)
  plan = schedules.compile_plan([solver, resumed], steps_per_epoch=10, global_batch=256)
  assert not plan.momentum_reset[200] and plan.lr[200] == pytest.approx(1.0 * (1 - 40 / 100))  # goes on at 40


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


def test_collapse_cycles_with_branches_is_a_collapsed_ensemble():
  """branch_collapse_epochs: a collapse off every cycle's end but the last, starting where that cycle stopped;
  the main line re-warms from the cycle's end as if no branch had run."""
  args = dict(peak_lr=1.0, warmup_epochs=1, decay_epochs=2, decay_horizon_epochs=4, cycles=3, cycle_epochs=2,
              cycle_horizon_epochs=4, rewarmup_epochs=1, rewarmup_fraction=0.5, final_collapse_epochs=1,
              weight_decay=1e-4, collapse_weight_decay=4e-4)
  sequential = schedules.compile_plan(schedules.collapse_cycles(**args), steps_per_epoch=100, global_batch=256)
  plan = schedules.compile_plan(schedules.collapse_cycles(**args, branch_collapse_epochs=1.5), steps_per_epoch=100,
                                global_batch=256)
  assert [names for _, _, names in plan.branches()] == [["collapse1"], ["collapse2"]]
  assert plan.budget()["branches"]["steps"] == 300 and plan.total_steps == sequential.total_steps + 300
  for first, end, _ in plan.branches():
    assert plan.lr[first] == pytest.approx(plan.lr[first - 1], rel=0.02)  # from where the cycle stopped
    assert plan.lr[end - 1] == pytest.approx(0.0, abs=1e-4) and plan.weight_decay[first] == 4e-4
    assert plan.lr[end] == pytest.approx(plan.lr[first - 1], rel=0.02)    # the main line goes on from there
  main_line = np.ones(plan.total_steps, bool)
  for first, end, _ in plan.branches():
    main_line[first:end] = False
  np.testing.assert_allclose(plan.lr[main_line], sequential.lr, rtol=1e-12)
  assert [name for name, _ in plan.snapshot_steps()] == ["cycle1", "collapse1", "cycle2", "collapse2", "cycle3",
                                                          "collapse"]


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
  result = run_module("tfscale_tools.recipe", "--config=configs/resnet50_i1k_lars.py:32k", f"--out={out}")
  assert "global batch 32,768: 39 steps/epoch" in result.stdout and "poly^2" in result.stdout
  assert out.exists()
  bad = run_module("tfscale_tools.recipe", "--config=configs/resnet50_i1k_lars.py:64k", check=False)
  assert bad.returncode != 0 and "unknown variant" in bad.stderr

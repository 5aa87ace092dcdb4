"""Phase plans compile to per-step tables that match the closed forms."""
import numpy as np
import pytest

from tfscale import schedules
from tfscale.schedules import phase


def test_closed_forms():
  assert schedules.warmup_lr(0, 10, 0.1, 1.1) == pytest.approx(0.1)
  assert schedules.warmup_lr(5, 10, 0.1, 1.1) == pytest.approx(0.6)
  assert schedules.warmup_lr(5, 10, 0.0, 1.0, power=2) == pytest.approx(0.25)
  # Caffe poly: base·(1 − it/max_it)^p
  assert schedules.poly_lr(3, 10, 2.0, 0.0, power=2) == pytest.approx(2.0 * 0.7 ** 2)
  assert schedules.poly_lr(3, 10, 2.0, 0.5, power=1) == pytest.approx(1.5 * 0.7 + 0.5)
  assert schedules.cosine_lr(5, 10, 1.0, 0.0) == pytest.approx(0.5)
  assert schedules.step_lr(np.arange(40), 10, 1.0, [1, 3], 0.1)[[0, 9, 10, 29, 30]] == pytest.approx(
      [1, 1, 0.1, 0.1, 0.01])


def test_plan_tables_follow_phases_and_scale_with_global_batch():
  plan = schedules.compile_plan([
      phase("warmup", 2, "warmup", lr_start=0.0, lr_end=1.0, weight_decay=1e-4),
      phase("decay", 3, "poly", lr_end=0.0, lr_power=2, weight_decay=1e-4),
      phase("rewarmup", 1, "warmup", lr_end=0.5, weight_decay=1e-4),
      phase("collapse", 1.5, "poly", lr_end=0.0, lr_power=2, weight_decay=5e-4, augment="collapse",
            snapshot=True),
  ], steps_per_epoch=10, global_batch=512)
  assert plan.boundaries.tolist() == [0, 20, 50, 60, 75]
  assert plan.total_steps == 75
  scale = 512 / 256
  np.testing.assert_allclose(plan.lr[:20], schedules.warmup_lr(np.arange(20), 20, 0.0, 1.0 * scale))
  # The decay continues from the warmup's peak.
  np.testing.assert_allclose(plan.lr[20:50], schedules.poly_lr(np.arange(30), 30, scale, 0.0, 2))
  # The re-warmup starts where the decay ended (0) and climbs to its own peak.
  np.testing.assert_allclose(plan.lr[50:60], schedules.warmup_lr(np.arange(10), 10, 0.0, 0.5 * scale))
  np.testing.assert_allclose(plan.lr[60:], schedules.poly_lr(np.arange(15), 15, 0.5 * scale, 0.0, 2))
  assert plan.weight_decay[59] == 1e-4 and plan.weight_decay[60] == 5e-4
  assert not plan.collapse[:60].any() and plan.collapse[60:].all()
  assert plan.snapshot_steps() == [("collapse", 75)]
  assert [plan.phase_at(s) for s in (0, 19, 20, 74, 75)] == [0, 0, 1, 3, 3]
  table = schedules.plan_table(plan)
  assert "collapse" in table and "poly^2" in table


def test_bad_plans_are_refused():
  with pytest.raises(ValueError, match="lr_shape"):
    phase("x", 1, "linear", lr_end=1.0)
  with pytest.raises(ValueError, match="augment"):
    phase("x", 1, "poly", lr_end=1.0, augment="none")
  with pytest.raises(ValueError, match="first"):
    schedules.compile_plan([phase("x", 1, "poly", lr_end=0.0)], 10, 256)
  with pytest.raises(ValueError, match="0 steps"):
    schedules.compile_plan([phase("x", 0.01, "warmup", lr_end=1.0)], 10, 256)


def test_lr_scale_multiplies_every_learning_rate_and_nothing_else():
  phases = [phase("w", 1, "warmup", lr_start=0.1, lr_end=1.0, weight_decay=1e-4),
            phase("d", 2, "poly", lr_end=0.0, lr_power=2, weight_decay=1e-4, augment="collapse")]
  plain = schedules.compile_plan(phases, 10, 512)
  scaled = schedules.compile_plan(phases, 10, 512, lr_scale=3.0)
  np.testing.assert_allclose(scaled.lr, 3.0 * plain.lr)
  np.testing.assert_array_equal(scaled.weight_decay, plain.weight_decay)
  np.testing.assert_array_equal(scaled.collapse, plain.collapse)


def branched_plan():
  """warmup 2 → cycle 2 → [collapse A 1 + B 0.5: one branch] → rewarmup 1 → cycle 1 → [collapse 1] → final 1."""
  wd, collapse_wd = 1e-4, 4e-4
  return schedules.compile_plan([
      phase("warmup", 2, "warmup", lr_start=0.0, lr_end=1.0, weight_decay=wd),
      phase("cycle1", 2, "poly", lr_end=0.0, lr_power=2, lr_horizon_epochs=4, weight_decay=wd),
      phase("collapse1a", 1, "constant", weight_decay=collapse_wd, augment="collapse", branch=True, lr_end=0.0,
            reset_momentum=True),
      phase("collapse1b", 0.5, "poly", lr_end=0.0, lr_power=2, weight_decay=collapse_wd, augment="collapse",
            snapshot=True, branch=True),
      phase("rewarmup2", 1, "warmup", lr_end=0.5, weight_decay=wd),
      phase("cycle2", 1, "poly", lr_end=0.1, lr_power=1, weight_decay=wd),
      phase("collapse2", 1, "poly", lr_start=0.2, lr_end=0.0, lr_power=2, weight_decay=collapse_wd,
            augment="collapse", snapshot=True, branch=True),
      phase("final", 1, "poly", lr_end=0.0, lr_power=2, weight_decay=collapse_wd, augment="collapse", snapshot=True),
  ], steps_per_epoch=10, global_batch=512)


def test_branches_sit_on_the_one_step_axis_and_every_table_covers_them():
  plan = branched_plan()
  s = 512 / 256
  assert plan.boundaries.tolist() == [0, 20, 40, 50, 55, 65, 75, 85, 95]
  # Each step's LR: the main line's curve, with the branches' own steps between its phases.
  cycle1 = schedules.poly_lr(np.arange(20), 40, 1.0 * s, 0.0, 2)
  cycle1_end = float(schedules.poly_lr(20, 40, 1.0 * s, 0.0, 2))  # where the main line stops: 0.25 of its start
  branch_a = np.full(10, cycle1_end)                                # lr_start=None: where the main line is
  branch_b = schedules.poly_lr(np.arange(5), 5, cycle1_end, 0.0, 2)  # the branch's 2nd phase goes on from its 1st
  rewarmup = schedules.warmup_lr(np.arange(10), 10, cycle1_end, 0.5 * s)  # from the main line, not from 0
  cycle2 = schedules.poly_lr(np.arange(10), 10, 0.5 * s, 0.1 * s, 1)
  branch2 = schedules.poly_lr(np.arange(10), 10, 0.2 * s, 0.0, 2)
  final = schedules.poly_lr(np.arange(10), 10, 0.1 * s, 0.0, 2)    # from cycle 2's end, not the branch's 0
  expected = np.concatenate([schedules.warmup_lr(np.arange(20), 20, 0.0, s), cycle1, branch_a, branch_b, rewarmup,
                             cycle2, branch2, final])
  np.testing.assert_allclose(plan.lr, expected, rtol=1e-12)
  np.testing.assert_array_equal(plan.branch, np.repeat([0, 0, 1, 1, 0, 0, 1, 0], [20, 20, 10, 5, 10, 10, 10, 10]))
  np.testing.assert_array_equal(plan.collapse, np.repeat([0, 0, 1, 1, 0, 0, 1, 1], [20, 20, 10, 5, 10, 10, 10, 10]))
  np.testing.assert_array_equal(plan.weight_decay, np.repeat([1e-4, 4e-4, 1e-4, 4e-4], [40, 15, 20, 20]))
  assert np.flatnonzero(plan.momentum_reset).tolist() == [40]
  assert plan.branches() == [(40, 55, ["collapse1a", "collapse1b"]), (75, 85, ["collapse2"])]
  assert plan.snapshot_steps() == [("collapse1b", 55), ("collapse2", 85), ("final", 95)]


def test_the_budget_counts_main_line_and_branches():
  budget = branched_plan().budget()
  assert budget["main_line"] == {"steps": 70, "epochs": 7.0, "images": 70 * 512}
  assert budget["branches"] == {"steps": 25, "epochs": 2.5, "images": 25 * 512}
  assert budget["total"] == {"steps": 95, "epochs": 9.5, "images": 95 * 512}
  table = schedules.plan_table(branched_plan())
  assert table.splitlines()[-1] == ("budget: main line 7 epochs + branches 2.5 epochs = 9.5 epochs (95 steps, "
                                    "48,640 images at global batch 512)")
  rows = {line.split()[0]: line for line in table.splitlines()[1:-1]}
  assert rows["collapse1a"].endswith("branch") and rows["cycle2"].endswith("main")
  plain = schedules.compile_plan([phase("w", 1, "warmup", lr_end=1.0, snapshot=True)], 10, 256)
  assert plain.budget()["branches"]["steps"] == 0 and plain.branches() == []


def test_bad_branches_are_refused():
  with pytest.raises(ValueError, match="first phase cannot be a branch"):
    schedules.compile_plan([phase("b", 1, "warmup", lr_end=1.0, snapshot=True, branch=True)], 10, 256)
  with pytest.raises(ValueError, match="last phase cannot be a branch"):
    schedules.compile_plan([phase("w", 1, "warmup", lr_end=1.0),
                            phase("b", 1, "poly", lr_end=0.0, snapshot=True, branch=True)], 10, 256)
  with pytest.raises(ValueError, match="must end in a snapshot"):
    schedules.compile_plan([phase("w", 1, "warmup", lr_end=1.0),
                            phase("b", 1, "poly", lr_end=0.0, branch=True),
                            phase("m", 1, "poly", lr_end=0.0, snapshot=True)], 10, 256)

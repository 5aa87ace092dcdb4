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

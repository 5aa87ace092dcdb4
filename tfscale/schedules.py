"""Learning-rate shapes in closed form, and the phase plan compiled to step-indexed tables.

A phase plan is an ordered list of phases (plain dicts, written in the config with `phase(...)`):

  name, epochs, lr_shape ('warmup' | 'poly' | 'constant' | 'cosine' | 'step'), lr_start, lr_end, lr_power,
  lr_horizon_epochs (poly only: the curve's length, ≥ epochs; a longer horizon truncates the curve the way
  Caffe's `poly` with max_iter past the stopping point does), weight_decay, augment ('full' | 'collapse'),
  snapshot (bool)

Learning rates are written per 256 images; `compile_plan` multiplies them by global_batch / 256 (the
linear scaling rule) — the only place that scaling happens. `lr_start=None` continues from wherever the
previous phase ended, which is what a re-warmup after a collapse wants. This module has no TensorFlow in
it so configs and the planner can import it.
"""
import dataclasses
import math
from typing import List, Optional, Sequence

import numpy as np

SHAPES = ("warmup", "poly", "constant", "cosine", "step")
AUGMENT_MODES = ("full", "collapse")


def phase(name: str, epochs: float, lr_shape: str, lr_end: float, lr_start: Optional[float] = None,
          lr_power: float = 1.0, weight_decay: float = 0.0, augment: str = "full", snapshot: bool = False,
          lr_decay_epochs: Sequence[float] = (), lr_gamma: float = 0.1,
          lr_horizon_epochs: Optional[float] = None) -> dict:
  """One phase of the plan, validated. For 'warmup' lr_end is the peak; for 'poly' it is the value the curve
  reaches at its horizon (the phase end unless lr_horizon_epochs is longer)."""
  if lr_shape not in SHAPES:
    raise ValueError(f"phase {name!r}: lr_shape {lr_shape!r} is not one of {SHAPES}")
  if augment not in AUGMENT_MODES:
    raise ValueError(f"phase {name!r}: augment {augment!r} is not one of {AUGMENT_MODES}")
  if epochs <= 0:
    raise ValueError(f"phase {name!r}: epochs must be positive, got {epochs}")
  if lr_horizon_epochs is not None and (lr_shape != "poly" or lr_horizon_epochs < epochs):
    raise ValueError(f"phase {name!r}: lr_horizon_epochs is for 'poly' phases and must be >= epochs "
                     f"({lr_horizon_epochs} with {epochs} epochs of {lr_shape!r})")
  return dict(name=name, epochs=float(epochs), lr_shape=lr_shape, lr_start=lr_start, lr_end=float(lr_end),
              lr_power=float(lr_power), weight_decay=float(weight_decay), augment=augment,
              snapshot=bool(snapshot), lr_decay_epochs=list(lr_decay_epochs), lr_gamma=float(lr_gamma),
              lr_horizon_epochs=None if lr_horizon_epochs is None else float(lr_horizon_epochs))


def collapse_cycles(*, peak_lr: float, warmup_start_lr: float = 0.0, warmup_epochs: float, decay_epochs: float,
                    decay_horizon_epochs: Optional[float] = None, cycles: int, cycle_epochs: float,
                    cycle_horizon_epochs: Optional[float] = None, rewarmup_epochs: float,
                    rewarmup_fraction: float, final_collapse_epochs: float, weight_decay: float,
                    collapse_weight_decay: float, decay_power: float = 1.0, cycle_power: float = 2.0) -> List[dict]:
  """The Collapsed-Ensemble recipe in its general form (LRs per 256 images):

    warmup → poly-`decay_power` decay → cycle 1 (poly-`cycle_power`, snapshot)
    → (re-warmup → cycle k, snapshot) for k = 2…cycles → final collapse (augmentation off, weight decay
    raised, poly-2 to 0, snapshot).

  Each re-warmup climbs from where the previous cycle stopped to `rewarmup_fraction` × that cycle's
  starting LR; each cycle decays over its horizon (2 × its length in the seed: it stops at a quarter of
  its start) and the final collapse starts where the last cycle stopped.
  """
  if cycles < 1:
    raise ValueError(f"cycles must be >= 1, got {cycles}")
  plan = [phase("warmup", warmup_epochs, "warmup", lr_start=warmup_start_lr, lr_end=peak_lr,
                weight_decay=weight_decay),
          phase("decay", decay_epochs, "poly", lr_end=0.0, lr_power=decay_power,
                lr_horizon_epochs=decay_horizon_epochs, weight_decay=weight_decay)]
  cycle_start = float(poly_lr(decay_epochs, decay_horizon_epochs or decay_epochs, peak_lr, 0.0, decay_power))
  for k in range(1, cycles + 1):
    if k > 1:
      cycle_start *= rewarmup_fraction
      plan.append(phase(f"rewarmup{k}", rewarmup_epochs, "warmup", lr_end=cycle_start, weight_decay=weight_decay))
    plan.append(phase(f"cycle{k}", cycle_epochs, "poly", lr_end=0.0, lr_power=cycle_power,
                      lr_horizon_epochs=cycle_horizon_epochs, weight_decay=weight_decay, snapshot=True))
  plan.append(phase("collapse", final_collapse_epochs, "poly", lr_end=0.0, lr_power=2.0,
                    weight_decay=collapse_weight_decay, augment="collapse", snapshot=True))
  return plan


# --- Closed forms. t is the step within the phase (0 … n-1); each returns the LR at step t.

def warmup_lr(t, n, start, peak, power=1.0):
  """Gradual warmup (Goyal et al.): start → peak over n steps, linear for power 1."""
  return start + (peak - start) * (np.asarray(t, np.float64) / n) ** power


def poly_lr(t, n, start, end, power=1.0):
  """Caffe 'poly': lr = (start − end)·(1 − t/n)^power + end."""
  return (start - end) * (1.0 - np.asarray(t, np.float64) / n) ** power + end


def cosine_lr(t, n, start, end):
  return end + (start - end) * 0.5 * (1.0 + np.cos(math.pi * np.asarray(t, np.float64) / n))


def step_lr(t, steps_per_epoch, start, decay_epochs, gamma):
  """start·gamma^k after the k-th of decay_epochs (epochs counted from the phase start)."""
  t = np.asarray(t, np.float64)
  k = sum((t >= round(e * steps_per_epoch)).astype(np.int64) for e in decay_epochs) if decay_epochs else 0
  return start * gamma ** k


@dataclasses.dataclass(frozen=True)
class CompiledPlan:
  """The plan as per-step tables; step s trains with lr[s], weight_decay[s], collapse[s]."""
  phases: List[dict]
  boundaries: np.ndarray        # boundaries[i] = first step of phase i; boundaries[-1] = total steps
  lr: np.ndarray                # float64, already scaled to the global batch
  weight_decay: np.ndarray      # float64
  collapse: np.ndarray          # bool: scale/aspect augmentation off
  steps_per_epoch: int

  @property
  def total_steps(self) -> int:
    return int(self.boundaries[-1])

  def phase_at(self, step: int) -> int:
    """Index of the phase that trains step `step` (the last one for steps past the end)."""
    return int(min(np.searchsorted(self.boundaries, step, side="right") - 1, len(self.phases) - 1))

  def snapshot_steps(self) -> List[tuple]:
    """[(phase name, step after its last update)] of every phase that ends in a snapshot."""
    return [(p["name"], int(self.boundaries[i + 1])) for i, p in enumerate(self.phases) if p["snapshot"]]


def compile_plan(phases: Sequence[dict], steps_per_epoch: int, global_batch: int,
                 lr_scale: float = 1.0) -> CompiledPlan:
  """Step tables for LR (scaled by global_batch/256 and lr_scale), weight decay and augmentation mode.

  lr_scale multiplies every learning rate of the plan: one knob for LR sweeps of a whole recipe."""
  if not phases:
    raise ValueError("the plan has no phases")
  if steps_per_epoch < 1:
    raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
  scale = global_batch / 256.0 * lr_scale
  # Boundaries from cumulative epochs, so fractional phases never drift by rounding.
  ends = np.round(np.cumsum([p["epochs"] for p in phases]) * steps_per_epoch).astype(np.int64)
  boundaries = np.concatenate([[0], ends])
  lr, wd, collapse = [], [], []
  previous_end = None
  for i, p in enumerate(phases):
    n = int(boundaries[i + 1] - boundaries[i])
    if n <= 0:
      raise ValueError(f"phase {p['name']!r} has {p['epochs']} epochs = 0 steps at {steps_per_epoch} steps/epoch")
    t = np.arange(n)
    start = previous_end if p["lr_start"] is None else p["lr_start"] * scale
    if start is None:
      if p["lr_shape"] != "warmup":
        raise ValueError(f"phase {p['name']!r} is first: give it an lr_start")
      start = 0.0
    end = p["lr_end"] * scale
    shape = p["lr_shape"]
    if shape == "warmup":
      values = warmup_lr(t, n, start, end, p["lr_power"])
      last = end
    elif shape == "poly":
      horizon = n if p.get("lr_horizon_epochs") is None else round(p["lr_horizon_epochs"] * steps_per_epoch)
      values = poly_lr(t, horizon, start, end, p["lr_power"])
      last = float(poly_lr(n, horizon, start, end, p["lr_power"]))  # where the curve is when the phase stops
    elif shape == "cosine":
      values = cosine_lr(t, n, start, end)
      last = end
    elif shape == "step":
      values = step_lr(t, steps_per_epoch, start, p["lr_decay_epochs"], p["lr_gamma"])
      last = float(values[-1])
    else:  # constant
      values = np.full(n, start)
      last = start
    previous_end = last
    lr.append(values)
    wd.append(np.full(n, p["weight_decay"]))
    collapse.append(np.full(n, p["augment"] == "collapse"))
  return CompiledPlan(list(phases), boundaries, np.concatenate(lr), np.concatenate(wd),
                      np.concatenate(collapse), steps_per_epoch)


def compile_for(config, train_images: int, global_batch: int) -> CompiledPlan:
  """A config's plan at a global batch: an epoch is train_images // global_batch steps, LRs × optim.lr_scale."""
  return compile_plan(list(config.plan), train_images // global_batch, global_batch,
                      config.optim.get("lr_scale", 1.0))


def plan_table(plan: CompiledPlan) -> str:
  """The plan as a fixed-width table for the start-up log."""
  rows = [("phase", "epochs", "steps", "lr shape", "lr first→last", "wd", "augment", "snapshot")]
  for i, p in enumerate(plan.phases):
    a, b = int(plan.boundaries[i]), int(plan.boundaries[i + 1])
    shape = p["lr_shape"] + (f"^{p['lr_power']:g}" if p["lr_shape"] in ("poly", "warmup") else "")
    rows.append((p["name"], f"{p['epochs']:g}", f"{a}-{b - 1}", shape,
                 f"{plan.lr[a]:.4g}→{plan.lr[b - 1]:.4g}", f"{p['weight_decay']:.2g}", p["augment"],
                 "yes" if p["snapshot"] else ""))
  widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
  return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)

"""Learning-rate shapes in closed form, and the phase plan compiled to step-indexed tables.

A phase plan is an ordered list of phases (plain dicts, written in the config with `phase(...)`):

  name, epochs, lr_shape ('warmup' | 'poly' | 'constant' | 'cosine' | 'step'), lr_start, lr_end, lr_power,
  lr_horizon_epochs (poly only: the curve's length, ≥ epochs; a longer horizon truncates the curve the way
  Caffe's `poly` with max_iter past the stopping point does), weight_decay, augment ('full' | 'collapse'),
  snapshot (bool), reset_momentum (bool: the optimizer's velocity restarts from zero at the phase's first step),
  branch (bool: the phase is trained off the main line)

or, written with `caffe_solver(...)` from a Caffe solver file's own fields, one solver of a chain (lr_shape
'caffe'): its length in iterations at the global batch it was run at, and the LR Caffe's SGDSolver computes
at each of them — warmup and poly both counted from the solver's iteration 0 — with the momentum history
starting empty, as every `caffe train --weights=…` does.

Branches. Consecutive phases with branch=True form one branch (the Collapsed Ensemble's collapse of a
cycle's end): it starts from the main line's state at its first step, ends in a snapshot, and hands the
main line back the state it had before the branch (trainer: callbacks.MainLine). There is one
step axis: a branch's steps sit between the main-line phases around it and every table covers them, so
a branch costs what it trains. A branch's first phase with lr_start=None starts where the main line is;
the main-line phase after a branch continues from the main line's LR, as if the branch had not happened.

Learning rates are written per 256 images; `compile_plan` multiplies them by global_batch / 256 (the
linear scaling rule) — the only place that scaling happens. `lr_start=None` continues from wherever the
previous phase ended, which is what a re-warmup after a collapse wants. This module has no TensorFlow in
it so configs and the planner can import it.
"""
import dataclasses
import math
from typing import List, Optional, Sequence

import numpy as np

from tfscale.config_base import ConfigError

SHAPES = ("warmup", "poly", "constant", "cosine", "step", "caffe")
CAFFE_POLICIES = ("poly", "poly_cyc", "fixed")
AUGMENT_MODES = ("full", "collapse")


def phase(name: str, epochs: float, lr_shape: str, lr_end: float, lr_start: Optional[float] = None,
          lr_power: float = 1.0, weight_decay: float = 0.0, augment: str = "full", snapshot: bool = False,
          lr_decay_epochs: Sequence[float] = (), lr_gamma: float = 0.1,
          lr_horizon_epochs: Optional[float] = None, reset_momentum: bool = False, branch: bool = False) -> dict:
  """One phase of the plan, validated. For 'warmup' lr_end is the peak; for 'poly' it is the value the curve
  reaches at its horizon (the phase end unless lr_horizon_epochs is longer)."""
  if lr_shape == "caffe":
    raise ConfigError(f"phase {name!r}: write Caffe solvers with caffe_solver(...)")
  if lr_shape not in SHAPES:
    raise ConfigError(f"phase {name!r}: lr_shape {lr_shape!r} is not one of {SHAPES}")
  if augment not in AUGMENT_MODES:
    raise ConfigError(f"phase {name!r}: augment {augment!r} is not one of {AUGMENT_MODES}")
  if epochs <= 0:
    raise ConfigError(f"phase {name!r}: epochs must be positive, got {epochs}")
  if lr_horizon_epochs is not None and (lr_shape != "poly" or lr_horizon_epochs < epochs):
    raise ConfigError(f"phase {name!r}: lr_horizon_epochs is for 'poly' phases and must be >= epochs "
                     f"({lr_horizon_epochs} with {epochs} epochs of {lr_shape!r})")
  return dict(name=name, epochs=float(epochs), lr_shape=lr_shape, lr_start=lr_start, lr_end=float(lr_end),
              lr_power=float(lr_power), weight_decay=float(weight_decay), augment=augment,
              snapshot=bool(snapshot), lr_decay_epochs=list(lr_decay_epochs), lr_gamma=float(lr_gamma),
              lr_horizon_epochs=None if lr_horizon_epochs is None else float(lr_horizon_epochs),
              reset_momentum=bool(reset_momentum), branch=bool(branch))


def caffe_solver(name: str, *, base_lr: float, lr_policy: str, max_iter: int, global_batch: int, power: float = 1.0,
                 lr_iter: Optional[int] = None, warmup_iter: int = 0, warmup_start_lr: float = 0.0,
                 weight_decay: float = 0.0, start_iter: int = 0, stop_iter: Optional[int] = None,
                 augment: str = "full", snapshot: bool = False, branch: bool = False) -> dict:
  """One Caffe solver of a chain, from its prototxt fields (absolute LRs at `global_batch`, the batch its
  iterations were run at). `stop_iter`: where the authors stopped it, if before max_iter. `start_iter` > 0:
  the same run going on from there (after a branch taken off its snapshot at start_iter): iterations
  count on and the velocity is kept, as in the one uninterrupted `caffe train` the authors ran.

  Caffe's SGDSolver::GetLearningRate at iteration i of the solver (0-based, warmup included):
    i < warmup_iter:  (i·base_lr + (warmup_iter − i)·warmup_start_lr) / warmup_iter
    'poly':           base_lr·(1 − i/max_iter)^power
    'poly_cyc':       base_lr·(1 − i/lr_iter)^power        (sara-nl's fork)
    'fixed':          base_lr
  At another global batch B the solver keeps its length in images: step t is iteration t·B/global_batch.
  branch=True: a `caffe train --weights=<a main-line snapshot>` whose result the main line does not go on from.
  """
  if lr_policy not in CAFFE_POLICIES:
    raise ConfigError(f"solver {name!r}: lr_policy {lr_policy!r} is not one of {CAFFE_POLICIES}")
  if lr_policy == "poly_cyc" and not lr_iter:
    raise ConfigError(f"solver {name!r}: 'poly_cyc' needs lr_iter")
  stop_iter = max_iter if stop_iter is None else stop_iter
  if not 0 <= start_iter < stop_iter <= max_iter:
    raise ConfigError(f"solver {name!r}: need 0 <= start_iter ({start_iter}) < stop_iter ({stop_iter}) <= "
                     f"max_iter ({max_iter})")
  if augment not in AUGMENT_MODES:
    raise ConfigError(f"solver {name!r}: augment {augment!r} is not one of {AUGMENT_MODES}")
  per_256 = 256.0 / global_batch  # plan LRs are per 256 images; compile_plan scales them back
  return dict(name=name, epochs=None, lr_shape="caffe", lr_start=None, lr_end=0.0, lr_power=float(power),
              weight_decay=float(weight_decay), augment=augment, snapshot=bool(snapshot), lr_decay_epochs=[],
              lr_gamma=0.1, lr_horizon_epochs=None, reset_momentum=start_iter == 0,
              iterations=int(stop_iter - start_iter),
              iteration_batch=int(global_batch), branch=bool(branch),
              caffe=dict(policy=lr_policy, base_lr=base_lr * per_256, warmup_start_lr=warmup_start_lr * per_256,
                         power=float(power), warmup_iter=int(warmup_iter), max_iter=int(max_iter),
                         lr_iter=None if lr_iter is None else int(lr_iter), start_iter=int(start_iter)))


def collapse_cycles(*, peak_lr: float, warmup_start_lr: float = 0.0, warmup_epochs: float, decay_epochs: float,
                    decay_horizon_epochs: Optional[float] = None, cycles: int, cycle_epochs: float,
                    cycle_horizon_epochs: Optional[float] = None, rewarmup_epochs: float,
                    rewarmup_fraction: float, final_collapse_epochs: float, weight_decay: float,
                    collapse_weight_decay: float, decay_power: float = 1.0, cycle_power: float = 2.0,
                    branch_collapse_epochs: Optional[float] = None) -> List[dict]:
  """The re-warmup/collapse recipe in epochs (LRs per 256 images):

    warmup → poly-`decay_power` decay → cycle 1 (poly-`cycle_power`, snapshot)
    → (re-warmup → cycle k, snapshot) for k = 2…cycles → final collapse (augmentation off, weight decay
    raised, poly-2 to 0, snapshot).

  Each re-warmup climbs from where the previous cycle stopped to `rewarmup_fraction` × that cycle's
  starting LR; each cycle decays over its horizon (2 × its length in the seed: it stops at a quarter of
  its start) and the final collapse starts where the last cycle stopped.
  `branch_collapse_epochs`: the Collapsed Ensemble — a collapse `collapse<k>` of that length (the final
  collapse's settings, from where cycle k stopped) branches off the end of every cycle but the last, and the
  main line re-warms from the weights before it. None: no branches, the cycles' ends are the other snapshots.
  """
  if cycles < 1:
    raise ConfigError(f"cycles must be >= 1, got {cycles}")

  def collapse(name, epochs, branch):
    return phase(name, epochs, "poly", lr_end=0.0, lr_power=2.0, weight_decay=collapse_weight_decay,
                 augment="collapse", snapshot=True, branch=branch)

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
    if branch_collapse_epochs and k < cycles:
      plan.append(collapse(f"collapse{k}", branch_collapse_epochs, branch=True))
  plan.append(collapse("collapse", final_collapse_epochs, branch=False))
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


def caffe_lr(i, solver: dict, scale: float):
  """Caffe's SGDSolver LR (caffe_solver's docstring) at iterations i (float: other batches land between
  iterations), × scale."""
  i = np.asarray(i, np.float64)
  base = solver["base_lr"] * scale
  if solver["policy"] == "fixed":
    rate = np.full(i.shape, base)
  else:
    horizon = solver["lr_iter"] if solver["policy"] == "poly_cyc" else solver["max_iter"]
    rate = base * (1.0 - i / horizon) ** solver["power"]
  warmup = solver["warmup_iter"]
  if warmup > 0:
    start = solver["warmup_start_lr"] * scale
    rate = np.where(i < warmup, (i * base + (warmup - i) * start) / warmup, rate)
  return rate


def step_lr(t, steps_per_epoch, start, decay_epochs, gamma):
  """start·gamma^k after the k-th of decay_epochs (epochs counted from the phase start)."""
  t = np.asarray(t, np.float64)
  k = sum((t >= round(e * steps_per_epoch)).astype(np.int64) for e in decay_epochs) if decay_epochs else 0
  return start * gamma ** k


@dataclasses.dataclass(frozen=True)
class CompiledPlan:
  """The plan as per-step tables; step s trains with lr[s], weight_decay[s], collapse[s], and starts from a
  zero velocity where momentum_reset[s]."""
  phases: List[dict]
  boundaries: np.ndarray        # boundaries[i] = first step of phase i; boundaries[-1] = total steps
  lr: np.ndarray                # float64, already scaled to the global batch
  weight_decay: np.ndarray      # float64
  collapse: np.ndarray          # bool: scale/aspect augmentation off
  momentum_reset: np.ndarray    # bool: the velocity is zeroed before this step's update
  branch: np.ndarray            # bool: the step trains a branch off the main line
  steps_per_epoch: int
  global_batch: int

  @property
  def total_steps(self) -> int:
    return int(self.boundaries[-1])

  def phase_at(self, step: int) -> int:
    """Index of the phase that trains step `step` (the last one for steps past the end)."""
    return int(min(np.searchsorted(self.boundaries, step, side="right") - 1, len(self.phases) - 1))

  def snapshot_steps(self) -> List[tuple]:
    """[(phase name, step after its last update)] of every phase that ends in a snapshot."""
    return [(p["name"], int(self.boundaries[i + 1])) for i, p in enumerate(self.phases) if p["snapshot"]]

  def branches(self) -> List[tuple]:
    """[(first step, step after the last, names of its phases)] of every branch: the main line's state is
    kept before `first` and put back after the last step's update."""
    found = []
    for i, p in enumerate(self.phases):
      if not p["branch"]:
        continue
      if i and self.phases[i - 1]["branch"]:
        first, _, names = found[-1]
        found[-1] = (first, int(self.boundaries[i + 1]), names + [p["name"]])
      else:
        found.append((int(self.boundaries[i]), int(self.boundaries[i + 1]), [p["name"]]))
    return found

  def budget(self) -> dict:
    """Steps, epochs and images of the main line, of the branches and of both (the run's whole cost)."""
    def cost(steps):
      return {"steps": int(steps), "epochs": steps / self.steps_per_epoch, "images": int(steps) * self.global_batch}
    branch_steps = int(self.branch.sum())
    return {"main_line": cost(self.total_steps - branch_steps), "branches": cost(branch_steps),
            "total": cost(self.total_steps), "steps_per_epoch": self.steps_per_epoch,
            "global_batch": self.global_batch}


def phase_ends(phases: Sequence[dict], steps_per_epoch: int, global_batch: int) -> np.ndarray:
  """The step after each phase's last. Epoch phases end where their cumulative epochs do (so fractional
  phases never drift by rounding); a Caffe solver keeps its images: iterations × its batch / global_batch."""
  ends, epochs, end = [], 0.0, 0
  for p in phases:
    if p["lr_shape"] == "caffe":
      end += round(p["iterations"] * p["iteration_batch"] / global_batch)
      epochs = end / steps_per_epoch
    else:
      epochs += p["epochs"]
      end = round(epochs * steps_per_epoch)
    ends.append(end)
  return np.asarray(ends, np.int64)


def _phase_lr(p, n, start, scale, steps_per_epoch, global_batch):
  """(LR at each of the phase's n steps, LR where the curve is when the phase stops)."""
  t = np.arange(n)
  end = p["lr_end"] * scale
  shape = p["lr_shape"]
  if shape == "caffe":
    iteration = global_batch / p["iteration_batch"]  # Caffe iterations per step
    first = p["caffe"]["start_iter"]
    return (caffe_lr(first + t * iteration, p["caffe"], scale),
            float(caffe_lr(first + n * iteration, p["caffe"], scale)))
  if shape == "warmup":
    return warmup_lr(t, n, start, end, p["lr_power"]), end
  if shape == "poly":
    horizon = n if p["lr_horizon_epochs"] is None else round(p["lr_horizon_epochs"] * steps_per_epoch)
    return poly_lr(t, horizon, start, end, p["lr_power"]), float(poly_lr(n, horizon, start, end, p["lr_power"]))
  if shape == "cosine":
    return cosine_lr(t, n, start, end), end
  if shape == "step":
    values = step_lr(t, steps_per_epoch, start, p["lr_decay_epochs"], p["lr_gamma"])
    return values, float(values[-1])
  return np.full(n, start), start  # constant


def compile_plan(phases: Sequence[dict], steps_per_epoch: int, global_batch: int,
                 lr_scale: float = 1.0) -> CompiledPlan:
  """Step tables for LR (scaled by global_batch/256 and lr_scale), weight decay, augmentation mode and
  momentum resets.

  lr_scale multiplies every learning rate of the plan: one knob for LR sweeps of a whole recipe."""
  if not phases:
    raise ConfigError("the plan has no phases")
  if steps_per_epoch < 1:
    raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
  scale = global_batch / 256.0 * lr_scale
  boundaries = np.concatenate([[0], phase_ends(phases, steps_per_epoch, global_batch)])
  phases = [_with_later_fields(p) for p in phases]
  _check_branches(phases)
  lr, wd, collapse, reset, branch = [], [], [], [], []
  previous_end = main_line_end = None  # where the LR curve stopped: the last phase's, the main line's
  for i, p in enumerate(phases):
    n = int(boundaries[i + 1] - boundaries[i])
    if n <= 0:
      raise ConfigError(f"phase {p['name']!r} is 0 steps long at {steps_per_epoch} steps/epoch, global batch "
                       f"{global_batch}")
    if not p["branch"] or not phases[i - 1]["branch"]:
      previous_end = main_line_end  # a branch starts where the main line is; the main line resumes where it was
    start = previous_end if p["lr_start"] is None else p["lr_start"] * scale
    if start is None:
      if p["lr_shape"] not in ("warmup", "caffe"):
        raise ConfigError(f"phase {p['name']!r} is first: give it an lr_start")
      start = 0.0
    values, previous_end = _phase_lr(p, n, start, scale, steps_per_epoch, global_batch)
    if not p["branch"]:
      main_line_end = previous_end
    lr.append(values)
    wd.append(np.full(n, p["weight_decay"]))
    collapse.append(np.full(n, p["augment"] == "collapse"))
    reset.append(np.arange(n) == 0 if p["reset_momentum"] else np.zeros(n, bool))
    branch.append(np.full(n, p["branch"]))
  return CompiledPlan(list(phases), boundaries, np.concatenate(lr), np.concatenate(wd),
                      np.concatenate(collapse), np.concatenate(reset), np.concatenate(branch), steps_per_epoch,
                      global_batch)


def _with_later_fields(p: dict) -> dict:
  """A phase of a plan saved before `branch` and Caffe's `start_iter` existed, with their defaults."""
  p = {"branch": False, **dict(p)}
  if p["lr_shape"] == "caffe":
    p["caffe"] = {"start_iter": 0, **p["caffe"]}
  return p


def _check_branches(phases: Sequence[dict]):
  """A branch leaves a main line that exists (not the first phase), ends in a snapshot (else it would
  train for nothing) and hands back to a main line that goes on (not the last phase)."""
  for i, p in enumerate(phases):
    if not p["branch"]:
      continue
    if i == 0:
      raise ConfigError(f"phase {p['name']!r}: the first phase cannot be a branch (there is no main line to leave)")
    if i + 1 == len(phases):
      raise ConfigError(f"phase {p['name']!r}: the last phase cannot be a branch (the run would end on the state "
                       "the main line had before it)")
    last = not phases[i + 1]["branch"]
    if last and not p["snapshot"]:
      raise ConfigError(f"phase {p['name']!r}: a branch must end in a snapshot (its last phase needs snapshot=True)")


def compile_for(config, train_images: int, global_batch: int) -> CompiledPlan:
  """A config's plan at a global batch: an epoch is train_images // global_batch steps, LRs × optim.lr_scale."""
  return compile_plan(list(config.plan), train_images // global_batch, global_batch,
                      config.optim.lr_scale)


def plan_table(plan: CompiledPlan) -> str:
  """The plan as a fixed-width table for the start-up log."""
  rows = [("phase", "epochs", "steps", "lr shape", "lr first→last", "wd", "augment", "momentum", "snapshot",
           "line")]
  for i, p in enumerate(plan.phases):
    a, b = int(plan.boundaries[i]), int(plan.boundaries[i + 1])
    if p["lr_shape"] == "caffe":
      solver = p["caffe"]
      warmup = solver["warmup_iter"] > solver["start_iter"]  # a solver resumed past its warmup has none left
      shape = f"caffe {solver['policy']}^{solver['power']:g}" + (" +warmup" if warmup else "")
    else:
      shape = p["lr_shape"] + (f"^{p['lr_power']:g}" if p["lr_shape"] in ("poly", "warmup") else "")
    rows.append((p["name"], f"{(b - a) / plan.steps_per_epoch:.4g}", f"{a}-{b - 1}", shape,
                 f"{plan.lr[a]:.4g}→{plan.lr[b - 1]:.4g}", f"{p['weight_decay']:.2g}", p["augment"],
                 "reset" if plan.momentum_reset[a] else "", "yes" if p["snapshot"] else "",
                 "branch" if p["branch"] else "main"))
  widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
  table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)
  return table + "\nbudget: " + budget_line(plan.budget())


def budget_line(budget: dict) -> str:
  """'main line E epochs + branches E epochs = E epochs (S steps, I images at global batch B)'."""
  main, branches, total = budget["main_line"], budget["branches"], budget["total"]
  return (f"main line {main['epochs']:.4g} epochs + branches {branches['epochs']:.4g} epochs = "
          f"{total['epochs']:.4g} epochs ({total['steps']:,} steps, {total['images']:,} images at global batch "
          f"{budget['global_batch']:,})")

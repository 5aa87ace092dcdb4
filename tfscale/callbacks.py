"""The training loop's two callbacks; `trainer.create_callbacks` builds them.

`StepEnd` is the only one that acts after an update: everything between two steps — validation,
snapshots, the branches' main line, checkpoints, the agreed stop, the epoch's figures — happens there, on
every rank, in one order written once (its docstring, `on_train_batch_end` and `on_epoch_end`), decided by
the step count alone, so every rank reaches every collective at the same step. Rank-0-only work (log lines,
TensorBoard, files) comes after the collectives it depends on, never between them. `RenormRamp` sets batch
renormalization's limits before a step. Keras appends its History last, so the recorded history is the
cross-rank one on every rank.
"""
import tensorflow as tf
import tf_keras
from absl import logging

from tfscale import distributed, epoch_report, run_control, workdir as workdir_files


def _step(model) -> int:
  return int(model.optimizer.iterations.numpy())


class Validation:
  """Validation at most once per step: BN moving statistics averaged over ranks (one grouped allreduce),
  then every rank counts its share of the split and one allreduce sums the counts."""

  def __init__(self, validate):
    self.validate = validate
    self.step, self.accuracy = None, None

  def forget(self):
    """A new step is being trained (or, after an elastic rollback, the same step again)."""
    self.step, self.accuracy = None, None

  def at(self, model, step: int) -> dict:
    if self.step != step:
      distributed.average_variables(model.non_trainable_variables)
      self.step, self.accuracy = step, self.validate()
    return self.accuracy

  def taken_at(self, step: int):
    return self.accuracy if self.step == step else None


class Snapshots:
  """At the end of every snapshot phase (each collapse): validation, then rank 0 writes the snapshot and the
  index. `entries` is snapshots.json's list (rank 0's, broadcast at start-up)."""

  def __init__(self, plan, workdir: str, config, entries: list):
    self.due = {step: name for name, step in plan.snapshot_steps()}
    self.steps_per_epoch = plan.steps_per_epoch
    self.workdir, self.config, self.entries = workdir, config, entries

  def take_if_due(self, model, step: int, validation: Validation):
    if step not in self.due or any(s["step"] == step for s in self.entries):
      return
    accuracy = validation.at(model, step)
    entry = workdir_files.snapshot_entry(self.due[step], step, step / self.steps_per_epoch, accuracy)
    self.entries.append(entry)
    if distributed.is_chief():
      workdir_files.save_snapshot(self.workdir, model, entry, self.entries, self.config)
      logging.info("snapshot %s: validation top-1 %.4f top-5 %.4f", entry["name"], accuracy["top1"],
                   accuracy["top5"])


class MainLine:
  """The plan's branches off the main line (the Collapsed Ensemble: member k is the collapse of cycle k's
  end, and cycle k+1 goes on from cycle k's end as if the collapse had not happened).

  When a branch's first step is next — after the previous step's update, or at the start of `fit` on a
  resume at that step — every rank averages its BN statistics, and rank 0 writes model and optimizer
  (weights, BN statistics, velocities) to the workdir's main_line/. After the branch's last update (and its
  snapshot) rank 0 reads that state back and broadcasts it, and every rank sets the step counter to the
  step it is at (one step axis, with the main line's state); StepEnd then checkpoints that step, so a resume
  never needs a kept state that the next branch has overwritten. A run stopped or killed inside the branch
  resumes from its checkpoint and the file (checked by every rank when `fit` starts, so a missing one is one
  error before any step, not a hang at the branch's end); one stopped after it resumes from a checkpoint
  that already holds the main line.
  """

  def __init__(self, plan, workdir: str):
    self.branches = plan.branches()
    self.starts = {first: "+".join(names) for first, _, names in self.branches}
    self.ends = {end: first for first, end, _ in self.branches}
    self.workdir = workdir
    self.checkpoint, self.kept_at = None, None

  def begin(self, model):
    # The objects a checkpoint holds (Horovod's optimizer wrapper is the one that was built and restored).
    self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    self._check_kept_state(_step(model))
    self.keep_if_due(model, _step(model))

  def _check_kept_state(self, step: int):
    """Inside a branch (a resume), rank 0 checks that the state to hand back is there; every rank learns
    the answer, so all stop together."""
    first = next((first for first, end, _ in self.branches if first < step < end), None)
    if first is None:
      return
    problem = None
    if distributed.is_chief():
      try:
        workdir_files.main_line_state(self.workdir, first)
      except workdir_files.WorkdirError as e:
        problem = str(e)
    problem = distributed.broadcast_object(problem)
    if problem:
      raise workdir_files.WorkdirError(problem)

  def handed_back_at(self, step: int) -> bool:
    """The model at `step` is the main line handed back: a branch ended there."""
    return step in self.ends

  def keep_if_due(self, model, step: int):
    if step in self.starts and self.kept_at != step:
      distributed.average_variables(model.non_trainable_variables)
      if distributed.is_chief():
        workdir_files.keep_main_line(self.workdir, self.checkpoint, step, self.starts[step])
        logging.info("branch %s starts at step %d; the main line's state is kept in %s", self.starts[step], step,
                     workdir_files.path(self.workdir, workdir_files.MAIN_LINE))
      self.kept_at = step

  def hand_back_if_due(self, model, step: int) -> bool:
    """At a branch's end: the kept state on every rank, at this step. True when it happened."""
    if step not in self.ends:
      return False
    if distributed.is_chief():
      self.checkpoint.read(workdir_files.main_line_state(self.workdir, self.ends[step])
                           ).assert_existing_objects_matched()
    distributed.broadcast_initial_state(model, model.optimizer)
    model.optimizer.iterations.assign(step)
    if distributed.is_chief():
      logging.info("branch ended at step %d; the main line goes on from its state at step %d", step, self.ends[step])
    return True


class Checkpoints:
  """Rank 0 checkpoints model and optimizer (CheckpointManager writes the files before the index that names
  them, and keeps the last K); a step is written once however many reasons it has."""

  def __init__(self, manager, every_epochs: int, every_steps: int):
    self.manager, self.every_epochs, self.every_steps = manager, every_epochs, every_steps
    self.saved_at = None

  def save(self, step: int):
    if self.saved_at != step and distributed.is_chief():
      self.manager.save(checkpoint_number=step)
    self.saved_at = step

  def due_after_step(self, step: int) -> bool:
    return self.every_steps > 0 and step % self.every_steps == 0

  def due_after_epoch(self, epoch: int) -> bool:
    return self.every_steps <= 0 and self.every_epochs > 0 and (epoch + 1) % self.every_epochs == 0


class AgreedStop:
  """Every `every_steps`, all ranks agree in one allreduce of one number whether any of them was asked to
  stop (run_control: signals, a vanished launcher); the largest code wins, so every rank has one reason."""

  def __init__(self, every_steps: int):
    self.every_steps = max(1, every_steps)
    self.stopped = None  # run_control.Stopped, once agreed

  def requested_at(self, step: int) -> bool:
    if step % self.every_steps:
      return False
    code = int(distributed.allreduce_max(run_control.requested()))
    if code:
      self.stopped = run_control.Stopped(step, run_control.REASONS[code])
    return bool(code)


class StepEnd(tf_keras.callbacks.Callback):
  """Everything between two updates, on every rank, in this order:

  after every update
    1. the step's seconds (nothing below is inside them) and rank 0's progress bar;
    2. the snapshot, when a snapshot phase ends here: validation, then rank 0 writes it;
    3. the main line: at a branch's end it is handed back and that step checkpointed; before a branch's
       first step it is kept;
    4. a checkpoint every `train.checkpoint_every_steps`;
    5. the agreed stop (one allreduce): rank 0 checkpoints the step and every rank leaves `fit`;
    6. the plan's last step: every rank leaves `fit`;
  after an epoch's last update, unless stopped in 5
    7. validation every `train.validate_every_epochs` and at the plan's end — the step's own when 2 took
       one, so no step is validated twice (at a branch's end that is the branch's, whose epoch it is);
    8. one allreduce of the epoch's metrics and times, one allgather of each rank's images/s;
    9. rank 0: the log line, TensorBoard, metrics.jsonl, the MLPerf events, training.png;
   10. a checkpoint every `train.checkpoint_every_epochs`, and at the plan's end.
  """

  def __init__(self, plan, config, workdir: str, manager, validate, snapshots: list, run_log, progress: bool):
    super().__init__()
    self.plan = plan
    self.validate_every_epochs = config.train.validate_every_epochs
    self.validation = Validation(validate)
    self.snapshots = Snapshots(plan, workdir, config, snapshots)
    self.main_line = MainLine(plan, workdir)
    self.checkpoints = Checkpoints(manager, config.train.checkpoint_every_epochs, config.train.checkpoint_every_steps)
    self.stop = AgreedStop(config.train.stop_check_every_steps)
    self.report = epoch_report.EpochReport(plan, config.train.batch_per_rank, workdir,
                                           config.train.validate_every_epochs, run_log, progress)

  @property
  def stopped(self):
    return self.stop.stopped

  def on_train_begin(self, logs=None):
    self.main_line.begin(self.model)

  def on_epoch_begin(self, epoch, logs=None):
    self.report.begin_epoch(epoch, _step(self.model))

  def on_train_batch_begin(self, batch, logs=None):
    self.validation.forget()
    self.report.begin_step()

  def on_train_batch_end(self, batch, logs=None):
    step = _step(self.model)
    self.report.end_step(batch, logs)
    self.snapshots.take_if_due(self.model, step, self.validation)
    if self.main_line.hand_back_if_due(self.model, step):
      self.checkpoints.save(step)
    self.main_line.keep_if_due(self.model, step)
    if self.checkpoints.due_after_step(step):
      self.checkpoints.save(step)
    if self.stop.requested_at(step):
      self.checkpoints.save(step)
      self.model.stop_training = True
    if step >= self.plan.total_steps:
      self.model.stop_training = True

  def on_epoch_end(self, epoch, logs=None):
    if self.stop.stopped:  # agreed by every rank at the same step: no epoch figures
      return
    step = _step(self.model)
    last = step >= self.plan.total_steps
    if self.main_line.handed_back_at(step):
      accuracy = self.validation.taken_at(step)  # the model is already the main line handed back
    elif last or (self.validate_every_epochs > 0 and (epoch + 1) % self.validate_every_epochs == 0):
      accuracy = self.validation.at(self.model, step)
    else:
      accuracy = None
    rank_rates = self.report.reduce(step, logs, accuracy)
    if distributed.is_chief():
      self.report.report(epoch, step, logs, rank_rates)
    if last or self.checkpoints.due_after_epoch(epoch):
      self.checkpoints.save(step)


class RenormRamp(tf_keras.callbacks.Callback):
  """Opens batch renormalization's clipping linearly between two steps: r_max 1 → rmax, d_max 0 → dmax
  (Ioffe 2017 starts with plain batch norm and relaxes the limits once moving averages are reliable)."""

  def __init__(self, rmax_variable, rmin_variable, dmax_variable, rmax: float, dmax: float, start_step: int,
               end_step: int):
    super().__init__()
    self.rmax_variable, self.rmin_variable, self.dmax_variable = rmax_variable, rmin_variable, dmax_variable
    self.rmax, self.dmax, self.start, self.end = rmax, dmax, start_step, max(end_step, start_step + 1)

  def on_train_batch_begin(self, batch, logs=None):
    t = min(max((_step(self.model) - self.start) / (self.end - self.start), 0.0), 1.0)
    rmax = 1.0 + (self.rmax - 1.0) * t
    self.rmax_variable.assign(rmax)
    self.rmin_variable.assign(1.0 / rmax)
    self.dmax_variable.assign(self.dmax * t)

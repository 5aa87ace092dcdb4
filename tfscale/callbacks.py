"""Keras callbacks of the training loop. `trainer.create_callbacks` declares their order, once.

Every cross-rank step happens in a place every rank reaches at the same step: the end of an epoch
(`EpochEnd.reduce`) and the end of a snapshot phase (`SnapshotAtPhaseEnd`), both decided by the step
count alone. Rank-0-only work (log lines, TensorBoard, files) comes after the collectives, never between
them. Keras appends its History last, so the recorded history is the cross-rank one on every rank.
"""
import time

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from tfscale import distributed, plots, run_control, workdir as workdir_files


def _step(model) -> int:
  return int(model.optimizer.iterations.numpy())


class StopAtStep(tf_keras.callbacks.Callback):
  """Ends training after the plan's last step, which need not fall on an epoch boundary."""

  def __init__(self, total_steps: int):
    super().__init__()
    self.total_steps = total_steps

  def on_train_batch_end(self, batch, logs=None):
    if _step(self.model) >= self.total_steps:
      self.model.stop_training = True


class SnapshotAtPhaseEnd(tf_keras.callbacks.Callback):
  """At the end of every snapshot phase (each collapse): global BN statistics and validation on every
  rank, then rank 0 writes the snapshot and the index."""

  def __init__(self, plan, workdir, config, validate, snapshots: list):
    super().__init__()
    self.due = {step: name for name, step in plan.snapshot_steps()}
    self.steps_per_epoch = plan.steps_per_epoch
    self.workdir, self.config, self.validate, self.snapshots = workdir, config, validate, snapshots

  def on_train_batch_end(self, batch, logs=None):
    step = _step(self.model)
    if step not in self.due or any(s["step"] == step for s in self.snapshots):
      return
    distributed.average_variables(self.model.non_trainable_variables)
    accuracy = self.validate()
    entry = workdir_files.snapshot_entry(self.due[step], step, step / self.steps_per_epoch, accuracy)
    self.snapshots.append(entry)
    if distributed.is_chief():
      workdir_files.save_snapshot(self.workdir, self.model, entry, self.snapshots, self.config)
      logging.info("snapshot %s: validation top-1 %.4f top-5 %.4f", entry["name"], accuracy["top1"],
                   accuracy["top5"])


class BranchOffMainLine(tf_keras.callbacks.Callback):
  """Trains the plan's branches off the main line (the Collapsed Ensemble: member k is the collapse of
  cycle k's end, and cycle k+1 goes on from cycle k's end as if the collapse had not happened).

  When a branch's first step is next — after the previous step's update (outside EpochEnd's step clock),
  or at the start of `fit` on a resume at that step — every rank averages its BN statistics, and rank 0
  writes model and optimizer (weights, BN statistics, velocities) to the workdir's main_line/. After the
  branch's last update — after SnapshotAtPhaseEnd has written the branch's snapshot — rank 0 reads that
  state back and broadcasts it, every rank sets the step counter to the step it is at (one step axis,
  with the main line's state), and rank 0 checkpoints that step: a resume can then never need a kept
  state that the next branch has overwritten. A run stopped or killed inside the branch resumes from its
  checkpoint and the file (checked by every rank when `fit` starts, so a missing one is one error before
  any step, not a hang at the branch's end); one stopped after it resumes from a checkpoint that already
  holds the main line.
  """

  def __init__(self, plan, workdir: str, manager):
    super().__init__()
    self.branches = plan.branches()
    self.starts = {first: "+".join(names) for first, _, names in self.branches}
    self.ends = {end: first for first, end, _ in self.branches}
    self.workdir, self.manager = workdir, manager
    self.checkpoint, self.kept_at = None, None

  def _keep_if_due(self):
    step = _step(self.model)
    if step in self.starts and self.kept_at != step:
      distributed.average_variables(self.model.non_trainable_variables)
      if distributed.is_chief():
        workdir_files.keep_main_line(self.workdir, self.checkpoint, step, self.starts[step])
        logging.info("branch %s starts at step %d; the main line's state is kept in %s", self.starts[step], step,
                     workdir_files.path(self.workdir, workdir_files.MAIN_LINE))
      self.kept_at = step

  def _check_kept_state(self):
    """Inside a branch (a resume), rank 0 checks that the state to hand back is there; every rank learns
    the answer, so all stop together."""
    step = _step(self.model)
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

  def on_train_begin(self, logs=None):
    # The objects a checkpoint holds (Horovod's optimizer wrapper is the one that was built and restored).
    self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer)
    self._check_kept_state()
    self._keep_if_due()

  def on_train_batch_end(self, batch, logs=None):
    step = _step(self.model)
    if step in self.ends:
      if distributed.is_chief():
        self.checkpoint.read(workdir_files.main_line_state(self.workdir, self.ends[step])
                             ).assert_existing_objects_matched()
      distributed.broadcast_initial_state(self.model, self.model.optimizer)
      self.model.optimizer.iterations.assign(step)
      if distributed.is_chief():
        self.manager.save(checkpoint_number=step)
        logging.info("branch ended at step %d; the main line goes on from its state at step %d", step,
                     self.ends[step])
    self._keep_if_due()


class EpochEnd(tf_keras.callbacks.Callback):
  """Times the steps, and ends every epoch in one sequence.

  First in the callback list, so its clock brackets the training step alone (snapshots and checkpoints
  taken in later callbacks' batch ends are outside it). At the end of an epoch, on every rank:
  `reduce` — validation when due (BN statistics averaged first), one allreduce of the epoch's metrics and
  times, one allgather of each rank's images/s; then rank 0 alone: `report` — the log line, TensorBoard,
  metrics.jsonl and training.png.

  images/s is steady state: the first step of each epoch (the trace of a `fit` call, the iterator's
  warm-up after validation) is left out of both the images and the seconds.
  """

  def __init__(self, plan, batch_per_rank: int, workdir: str, validate, validate_every_epochs: int, stop=None,
               run_log=None):
    super().__init__()
    self.run_log = run_log  # mlperf_log.RunLog (rank 0 writes, other ranks' is disabled)
    self.stop = stop  # run_control.StopAtRequest: an agreed stop ends the epoch early, with no epoch figures
    self.plan, self.batch_per_rank, self.workdir = plan, batch_per_rank, workdir
    self.branch_ends = {end for _, end, _ in plan.branches()}
    self.validate, self.validate_every_epochs = validate, validate_every_epochs
    self.writer = None  # created by whichever process is rank 0 (after an elastic reset it may change)
    self.last_plot = -float("inf")
    self.run_start = time.time()

  def on_epoch_begin(self, epoch, logs=None):
    self.start_step, self.epoch_start = _step(self.model), time.perf_counter()
    self.step_seconds = []
    if self.run_log:
      every = max(self.validate_every_epochs, 1)
      if epoch % every == 0 or not hasattr(self, "block_start"):
        self.block_start = epoch + 1
        self.run_log.start("block_start", first_epoch_num=epoch + 1, epoch_count=every)
      self.run_log.start("epoch_start", epoch_num=epoch + 1)

  def on_train_batch_begin(self, batch, logs=None):
    self.batch_start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.last_step_seconds = time.perf_counter() - self.batch_start
    self.step_seconds.append(self.last_step_seconds)

  def on_epoch_end(self, epoch, logs=None):
    if self.stop is not None and self.stop.stopped:  # agreed by every rank at the same step
      return
    rank_rates = self.reduce(epoch, logs)
    if distributed.is_chief():
      self.report(epoch, logs, rank_rates)

  def reduce(self, epoch, logs) -> np.ndarray:
    """Every cross-rank step of the epoch's end, on every rank; adds the global figures to `logs` and returns
    every rank's images/s."""
    step = _step(self.model)
    last = step >= self.plan.total_steps
    # At a branch's end the model is the main line handed back (validated at the snapshot just before as
    # the branch): validating it would report the main line's accuracy in the branch's epoch row.
    if last or (self.validate_every_epochs > 0 and (epoch + 1) % self.validate_every_epochs == 0
                and step not in self.branch_ends):
      distributed.average_variables(self.model.non_trainable_variables)
      accuracy = self.validate()
      logs["val_top1"], logs["val_top5"] = accuracy["top1"], accuracy["top5"]
    steady = self.step_seconds[1:] or self.step_seconds
    own_rate = len(steady) * self.batch_per_rank / max(sum(steady), 1e-9)
    keys = sorted(k for k, v in logs.items() if (np.isscalar(v) or np.ndim(v) == 0) and not k.startswith("val_"))
    local = [float(logs[k]) for k in keys] + [sum(self.step_seconds), time.perf_counter() - self.epoch_start,
                                              len(steady), sum(steady)]
    means = distributed.allreduce_mean(local)
    logs.update({k: float(m) for k, m in zip(keys, means)})
    logs["train_seconds"], logs["epoch_seconds"] = float(means[-4]), float(means[-3])
    # Global steady-state rate: every rank's images over the ranks' mean time.
    logs["images_per_second"] = float(means[-2] * self.batch_per_rank * distributed.size() / max(means[-1], 1e-9))
    last_step = min(step, self.plan.total_steps) - 1
    logs["lr"] = float(self.plan.lr[last_step])
    logs["weight_decay"] = float(self.plan.weight_decay[last_step])
    return distributed.allgather_floats(own_rate)

  def report(self, epoch, logs, rank_rates):
    """Rank 0: one log line (with elapsed time and ETA to the end of the plan), TensorBoard, metrics.jsonl,
    and training.png at most once a minute (drawing stalls the other ranks at the next collective)."""
    step = _step(self.model)
    phase = self.plan.phases[self.plan.phase_at(min(step, self.plan.total_steps) - 1)]["name"]
    elapsed = time.time() - self.run_start
    seconds_per_step = logs["epoch_seconds"] / max(step - self.start_step, 1)
    eta = max(self.plan.total_steps - step, 0) * seconds_per_step
    shown = " ".join(f"{k} {logs[k]:.4g}" for k in ("loss", "top1", "top5", "val_top1", "val_top5") if k in logs)
    logging.info("epoch %d/%d [%s] step %d  %s  lr %.4g wd %.2g  %s images/s  elapsed %s eta %s", epoch + 1,
                 -(-self.plan.total_steps // self.plan.steps_per_epoch), phase, step, shown, logs["lr"],
                 logs["weight_decay"], _rate(logs["images_per_second"]), _clock(elapsed), _clock(eta))
    if self.writer is None:
      self.writer = tf.summary.create_file_writer(workdir_files.path(self.workdir, workdir_files.TENSORBOARD))
    with self.writer.as_default(step=step):
      for key, value in logs.items():
        tf.summary.scalar(key, value)
      for rank, rate in enumerate(rank_rates):
        tf.summary.scalar(f"images_per_second_rank/{rank}", rate)
    self.writer.flush()
    workdir_files.append_metrics(self.workdir, {
        "epoch": epoch + 1, "step": step, "phase": phase, "time": time.time(), "ranks": distributed.size(),
        **{k: float(v) for k, v in logs.items()}})
    if self.run_log:
      self.run_log.end("epoch_stop", epoch_num=epoch + 1)
      if "val_top1" in logs:
        self.run_log.event("eval_accuracy", logs["val_top1"], epoch_num=epoch + 1)
        self.run_log.end("block_stop", first_epoch_num=self.block_start)
    if step >= self.plan.total_steps or time.perf_counter() - self.last_plot >= 60:
      plots.plot_training(workdir_files.read_metrics(self.workdir), self.plan,
                          workdir_files.path(self.workdir, workdir_files.TRAINING_PLOT))
      self.last_plot = time.perf_counter()


def _rate(images_per_second: float) -> str:
  """At least three significant digits (a CPU rank's 11.3 images/s would read 11 as a whole number)."""
  return f"{images_per_second:.3g}" if images_per_second < 100 else f"{images_per_second:.0f}"


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressBar(tf_keras.callbacks.Callback):
  """Rank 0's progress bar over each epoch's steps, with loss and the global images/s of the last step
  (only on a terminal: in batch-job logs the epoch lines say the same once per epoch)."""

  def __init__(self, timer: EpochEnd, batch_per_rank: int, steps_per_epoch: int):
    super().__init__()
    self.timer, self.batch_per_rank, self.steps_per_epoch = timer, batch_per_rank, steps_per_epoch

  def on_epoch_begin(self, epoch, logs=None):
    self.bar = tf_keras.utils.Progbar(self.steps_per_epoch, stateful_metrics=["loss", "images/s"], unit_name="step")

  def on_train_batch_end(self, batch, logs=None):
    rate = self.batch_per_rank * distributed.size() / max(self.timer.last_step_seconds, 1e-9)  # elastic: size varies
    self.bar.update(batch + 1, [("loss", float(logs.get("loss", np.nan))), ("images/s", rate)])


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


class PeriodicCheckpoint(tf_keras.callbacks.Callback):
  """Rank 0 checkpoints model and optimizer every N steps, or else every N epochs (CheckpointManager
  writes the files before the index that names them, and keeps the last K)."""

  def __init__(self, manager, every_epochs: int, every_steps: int = 0):
    super().__init__()
    self.manager, self.every_epochs, self.every_steps = manager, every_epochs, every_steps

  def _save(self):
    if distributed.is_chief():
      self.manager.save(checkpoint_number=_step(self.model))

  def on_train_batch_end(self, batch, logs=None):
    if self.every_steps > 0 and _step(self.model) % self.every_steps == 0:
      self._save()

  def on_epoch_end(self, epoch, logs=None):
    if self.every_steps <= 0 and self.every_epochs > 0 and (epoch + 1) % self.every_epochs == 0:
      self._save()


class StopAtRequest(tf_keras.callbacks.Callback):
  """At every step boundary (every `every_steps`), all ranks agree in one allreduce of one number whether
  any of them was asked to stop (run_control: signals, a vanished launcher); on a stop, rank 0
  checkpoints that step and every rank leaves `fit` with `stopped` set."""

  def __init__(self, manager, every_steps: int = 1):
    super().__init__()
    self.manager, self.every_steps = manager, max(1, every_steps)
    self.stopped = None  # run_control.Stopped, once agreed

  def on_train_batch_end(self, batch, logs=None):
    step = _step(self.model)
    if step % self.every_steps:
      return
    code = int(distributed.allreduce_max(run_control.requested()))  # the largest code: every rank one reason
    if code:
      if distributed.is_chief():
        self.manager.save(checkpoint_number=step)
      self.stopped = run_control.Stopped(step, run_control.REASONS[code])
      self.model.stop_training = True

"""Keras callbacks of the training loop: stop, snapshot, average metrics, validate, log, checkpoint.

Order matters and is the trainer's: metrics are averaged over ranks before anything reads them, and
Keras appends its History last, so the recorded history is the averaged one on every rank.
Horovod's own MetricAverageCallback does not work with tf_keras 2.18; `MetricAverage` replaces it.
"""
import json
import os
import time

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from tfscale import distributed, plots

SNAPSHOTS_FILE = "snapshots.json"
METRICS_FILE = "metrics.jsonl"   # one JSON object per epoch, appended by rank 0


def read_metrics(workdir: str) -> list:
  """Epoch rows of metrics.jsonl; a resumed run re-trains epochs after its checkpoint, so the last row of
  each epoch wins."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  rows = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        rows[row["epoch"]] = row
  return [rows[e] for e in sorted(rows)]


def _step(model) -> int:
  return int(model.optimizer.iterations.numpy())


def read_snapshots(workdir: str) -> list:
  path = os.path.join(workdir, SNAPSHOTS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


def write_json_atomically(path: str, value):
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=1)
  os.replace(path + ".tmp", path)


def save_snapshot(model, directory: str, meta: dict):
  """A self-contained snapshot: architecture (JSON), weights (HDF5) and what produced them."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "model.json"), "w") as f:
    f.write(model.to_json())
  model.save_weights(os.path.join(directory, "weights.h5"))
  write_json_atomically(os.path.join(directory, "snapshot.json"), meta)


class StopAtStep(tf_keras.callbacks.Callback):
  """Ends training after the plan's last step, which need not fall on an epoch boundary."""

  def __init__(self, total_steps: int):
    super().__init__()
    self.total_steps = total_steps

  def on_train_batch_end(self, batch, logs=None):
    if _step(self.model) >= self.total_steps:
      self.model.stop_training = True


class SnapshotAtPhaseEnd(tf_keras.callbacks.Callback):
  """At the end of every snapshot phase (each collapse): global BN statistics, validation, a snapshot."""

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
    name = f"{self.due[step]}-{step}"
    entry = {"name": name, "path": os.path.join("snapshots", name), "phase": self.due[step], "step": step,
             "epoch": step / self.steps_per_epoch, "val_top1": accuracy["top1"], "val_top5": accuracy["top5"]}
    self.snapshots.append(entry)
    if distributed.is_chief():
      save_snapshot(self.model, os.path.join(self.workdir, entry["path"]),
                    {**entry, "config": self.config.to_dict()})
      write_json_atomically(os.path.join(self.workdir, SNAPSHOTS_FILE), self.snapshots)
      logging.info("snapshot %s: validation top-1 %.4f top-5 %.4f", name, accuracy["top1"], accuracy["top5"])


class MetricAverage(tf_keras.callbacks.Callback):
  """Replaces each rank's epoch metrics by their mean over ranks (in place, so later callbacks see it)."""

  def on_epoch_end(self, epoch, logs=None):
    if logs is None or distributed.size() == 1:
      return
    keys = sorted(k for k, v in logs.items() if np.isscalar(v) or np.ndim(v) == 0)
    means = distributed.allreduce_mean([float(logs[k]) for k in keys])
    logs.update({k: float(m) for k, m in zip(keys, means)})


class PeriodicValidation(tf_keras.callbacks.Callback):
  """Exact validation over all ranks every N epochs and after the last one; adds val_top1/val_top5."""

  def __init__(self, validate, every_epochs: int, total_steps: int):
    super().__init__()
    self.validate, self.every_epochs, self.total_steps = validate, every_epochs, total_steps

  def on_epoch_end(self, epoch, logs=None):
    last = _step(self.model) >= self.total_steps
    if not last and (self.every_epochs <= 0 or (epoch + 1) % self.every_epochs):
      return
    distributed.average_variables(self.model.non_trainable_variables)
    accuracy = self.validate()
    logs["val_top1"], logs["val_top5"] = accuracy["top1"], accuracy["top5"]


class StepTimer(tf_keras.callbacks.Callback):
  """Adds `train_seconds`: the epoch's time inside training steps (input waits included; validation,
  snapshots and checkpoints excluded). First in the callback list, so its clock brackets the step alone.
  Keeps every rank's train_seconds (`rank_seconds`), the last step's time and the epoch's start for
  EpochLog and ProgressBar."""

  def on_epoch_begin(self, epoch, logs=None):
    self.seconds, self.epoch_start = 0.0, time.perf_counter()

  def on_train_batch_begin(self, batch, logs=None):
    self.batch_start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.last_step_seconds = time.perf_counter() - self.batch_start
    self.seconds += self.last_step_seconds

  def on_epoch_end(self, epoch, logs=None):
    logs["train_seconds"] = self.seconds
    self.rank_seconds = distributed.allgather_floats(self.seconds)  # before MetricAverage replaces it


class ProgressBar(tf_keras.callbacks.Callback):
  """Rank 0's progress bar over each epoch's steps, with loss and the global images/s of the last step
  (only on a terminal: in batch-job logs the epoch lines say the same once per epoch)."""

  def __init__(self, timer: StepTimer, batch_per_rank: int, steps_per_epoch: int):
    super().__init__()
    self.timer, self.batch_per_rank, self.steps_per_epoch = timer, batch_per_rank, steps_per_epoch

  def on_epoch_begin(self, epoch, logs=None):
    self.bar = tf_keras.utils.Progbar(self.steps_per_epoch, stateful_metrics=["loss", "images/s"], unit_name="step")

  def on_train_batch_end(self, batch, logs=None):
    rate = self.batch_per_rank * distributed.size() / max(self.timer.last_step_seconds, 1e-9)  # elastic: size varies
    self.bar.update(batch + 1, [("loss", float(logs.get("loss", np.nan))), ("images/s", rate)])


class EpochLog(tf_keras.callbacks.Callback):
  """Adds lr, weight decay and global images/s to the logs; rank 0 prints a line, writes TensorBoard
  (with every rank's images/s), appends the epoch to metrics.jsonl and redraws training.png."""

  def __init__(self, plan, batch_per_rank: int, timer: StepTimer, workdir: str):
    super().__init__()
    self.plan, self.batch_per_rank, self.timer, self.workdir = plan, batch_per_rank, timer, workdir
    self.writer = None  # created by whichever process is rank 0 (after an elastic reset it may change)
    self.last_plot = -float("inf")

  def on_epoch_begin(self, epoch, logs=None):
    self.start_step = _step(self.model)

  def on_epoch_end(self, epoch, logs=None):
    step = _step(self.model)
    last = min(step, self.plan.total_steps) - 1
    phase = self.plan.phases[self.plan.phase_at(last)]["name"]
    logs["lr"] = float(self.plan.lr[last])
    logs["weight_decay"] = float(self.plan.weight_decay[last])
    # train_seconds is already the mean over ranks (MetricAverage), so this is one global number.
    steps = step - self.start_step
    logs["images_per_second"] = steps * self.batch_per_rank * distributed.size() / max(logs["train_seconds"], 1e-9)
    # Wall time of the epoch including validation and snapshots; averaged, like every logged number.
    logs["epoch_seconds"] = float(distributed.allreduce_mean(time.perf_counter() - self.timer.epoch_start))
    rank_rates = steps * self.batch_per_rank / np.maximum(self.timer.rank_seconds, 1e-9)
    if not distributed.is_chief():
      return
    if self.writer is None:
      self.writer = tf.summary.create_file_writer(os.path.join(self.workdir, "tensorboard"))
    shown = " ".join(f"{k} {logs[k]:.4g}" for k in ("loss", "top1", "top5", "val_top1", "val_top5") if k in logs)
    logging.info("epoch %d/%d [%s] step %d  %s  lr %.4g wd %.2g  %.0f images/s", epoch + 1,
                 -(-self.plan.total_steps // self.plan.steps_per_epoch), phase, step, shown, logs["lr"],
                 logs["weight_decay"], logs["images_per_second"])
    with self.writer.as_default(step=step):
      for key, value in logs.items():
        tf.summary.scalar(key, value)
      for rank, rate in enumerate(rank_rates):
        tf.summary.scalar(f"images_per_second_rank/{rank}", rate)
    self.writer.flush()
    row = {"epoch": epoch + 1, "step": step, "phase": phase, "time": time.time(), "ranks": distributed.size(),
           **{k: float(v) for k, v in logs.items()}}
    with open(os.path.join(self.workdir, METRICS_FILE), "a") as f:
      f.write(json.dumps(row) + "\n")
    # Drawing takes ≈ 0.3 s that every other rank waits for at the next allreduce: at most once a minute,
    # and after the last epoch.
    if step >= self.plan.total_steps or time.perf_counter() - self.last_plot >= 60:
      plots.plot_training(read_metrics(self.workdir), self.plan, os.path.join(self.workdir, "training.png"))
      self.last_plot = time.perf_counter()


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

"""An epoch's figures: the step clock, the cross-rank means (`reduce`, every rank) and rank 0's report.

`callbacks.StepEnd` calls these in its one sequence; nothing here decides when.

images/s is steady state: the first step of each epoch (the trace of a `fit` call, the iterator's warm-up
after validation) is left out of both the images and the seconds.
"""
import time

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from tfscale import distributed, plots, workdir as workdir_files


class EpochReport:
  """The epoch's clock and figures. `reduce` is the epoch's cross-rank step (every rank); `report` is
  rank 0's: the log line (elapsed time and ETA to the plan's end), TensorBoard, metrics.jsonl, the MLPerf
  events, and training.png at most once a minute (drawing stalls the other ranks at the next collective)."""

  def __init__(self, plan, batch_per_rank: int, workdir: str, validate_every_epochs: int, run_log, progress: bool):
    self.plan, self.batch_per_rank, self.workdir, self.run_log = plan, batch_per_rank, workdir, run_log
    self.validate_every_epochs = validate_every_epochs
    self.progress = progress  # rank 0's progress bar (a terminal's only: a batch log has the epoch lines)
    self.bar = None
    self.writer = None  # created by whichever process is rank 0 (after an elastic reset it may change)
    self.last_plot = -float("inf")
    self.run_start = time.time()
    self.block_start = None  # the first epoch of the MLPerf block (the epochs up to the next validation)
    self.start_step, self.epoch_start, self.step_start, self.step_seconds = 0, 0.0, 0.0, []

  def begin_epoch(self, epoch: int, step: int):
    self.start_step, self.epoch_start, self.step_seconds = step, time.perf_counter(), []
    if self.progress:
      self.bar = tf_keras.utils.Progbar(self.plan.steps_per_epoch, stateful_metrics=["loss", "images/s"],
                                        unit_name="step")
    every = max(self.validate_every_epochs, 1)
    if epoch % every == 0 or self.block_start is None:
      self.block_start = epoch + 1
      self.run_log.start("block_start", first_epoch_num=epoch + 1, epoch_count=every)
    self.run_log.start("epoch_start", epoch_num=epoch + 1)

  def begin_step(self):
    self.step_start = time.perf_counter()

  def end_step(self, batch: int, logs):
    """The step's seconds (before anything else happens after it), and the progress bar."""
    seconds = time.perf_counter() - self.step_start
    self.step_seconds.append(seconds)
    if self.bar is not None:
      rate = self.batch_per_rank * distributed.size() / max(seconds, 1e-9)  # elastic: the size varies
      self.bar.update(batch + 1, [("loss", float((logs or {}).get("loss", np.nan))), ("images/s", rate)])

  def reduce(self, step: int, logs: dict, accuracy) -> np.ndarray:
    """On every rank: one allreduce of the epoch's metrics and times (means over ranks), one allgather of
    each rank's images/s. Adds the global figures (and `accuracy`, a validation or None) to `logs`."""
    if accuracy is not None:
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

  def report(self, epoch: int, step: int, logs: dict, rank_rates):
    """Rank 0 only."""
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

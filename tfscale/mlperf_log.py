"""Time to accuracy in the field's own format: MLPerf-style `:::MLLOG` events in workdir/mllog.txt.

Rank 0 writes, with the `mlperf-logging` package's MLLogger (its own file handler; nothing on stdout):
init and run start/stop, the global batch, the optimizer and schedule, every epoch's start and stop, every
block (the epochs between two validations) and each validation's accuracy. A resumed run appends to the
same file. The log is the MLPerf format, not an MLPerf submission (docs/BENCHMARKS.md says what the
package's compliance checker accepts and flags).
"""
import logging
import os

from mlperf_logging.mllog.mllog import MLLogger
from mlperf_logging.mllog import constants as keys

from tfscale import workdir as workdir_files


class RunLog:
  """The run's MLPerf log; every method is a no-op on ranks other than 0 (`enabled` False)."""

  def __init__(self, workdir: str, enabled: bool):
    self.enabled = enabled
    if not enabled:
      return
    logger = logging.getLogger(f"tfscale.mllog.{os.path.abspath(workdir)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not logger.handlers:
      logger.addHandler(logging.FileHandler(workdir_files.path(workdir, workdir_files.MLLOG)))
    self.logger = MLLogger(logger=logger, default_stack_offset=2)

  def event(self, key, value=None, **metadata):
    if self.enabled:
      self.logger.event(key=key, value=value, metadata=metadata or None)

  def start(self, key, value=None, **metadata):
    if self.enabled:
      self.logger.start(key=key, value=value, metadata=metadata or None)

  def end(self, key, value=None, **metadata):
    if self.enabled:
      self.logger.end(key=key, value=value, metadata=metadata or None)

  def run_start(self, config, plan, global_batch: int, train_images: int, eval_images: int, resumed_step: int):
    """The run's shape: init, the hyper-parameters MLPerf names, then run_start."""
    self.start(keys.INIT_START)
    self.event(keys.SUBMISSION_BENCHMARK, keys.RESNET)
    self.event(keys.GLOBAL_BATCH_SIZE, global_batch)
    self.event(keys.TRAIN_SAMPLES, train_images)
    self.event(keys.EVAL_SAMPLES, eval_images)
    self.event(keys.SEED, config.seed)
    self.event(keys.OPT_NAME, keys.LARS if config.optim.name == "lars" else keys.SGD)
    self.event(keys.OPT_BASE_LR, float(plan.lr.max()))
    self.event(keys.OPT_END_LR, float(plan.lr[-1]))
    self.event(keys.LARS_OPT_MOMENTUM if config.optim.name == "lars" else "opt_momentum", config.optim.momentum)
    self.event(keys.OPT_WEIGHT_DECAY, float(plan.weight_decay[0]))
    self.event(keys.OPT_LR_WARMUP_EPOCHS, sum(p["epochs"] or 0 for p in plan.phases if p["lr_shape"] == "warmup"))
    self.event(keys.EPOCH_COUNT, plan.total_steps / plan.steps_per_epoch)
    self.event("phase_plan", [p["name"] for p in plan.phases], steps=[int(b) for b in plan.boundaries])
    if resumed_step:
      self.event(keys.INIT_CHECKPOINT_STEP, resumed_step)
    self.end(keys.INIT_STOP)
    self.start(keys.RUN_START)

"""Training: the phase plan, LARS under Horovod, checkpoints, validation and Collapsed-Ensemble snapshots.

`train_and_evaluate(config, workdir)` is the whole run; `python -m tfscale.train` only parses flags and
calls it. Every function here is a function of `config` (and the rank world that `distributed` reports).
"""
import dataclasses
from typing import List

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from data_prep import shard_format

from tfscale import callbacks, config_base, datasets, distributed, input_pipeline, metrics, plots, schedules
from tfscale import job_log, mlperf_log, run_control
from tfscale import workdir as workdir_files
from tfscale.lars import LARS, StepTable
from tfscale import models


@dataclasses.dataclass
class TrainResult:
  model: tf_keras.Model
  history: dict           # per-epoch metrics, averaged over ranks (identical on every rank)
  snapshots: List[dict]   # the entries of snapshots.json
  final_step: int


def global_batch_size(config) -> int:
  return config.train.batch_per_rank * distributed.size()


def create_plan(config, train_records: int) -> schedules.CompiledPlan:
  """The phase plan as step tables for this world size (an epoch is train_records // global batch steps)."""
  if train_records < global_batch_size(config):
    raise datasets.DataError(f"{train_records} training images is less than one global batch of "
                             f"{global_batch_size(config)}")
  return schedules.compile_for(config, train_records, global_batch_size(config))


OPTIMIZERS = ("lars", "sgd")
DTYPES = ("float32", "mixed_bfloat16")  # the Keras policies tfscale runs (bf16: oneDNN on AVX512_BF16/AMX)
PROGRESS = ("auto", "on", "off")


def check_config(config):
  """The config values that name a choice, checked against their owners' choices before the backend starts
  (train.backend: tfscale.train's preflight; the plan: when it is compiled, before the log's first line):
  one ConfigError line."""
  models.check_config(config.model)
  if config.optim.name not in OPTIMIZERS:
    raise config_base.ConfigError(f"optim.name must be one of {OPTIMIZERS}, got {config.optim.name!r}")
  input_pipeline.check_data_config(config.data)
  if config.model.dtype not in DTYPES:
    raise config_base.ConfigError(f"model.dtype must be one of {DTYPES}, got {config.model.dtype!r}")
  distributed.check_compression(config.train.gradient_compression)
  if config.train.progress not in PROGRESS:
    raise config_base.ConfigError(f"train.progress must be one of {PROGRESS}, got {config.train.progress!r}")


def create_optimizer(config, plan: schedules.CompiledPlan):
  """LARS (or momentum SGD: the same update without adaptation) driven by the plan's LR, WD and momentum
  tables (momentum 0 where the plan restarts the velocity)."""
  if config.optim.name not in OPTIMIZERS:
    raise config_base.ConfigError(f"optim.name must be one of {OPTIMIZERS}, got {config.optim.name!r}")
  return LARS(learning_rate=StepTable(plan.lr, "learning_rate"),
              weight_decay=StepTable(plan.weight_decay, "weight_decay"),
              momentum=StepTable(np.where(plan.momentum_reset, 0.0, config.optim.momentum), "momentum"),
              eta=config.optim.lars_eta, adapt=config.optim.name == "lars", decay_biases=config.optim.decay_biases,
              decay_batch_norm=config.optim.decay_batch_norm)


def loss_and_metrics(config):
  """Sparse labels unless label smoothing is on, which needs one-hot labels (the pipeline makes them)."""
  if one_hot_labels(config):
    return (tf_keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.optim.label_smoothing),
            [tf_keras.metrics.CategoricalAccuracy(name="top1"),
             tf_keras.metrics.TopKCategoricalAccuracy(k=5, name="top5")])
  return (tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
          [tf_keras.metrics.SparseCategoricalAccuracy(name="top1"),
           tf_keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")])


def one_hot_labels(config) -> bool:
  """Label smoothing's loss takes one-hot labels (loss_and_metrics); every other loss takes class ids."""
  return bool(config.optim.label_smoothing)


def create_train_data(config, info, plan, start_step: int):
  """This rank's training batches, from `start_step` on."""
  return input_pipeline.train_dataset(
      info, config.data, config.train.batch_per_rank, distributed.rank(), distributed.size(),
      collapse=plan.collapse, start_step=start_step, seed=config.seed, deterministic=config.train.deterministic,
      one_hot=one_hot_labels(config))


def build_model(config, num_classes: int):
  """(model, renorm clipping variables or None): the config's architecture under its dtype policy.

  The clipping variables stay off the model object: an attribute would make Keras track them as model
  weights, and snapshots (weights.h5) would no longer load into the architecture from model.json."""
  tf_keras.mixed_precision.set_global_policy(config.model.dtype)
  tf_keras.utils.set_random_seed(config.seed)  # the initial weights are a function of the seed (rank 0's are broadcast)
  renorm = None
  if config.model.renorm:
    renorm = {"rmax": config.model.renorm_rmax, "dmax": config.model.renorm_dmax,
              "momentum": config.model.renorm_momentum,
              "variables": (tf.Variable(1.0, trainable=False, name="renorm_rmax"),
                            tf.Variable(1.0, trainable=False, name="renorm_rmin"),
                            tf.Variable(0.0, trainable=False, name="renorm_dmax"))}
  model = models.create_model(config.model, num_classes, config.data.image_size, renorm=renorm)
  return model, (renorm["variables"] if renorm else None)


def fit_rest_of_plan(model, config, info, plan, run_callbacks, step_end) -> dict:
  """Trains from the optimizer's current step to the plan's end; the per-epoch history.

  A mid-epoch start (a step checkpoint, an elastic reset) first finishes that epoch alone, so later
  epochs line up with the plan's; the input stream always starts at the step being trained."""
  steps_per_epoch = plan.steps_per_epoch
  epochs = -(-plan.total_steps // steps_per_epoch)
  step = int(model.optimizer.iterations.numpy())
  first_epoch, offset = divmod(step, steps_per_epoch)
  history = {}
  if offset:
    partial = model.fit(create_train_data(config, info, plan, step), epochs=first_epoch + 1, initial_epoch=first_epoch,
                        steps_per_epoch=steps_per_epoch - offset, callbacks=run_callbacks, verbose=0)
    history = partial.history
    first_epoch += 1
  stopped = step_end.stopped
  if first_epoch < epochs and int(model.optimizer.iterations.numpy()) < plan.total_steps and not stopped:
    rest = model.fit(create_train_data(config, info, plan, first_epoch * steps_per_epoch), epochs=epochs,
                     steps_per_epoch=steps_per_epoch, initial_epoch=first_epoch, callbacks=run_callbacks, verbose=0)
    history = {k: history.get(k, []) + v for k, v in rest.history.items()}
  return history


def announce(config, info, plan, workdir, intra, inter, software):
  """Rank 0: the config's differences from the base config (the whole of it is saved as config.json, with
  the software versions), the run's shape, the phase plan as a table and as plan.png."""
  workdir_files.write_config(workdir, config, software)
  logging.info("config (whole: %s; fields that differ from config_base):\n%s",
               workdir_files.path(workdir, workdir_files.CONFIG), "\n".join(config_base.differences(config)))
  logging.info("%s: %d classes, %d training images; %d rank(s) × %d = global batch %d; "
               "%d steps/epoch; threads intra %d inter %d per rank",
               info.data_dir, info.num_classes, info.split("train").records, distributed.size(),
               config.train.batch_per_rank, global_batch_size(config), plan.steps_per_epoch, intra, inter)
  reference = config.train.reference_global_batch
  if reference and reference != global_batch_size(config):
    logging.warning("the recipe was published at global batch %d; this run's is %d, so its learning rates are "
                    "scaled by %d/256 (linear rule) and the accuracy it targets may not be reached",
                    reference, global_batch_size(config), global_batch_size(config))
  logging.info("phase plan:\n%s", schedules.plan_table(plan))
  workdir_files.write_plan(workdir, plan)
  plots.plot_plan(plan, workdir_files.path(workdir, workdir_files.PLAN_PLOT))


def create_callbacks(config, plan, workdir, manager, validate, snapshots, renorm_clipping, run_log):
  """(step_end, the callback list): the renorm ramp (before each step) and StepEnd, which does everything
  between two updates in one order (callbacks.StepEnd says which)."""
  progress = distributed.is_chief() and (config.train.progress == "on" or (
      config.train.progress == "auto" and run_control.interactive_terminal()))
  step_end = callbacks.StepEnd(plan, config, workdir, manager, validate, snapshots, run_log, progress)
  ramp = None
  if renorm_clipping:
    start, end = (round(e * plan.steps_per_epoch) for e in config.model.renorm_ramp_epochs)
    ramp = callbacks.RenormRamp(*renorm_clipping, rmax=config.model.renorm_rmax, dmax=config.model.renorm_dmax,
                                start_step=start, end_step=end)
  return step_end, [c for c in (ramp, step_end) if c is not None]


def setup_runtime(config):
  """The backend, per-rank threads, quiet non-chief ranks, stop requests (signals, a vanished launcher); must
  run before TensorFlow executes anything."""
  intra, inter = distributed.start(config.train)
  if config.train.deterministic:  # the same run twice: tf.data's order (input_pipeline) and every kernel's
    tf.config.experimental.enable_op_determinism()
  # After the backend's start: TF's coordination service (the tf backend) installs a SIGTERM handler of its
  # own there (its preemption notifier), which would swallow Slurm's and the user's stop requests.
  run_control.install_signal_handlers()
  run_control.watch_launcher()
  job_log.use(distributed.rank())
  return intra, inter


def compile_model(config, plan, num_classes: int):
  """(model, optimizer, renorm clipping variables or None), compiled for training.

  Horovod's wrapper is a new optimizer object (rebuilt from the config), so it is the one to build,
  checkpoint and broadcast."""
  model, renorm_clipping = build_model(config, num_classes)
  optimizer = distributed.distributed_optimizer(create_optimizer(config, plan), config.train.gradient_compression)
  optimizer.build(model.trainable_variables)
  loss, train_metrics = loss_and_metrics(config)
  model.compile(optimizer=optimizer, loss=loss, metrics=train_metrics)
  return model, optimizer, renorm_clipping


def restore_or_broadcast(model, optimizer, workdir: str, keep: int):
  """The checkpoint manager; the latest checkpoint restored on every rank (the same files, so no broadcast
  is needed), or rank 0's fresh state broadcast to all."""
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  manager = tf.train.CheckpointManager(checkpoint, workdir_files.path(workdir, workdir_files.CHECKPOINTS),
                                       max_to_keep=keep)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
  else:
    distributed.broadcast_initial_state(model, optimizer)
  return manager


def corrupt_shard_error(info, config, error) -> datasets.DataError:
  """TF's DataLossError does not say which shard; find it so the user can fix or skip it."""
  rank_files = shard_format.files_for_rank(info.split("train").files, distributed.rank(), distributed.size())[0]
  culprit = input_pipeline.locate_corruption(rank_files + info.split(config.eval.split).files)
  where = f"{culprit[0]}: {culprit[1]}" if culprit else error.message
  return datasets.DataError(f"corrupt shard {where} (python -m data_prep.verify finds all; "
                            "--config.data.skip_corrupt=True skips them)")


def train_and_evaluate(config, workdir: str, extra_callbacks=()) -> TrainResult:
  """Trains the config's model through its whole phase plan; resumes from workdir's checkpoints.
  `extra_callbacks` run after the trainer's own at every step (as Keras `fit`'s do: observers such as a
  benchmark's clock; the plan's work is all in StepEnd)."""
  check_config(config)
  intra, inter = setup_runtime(config)
  info = datasets.load(config.data.dir, config.data.label_offset, config.data.num_classes)
  datasets.check_rank_sharding(info, "train", distributed.size(), config.data.record_sharding_fallback)
  plan = create_plan(config, info.split("train").records)
  software = distributed.software() if distributed.is_chief() else None  # rank 0 logs and records it
  if software:
    logging.info("software: %s", distributed.software_line(software))
  model, optimizer, renorm_clipping = compile_model(config, plan, info.num_classes)
  manager = restore_or_broadcast(model, optimizer, workdir, config.train.keep_checkpoints)
  start_step = int(optimizer.iterations.numpy())
  # Rank 0's list is the truth (the workdir need not be shared between nodes).
  snapshots = distributed.broadcast_object(workdir_files.read_snapshots(workdir) if distributed.is_chief() else None)
  if distributed.is_chief():
    announce(config, info, plan, workdir, intra, inter, software)
    if start_step:
      logging.info("resuming from %s at step %d", manager.latest_checkpoint, start_step)
  if start_step >= plan.total_steps:
    return TrainResult(model, {}, snapshots, start_step)

  # The validation data is per rank, so it is rebuilt whenever the world changes (elastic runs).
  current = {}
  predict = metrics.prediction_fn([model])
  validate = lambda: metrics.global_accuracy(predict, current["val"])[0]
  run_log = mlperf_log.RunLog(workdir, distributed.is_chief())
  run_log.run_start(config, plan, global_batch_size(config), info.split("train").records,
                    info.split(config.eval.split).records, start_step)
  step_end, run_callbacks = create_callbacks(config, plan, workdir, manager, validate, snapshots, renorm_clipping,
                                             run_log)
  run_callbacks += list(extra_callbacks)

  def fit_on_this_world(world_callbacks=()):
    """The rest of the plan from the optimizer's step, with input built for the current ranks (an elastic
    world adds its commit callback)."""
    # One view per image: multi-crop is tfscale.evaluate's, not the per-epoch check's.
    current["val"] = input_pipeline.eval_dataset(info, config.data, config.eval.split, config.eval.batch_size,
                                                 distributed.rank(), distributed.size(), crops=1)
    return fit_rest_of_plan(model, config, info, plan, run_callbacks + list(world_callbacks), step_end)

  try:
    if config.train.elastic:
      history = distributed.run_elastic(fit_on_this_world, model, optimizer, config.train.elastic_commit_steps)
    else:
      history = fit_on_this_world()
  except tf.errors.DataLossError as e:
    raise corrupt_shard_error(info, config, e) from None
  if step_end.stopped:
    run_log.end("run_stop", status="aborted", stopped_at_step=step_end.stopped.step)
    raise step_end.stopped
  final_step = int(optimizer.iterations.numpy())  # validated and checkpointed by StepEnd at the plan's end
  run_log.end("run_stop", status="success")
  distributed.barrier()
  return TrainResult(model, history, snapshots, final_step)

r"""Train a classifier through its phase plan; the logic lives in tfscale.trainer.

Single process:
  python -m tfscale.train --config=configs/demo_digits.py --workdir=runs/demo
Distributed (one process per rank; rank 0 prints and writes):
  horovodrun -np 2 -H localhost:2 python -m tfscale.train --config=configs/demo_digits.py --workdir=runs/demo
  horovodrun -np 128 -H … python -m tfscale.train --config=configs/resnet50_i1k_ce72.py --workdir=/pfs/runs/ce72
Any config field can be overridden: --config.train.batch_per_rank=64 --config.data.dir=/local/i1k.
Rerunning with the same --workdir resumes from its latest checkpoint.
"""
import sys

from absl import app, flags
from ml_collections import config_flags

import tfscale  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow can be imported)
from tfscale import config_base, datasets, run_control
from tfscale import workdir as workdir_files

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Recipe file, e.g. configs/demo_digits.py.", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, snapshots, TensorBoard logs and config.json go here.")


def preflight(config, workdir):
  """Every error a user can make on the command line, found before any heavy work starts."""
  if config is None:
    raise config_base.ConfigError("--config is required, e.g. --config=configs/demo_digits.py")
  if not workdir:
    raise config_base.ConfigError("--workdir is required")
  info = datasets.load(config.data.dir, config.data.label_offset, config.data.num_classes)
  datasets.check_rank_sharding(info, "train", datasets.world_size_from_environment(),
                               config.data.record_sharding_fallback)
  if config.train.backend not in ("horovod", "tf"):
    raise config_base.ConfigError(f"train.backend must be 'horovod' or 'tf', got {config.train.backend!r}")
  if config.train.elastic and config.train.backend != "horovod":
    raise config_base.ConfigError("train.elastic needs train.backend='horovod' (the tf backend's world is fixed "
                                  "at start-up)")
  if config.train.elastic and any(p.get("branch") for p in config.plan):
    raise config_base.ConfigError("train.elastic cannot run a plan with branches (a re-formed world is not "
                                  "tested to hand the main line back); run it on a fixed set of ranks")
  workdir_files.check_writable(workdir)
  if run_control.rank_from_environment() == 0:
    run_control.hold_workdir(workdir)  # one live run per workdir (rank 0 writes it)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    preflight(FLAGS.config, FLAGS.workdir)
    tfscale.quiet_tensorflow_import()  # TensorFlow is imported only now, without its C++ start-up noise.
    from tfscale import distributed, trainer
    try:
      with distributed.peer_failures_as_errors():
        trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except distributed.BackendError as e:
      sys.exit(f"tfscale.train: error: {e}")
  except (config_base.ConfigError, datasets.DataError, workdir_files.WorkdirError, run_control.WorkdirHeld) as e:
    sys.exit(f"tfscale.train: error: {e}")
  except run_control.Stopped as e:
    if run_control.rank_from_environment() == 0:
      print(f"tfscale.train: {e}", file=sys.stderr, flush=True)
    sys.exit(run_control.EXIT_STOPPED)


def run():
  app.run(main, flags_parser=config_base.flags_parser("tfscale.train"))


if __name__ == "__main__":
  run()

r"""The digits demo: a ResNet on scikit-learn's digits, LARS, warmup + poly, three collapses, an ensemble.

  make demo
  # which runs, after building data/digits/tfrecords:
  horovodrun -np 2 -H localhost:2 python -m tfscale.train --config=configs/demo_digits.py --workdir=runs/demo
  python -m tfscale.evaluate --workdir=runs/demo

Expected (2-core machine, README has the measured run): every snapshot ≥ 95 % top-1 on the 359
validation digits, the Collapsed Ensemble at least as good as the best snapshot; training ≈ 3 minutes.
The plan has the paper's shape, shrunk: warmup → poly-1 → collapse, then two re-warmup/collapse cycles.
"""
import ml_collections
from ml_collections.config_dict import placeholder

from tfscale.schedules import phase


def get_config(variant: str = ""):
  """variant 'tiny': the same recipe in 5 epochs, for tests (--config=configs/demo_digits.py:tiny)."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Data section
  config.data = ml_collections.ConfigDict()
  config.data.dir = "data/digits/tfrecords"
  config.data.num_classes = placeholder(int)   # None: from the data's manifest (set it to insist on a value)
  config.data.label_offset = placeholder(int)  # None: from the manifest (needed for shards that have none)
  config.data.image_size = 32
  config.data.scale = (0.5, 1.0)          # random-resized-crop area fraction ('full' phases)
  config.data.ratio = (3 / 4, 4 / 3)      # and aspect ratio
  config.data.collapse_crop_fraction = 0.875  # 'collapse' phases: fixed-scale crop, no scale/aspect jitter
  config.data.eval_crop_fraction = 0.875
  config.data.flip = False                # a mirrored 2 is not a 2
  config.data.shuffle_buffer = 2048
  config.data.interleave_files = 4
  config.data.threads = 0                 # tf.data private thread pool (0: one per 16 cores of the rank)
  config.data.map_parallelism = 0         # images decoded in parallel (0: the pool size)
  config.data.prefetch_batches = 2
  config.data.cache_in_memory = False     # keep this rank's serialized records in RAM after epoch 1
  config.data.skip_corrupt = False        # True: skip corrupt records (logged) instead of failing
  config.data.synthetic = False           # True: random tensors, no I/O (benchmarks the model alone)

  # Model section
  config.model = ml_collections.ConfigDict()
  config.model.name = "resnet_cifar8"
  config.model.bn_momentum = 0.9
  config.model.bn_epsilon = 1e-5
  config.model.zero_gamma = True
  config.model.width_multipliers = placeholder(tuple)  # per stage, e.g. (2, 2, 2): see models/resnet.py
  config.model.renorm = False             # batch renormalization, clipping ramped open over renorm_ramp_epochs
  config.model.renorm_rmax = 3.0
  config.model.renorm_dmax = 5.0
  config.model.renorm_momentum = 0.99
  config.model.renorm_ramp_epochs = (1.0, 10.0)
  config.model.dtype = "float32"          # or "mixed_bfloat16"

  # Optimizer section
  config.optim = ml_collections.ConfigDict()
  config.optim.name = "lars"              # "lars" or "sgd" (the same update with adaptation off)
  config.optim.momentum = 0.9
  config.optim.lars_eta = 0.02
  config.optim.label_smoothing = 0.0

  # Plan section: learning rates per 256 images (scaled by global batch / 256 in one place).
  wd, collapse_wd = 5e-4, 1e-3
  config.plan = [
      phase("warmup", 2, "warmup", lr_start=0.0, lr_end=8.0, weight_decay=wd),
      phase("train", 10, "poly", lr_end=0.4, lr_power=1, weight_decay=wd),
      phase("collapse1", 4, "poly", lr_end=0.0, lr_power=2, weight_decay=wd, snapshot=True),
      phase("rewarmup2", 2, "warmup", lr_end=4.0, weight_decay=wd),
      phase("collapse2", 4, "poly", lr_end=0.0, lr_power=2, weight_decay=wd, snapshot=True),
      phase("rewarmup3", 2, "warmup", lr_end=4.0, weight_decay=wd),
      phase("collapse3", 4, "poly", lr_end=0.0, lr_power=2, weight_decay=collapse_wd, augment="collapse",
            snapshot=True),
  ]

  if variant == "tiny":
    config.plan = [
        phase("warmup", 1, "warmup", lr_start=0.0, lr_end=8.0, weight_decay=wd),
        phase("collapse1", 1, "poly", lr_end=0.0, lr_power=2, weight_decay=wd, snapshot=True),
        phase("rewarmup2", 1, "warmup", lr_end=4.0, weight_decay=wd),
        phase("collapse2", 2, "poly", lr_end=0.0, lr_power=2, weight_decay=collapse_wd, augment="collapse",
              snapshot=True),
    ]
  elif variant:
    raise ValueError(f"unknown variant {variant!r} (known: tiny)")

  # Train section
  config.train = ml_collections.ConfigDict()
  config.train.batch_per_rank = 32
  config.train.intra_op_threads = 0       # 0: the cores available to each rank
  config.train.inter_op_threads = 0
  config.train.validate_every_epochs = 1 if variant == "tiny" else 4
  config.train.checkpoint_every_epochs = 1 if variant == "tiny" else 2
  config.train.keep_checkpoints = 2
  config.train.deterministic = False

  # Eval section
  config.eval = ml_collections.ConfigDict()
  config.eval.split = "validation"
  config.eval.batch_size = 128
  config.eval.crops = 1                   # 1 (center), 12 (2 scales × 4 corners + center + whole), 24 (+ mirrors)
  config.eval.multicrop_shorter_sides = (256 / 224, 288 / 224)  # × image_size: the two multi-crop scales
  return config

"""Every config field tfscale reads, with ImageNet defaults; recipe files in configs/ start from this.

A recipe sets what its paper row sets (model, batch, plan, weight decay, …) and nothing else, so the
fields and their meaning live in one place. Imports no TensorFlow (configs load before TF starts).
"""
import ml_collections
from ml_collections.config_dict import placeholder


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Data section
  config.data = ml_collections.ConfigDict()
  config.data.dir = placeholder(str)      # shard directory with manifest.json (data_prep's output)
  config.data.num_classes = placeholder(int)   # None: from the data's manifest (set it to insist on a value)
  config.data.label_offset = placeholder(int)  # None: from the manifest (needed for shards that have none)
  config.data.image_size = 224
  config.data.crop = "inception"          # 'full' phases' crop: "inception" (TF's sample_distorted_bounding_box:
                                          # area in `scale`, aspect w/h in `ratio`) or "intel_caffe" (Intel Caffe's
                                          # random_aspect_ratio: area in `scale`, r in [ratio[0], 1/ratio[0]],
                                          # h = √A·r, w = √A/r, swapped with probability ½)
  config.data.scale = (0.08, 1.0)         # random-resized-crop area fraction ('full' phases)
  config.data.ratio = (3 / 4, 4 / 3)      # and aspect ratio (intel_caffe: ratio[0] is aspect_ratio_change)
  config.data.resize_method = "bilinear"  # every crop's resize to image_size ("bicubic": Caffe's CUBIC; the
                                          # multi-crop views are always bilinear)
  config.data.collapse_crop_fraction = 0.875  # 'collapse' phases: fixed-scale crop + flip, no scale/aspect jitter
  config.data.eval_crop_fraction = 0.875  # resize the shorter side to image_size / 0.875, center-crop
  config.data.flip = True
  config.data.shuffle_buffer = 10_000
  config.data.interleave_files = 8
  config.data.threads = 0                 # tf.data private thread pool (0: one per 16 cores of the rank)
  config.data.map_parallelism = 0         # images decoded in parallel (0: the pool size)
  config.data.prefetch_batches = 2
  config.data.record_sharding_fallback = True  # fewer shard files than ranks: every rank reads every file and
                                          # keeps every N-th record (False: refuse to start)
  config.data.cache_in_memory = False     # keep this rank's serialized records in RAM after epoch 1
  config.data.skip_corrupt = False        # True: skip corrupt records (logged) instead of failing
  config.data.synthetic = False           # True: random tensors, no I/O (benchmarks the model alone)

  # Model section
  config.model = ml_collections.ConfigDict()
  config.model.name = "resnet50"          # python -m tfscale.models --list
  config.model.bn_momentum = 0.9          # Caffe's "moving average fraction"
  config.model.bn_epsilon = 1e-5
  config.model.zero_gamma = "all"         # which blocks' last BN starts at γ = 0: "all" (Goyal et al.),
                                          # "stage_last" (each stage's last block) or "none"
  config.model.conv_init = "he_normal"    # or "caffe_msra" (the seed authors' MSRA fillers; models/resnet.py)
  config.model.width_multipliers = placeholder(tuple)  # per stage, e.g. (2, 2, 2, 2): see models/resnet.py
  config.model.renorm = False             # batch renormalization, clipping ramped open over renorm_ramp_epochs
  config.model.renorm_rmax = 3.0
  config.model.renorm_dmax = 5.0
  config.model.renorm_momentum = 0.99
  config.model.renorm_ramp_epochs = (5.0, 40.0)
  config.model.dtype = "float32"          # or "mixed_bfloat16"

  # Optimizer section
  config.optim = ml_collections.ConfigDict()
  config.optim.name = "sgd"               # "sgd" (momentum) or "lars" (the same update, layer-wise adapted)
  config.optim.momentum = 0.9
  config.optim.lars_eta = 0.001           # LARS trust coefficient η
  config.optim.decay_biases = False       # True: weight decay on biases too, as Caffe's decay_mult 1 does
  config.optim.lr_scale = 1.0             # multiplies every LR of the plan (LR sweeps of a whole recipe)
  config.optim.label_smoothing = 0.0

  # Plan section: a list of schedules.phase(...); learning rates per 256 images (scaled by global batch / 256
  # in one place, schedules.compile_plan).
  config.plan = []

  # Train section
  config.train = ml_collections.ConfigDict()
  config.train.batch_per_rank = 32
  config.train.reference_global_batch = placeholder(int)  # the global batch the recipe was published at (LRs
                                          # scale linearly from it at any other size; the trainer says so)
  config.train.intra_op_threads = 0       # 0: the cores available to each rank
  config.train.inter_op_threads = 0       # 0: 2 (overlaps small independent ops; docs/BENCHMARKS.md)
  config.train.validate_every_epochs = 4
  config.train.checkpoint_every_epochs = 1
  config.train.checkpoint_every_steps = 0  # > 0: checkpoint every N steps instead (resume mid-epoch)
  config.train.keep_checkpoints = 3
  config.train.deterministic = False
  config.train.elastic = False            # Horovod elastic: horovodrun --min-np … --host-discovery-script …
  config.train.elastic_commit_steps = 10  # in-memory commits a shrunk or grown world rolls back to

  # Eval section
  config.eval = ml_collections.ConfigDict()
  config.eval.split = "validation"
  config.eval.batch_size = 64
  config.eval.crops = 1                   # 1 (center), 12 (2 scales × 4 corners + center + whole), 24 (+ mirrors)
  config.eval.multicrop_shorter_sides = (256 / 224, 288 / 224)  # × image_size: the two multi-crop scales
  return config


def seed_authors_config(data_dir: str = "/local/imagenet1k", num_classes: int = 1000,
                        model: str = "resnet50") -> ml_collections.ConfigDict:
  """base_config with what the seed authors' recipes share, for a dataset and model (default ResNet-50 on
  ImageNet-1K). From their Caffe network and solver files (sara-nl/caffe, models/intel_optimized_models/
  multinode/resnet50_custom_lr/train_val.prototxt; docs/RECIPES.md lists each): BN moving-average fraction
  0.95, γ = 0 only for the last BN of each stage (the BN fillers; 1 elsewhere), MSRA initialisation, weight
  decay on biases (only BN/Scale have decay_mult 0), plain momentum SGD, Intel Caffe's random-aspect-ratio
  crop with bicubic resizing."""
  config = base_config()
  config.data.dir = data_dir
  config.data.num_classes = num_classes
  config.data.crop = "intel_caffe"
  config.model.name = model
  config.model.bn_momentum = 0.95
  config.model.zero_gamma = "stage_last"
  config.model.conv_init = "caffe_msra"
  config.optim.name = "sgd"
  config.optim.decay_biases = True
  return config


def load_recipe(path: str):
  """The module of another recipe file, so recipes build on each other by file path (configs/ is a
  directory of files passed to --config, not an installed package)."""
  import importlib.util
  import os
  name = "tfscale_recipe_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def flags_parser(program: str):
  """An absl `flags_parser` that turns an override of a field the config does not have
  (--config.train.nope=1) into one line and a non-zero exit, instead of ml_collections' traceback."""
  import re
  import sys

  from absl import flags

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
      # ml_collections' message: "'name'" and, for near misses, 'Did you mean "x" instead of "name"?'
      text = str(e).replace("\\", "")
      name = re.search(r"[A-Za-z_][A-Za-z0-9_]*", text).group(0)
      suggestion = re.search(r'Did you mean "([^"]+)"', text)
      culprits = [a for a in argv[1:] if a.startswith("--config.") and f".{name}" in a.split("=")[0]]
      sys.exit(f"{program}: error: unknown config field {name!r} in {' '.join(culprits) or 'an override'}"
               + (f"; did you mean {suggestion.group(1)!r}?" if suggestion else
                  " (config_base.py lists every field)"))
  return parse

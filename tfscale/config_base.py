"""Every config field tfscale reads, with ImageNet defaults; recipe files in configs/ start from this.

A recipe sets what its paper row sets (model, batch, plan, weight decay, …) and nothing else, so the
fields and their meaning live in one place. Imports no TensorFlow (configs load before TF starts).
"""
import ml_collections
from ml_collections.config_dict import placeholder


EVAL_VIEWS = (1, 12, 24)  # the center crop; input_pipeline.multi_crop's 12, or 24 with mirror images


def evaluation(splits, crops: int = 1, snapshots: str = "all") -> ml_collections.ConfigDict:
  """One named evaluation of config.evals."""
  return ml_collections.ConfigDict({"splits": tuple(splits), "crops": crops, "snapshots": snapshots})


def _data_section() -> ml_collections.ConfigDict:
  """Data: the shards, the training crops, the tf.data pipeline."""
  section = ml_collections.ConfigDict()
  section.dir = placeholder(str)      # shard directory with manifest.json (data_prep's output)
  section.num_classes = placeholder(int)   # None: from the data's manifest (set it to insist on a value)
  section.label_offset = placeholder(int)  # None: from the manifest (needed for shards that have none)
  section.image_size = 224
  section.crop = "inception"          # 'full' phases' crop: "inception" (TF's sample_distorted_bounding_box:
                                      # area in `scale`, aspect w/h in `ratio`) or "intel_caffe" (Intel Caffe's
                                      # random_aspect_ratio: area in `scale`, r in [ratio[0], 1/ratio[0]],
                                      # h = √A·r, w = √A/r, swapped with probability ½)
  section.scale = (0.08, 1.0)         # random-resized-crop area fraction ('full' phases)
  section.ratio = (3 / 4, 4 / 3)      # and aspect ratio (intel_caffe: ratio[0] is aspect_ratio_change)
  section.resize_method = "bilinear"  # every crop's resize to image_size ("bicubic": Caffe's CUBIC; the
                                      # multi-crop views are always bilinear)
  section.collapse_crop_fraction = 0.875  # 'collapse' phases: fixed-scale crop + flip, no scale/aspect jitter
  section.eval_crop_fraction = 0.875  # resize the shorter side to image_size / 0.875, center-crop
  section.flip = True
  section.shuffle_buffer = 10_000
  section.interleave_files = 8
  section.threads = 0                 # tf.data private thread pool (0: one per 16 cores of the rank)
  section.map_parallelism = 0         # images decoded in parallel (0: the pool size)
  section.prefetch_batches = 2
  section.record_sharding_fallback = True  # fewer shard files than ranks: every rank reads every file and
                                           # keeps every N-th record (False: refuse to start)
  section.cache_in_memory = False     # keep this rank's serialized records in RAM after epoch 1
  section.skip_corrupt = False        # True: skip corrupt records (logged) instead of failing
  return section


def _model_section() -> ml_collections.ConfigDict:
  """Model: the architecture and its initialisation."""
  section = ml_collections.ConfigDict()
  section.name = "resnet50"          # python -m tfscale.models --list
  section.bn_momentum = 0.9          # Caffe's "moving average fraction"
  section.bn_epsilon = 1e-5
  section.zero_gamma = "all"         # which blocks' last BN starts at γ = 0: "all" (Goyal et al.),
                                     # "stage_last" (each stage's last block) or "none"
  section.conv_init = "he_normal"    # or "caffe_msra" (the seed authors' MSRA fillers; models/resnet.py)
  section.width_multipliers = placeholder(tuple)  # per stage, e.g. (2, 2, 2, 2): see models/resnet.py
  section.renorm = False             # batch renormalization, clipping ramped open over renorm_ramp_epochs
  section.renorm_rmax = 3.0
  section.renorm_dmax = 5.0
  section.renorm_momentum = 0.99
  section.renorm_ramp_epochs = (5.0, 40.0)
  section.dtype = "float32"          # or "mixed_bfloat16"
  return section


def _optim_section() -> ml_collections.ConfigDict:
  """Optimizer: momentum SGD or LARS; learning rates come from the plan."""
  section = ml_collections.ConfigDict()
  section.name = "sgd"               # "sgd" (momentum) or "lars" (the same update, layer-wise adapted)
  section.momentum = 0.9
  section.lars_eta = 0.001           # LARS trust coefficient η
  section.decay_biases = False       # True: weight decay on biases too, as Caffe's decay_mult 1 does
  section.decay_batch_norm = False   # True: weight decay on BN's γ/β too, as Intel Caffe's MKLDNN engine does
                                     # (it merges Scale into BatchNorm, losing Scale's decay_mult 0)
  section.lr_scale = 1.0             # multiplies every LR of the plan (LR sweeps of a whole recipe)
  section.label_smoothing = 0.0
  return section


def _train_section() -> ml_collections.ConfigDict:
  """Train: batch, threads, validation and checkpoint cadence, elastic runs."""
  section = ml_collections.ConfigDict()
  section.batch_per_rank = 32
  section.reference_global_batch = placeholder(int)  # the global batch the recipe was published at (LRs
                                                     # scale linearly from it at any other size; the trainer says so)
  section.intra_op_threads = 0       # 0: the cores available to each rank
  section.inter_op_threads = 0       # 0: 2 (overlaps small independent ops; docs/BENCHMARKS.md)
  section.validate_every_epochs = 4
  section.checkpoint_every_epochs = 1
  section.checkpoint_every_steps = 0  # > 0: checkpoint every N steps instead (resume mid-epoch)
  section.keep_checkpoints = 3
  section.deterministic = False      # True: tf.data keeps its order and TF runs deterministic kernels only
                                      # (the same numbers twice on the same machine and ranks; slower input)
  section.progress = "auto"           # rank 0's progress bar: "on", "off", or "auto" (only when the output
                                      # is the user's own terminal, never into a batch log)
  section.backend = "horovod"         # cross-rank work: "horovod" (horovodrun, mpirun, srun --mpi) or "tf"
                                      # (TensorFlow's collective ops over gRPC: mpirun, srun; no Horovod needed)
  section.gradient_compression = "none"  # "fp16": gradients cross the network as float16 (slow links; the cost
                                      # model's --wire=fp16 predicts the same)
  section.stop_check_every_steps = 1  # how often the ranks agree on a stop request (run_control.py)
  section.elastic = False            # Horovod elastic: horovodrun --min-np … --host-discovery-script …
  section.elastic_commit_steps = 10  # in-memory commits a shrunk or grown world rolls back to
  return section


def _eval_section() -> ml_collections.ConfigDict:
  """Eval: validation during training, and what every evaluation shares."""
  section = ml_collections.ConfigDict()
  section.split = "validation"        # validated during training and at each snapshot
  section.batch_size = 64             # images per batch per rank
  section.multicrop_shorter_sides = (256 / 224, 288 / 224)  # × image_size: the two multi-crop scales
  return section


def model_config(**fields) -> ml_collections.ConfigDict:
  """A `model` section with config_base's defaults and `fields` set (models built outside a recipe: tools,
  tests)."""
  section = _model_section()
  section.update(fields)
  return section


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = _data_section()
  config.model = _model_section()
  config.optim = _optim_section()
  # Plan section: a list of schedules.phase(...); learning rates per 256 images (scaled by global batch / 256
  # in one place, schedules.compile_plan).
  config.plan = []
  config.train = _train_section()
  config.eval = _eval_section()
  # Named evaluations that tfscale.evaluate runs (--evals=…): the splits taken together, views per image —
  # 1 (center), 12 (2 scales × 4 corners + center + whole) or 24 (+ mirrors) — and which snapshots ('all'
  # or comma-separated names) form the ensemble.
  config.evals = ml_collections.ConfigDict()
  config.evals.val = evaluation(("validation",))
  return config


def caffe_recipe_config(data_dir: str = "/local/imagenet1k", num_classes: int = 1000,
                        model: str = "resnet50") -> ml_collections.ConfigDict:
  """base_config with what the seed authors' recipes share, for a dataset and model (default ResNet-50 on
  ImageNet-1K). From their Caffe network and solver files (sara-nl/caffe, models/intel_optimized_models/
  multinode/resnet50_custom_lr/train_val.prototxt; docs/RECIPES.md lists each): BN moving-average fraction
  0.95, γ = 0 only for the last BN of each stage (the BN fillers; 1 elsewhere), MSRA initialisation (conv1
  FAN_OUT, the other 52 convolutions the default FAN_IN), weight decay on biases and on BN γ/β, plain
  momentum SGD, Intel Caffe's random-aspect-ratio crop with bicubic resizing.

  γ init and γ/β decay follow Intel Caffe's default MKLDNN engine, under which each Scale layer is merged
  into its BN in TRAIN too (net.cpp CompilationRuleRemoveScale) and the merged γ/β get the default
  ParamSpec, decay_mult 1 (net.cpp AppendParam), so the Scale layers' decay_mult 0 is lost.
  `--config.model.zero_gamma=none --config.optim.decay_batch_norm=False` is the `-engine CAFFE` reading
  (Scale γ starts at 1, decay_mult 0 holds). docs/RECIPES.md gives the source lines."""
  config = base_config()
  config.data.dir = data_dir
  config.data.num_classes = num_classes
  config.data.crop = "intel_caffe"
  config.data.resize_method = "bicubic"
  config.model.name = model
  config.model.bn_momentum = 0.95
  config.model.zero_gamma = "stage_last"
  config.model.conv_init = "caffe_msra"
  config.optim.name = "sgd"
  config.optim.decay_biases = True
  config.optim.decay_batch_norm = True  # the authors' engine, MKLDNN (docs/RECIPES.md)
  # ImageNet's two protocols: ILSVRC2014's validation set has data_prep.imagenet1k --val_blacklist's 1,762
  # images moved to `validation_blacklisted`; ILSVRC2012's is all 50,000 (both splits together).
  config.evals.ilsvrc2012 = evaluation(("validation", "validation_blacklisted"))
  return config


class ConfigError(ValueError):
  """A command line or config that cannot run; the message says why in one line."""


def chosen_evaluation(evals, name=None) -> str:
  """The evaluation `name` of config.evals, or by default `val`, or the only one (wrn_i22k's `test`)."""
  name = name or ("val" if "val" in evals or len(evals) != 1 else next(iter(evals)))
  if name not in evals:
    raise ConfigError(f"--eval={name}: the run's config.evals has {sorted(evals)}")
  return name


def check_views(crops: int):
  """Evaluation's views per image (config.evals.<name>.crops, export's --crops)."""
  if crops not in EVAL_VIEWS:
    raise ConfigError(f"crops must be one of {EVAL_VIEWS}, got {crops}")


def differences(config, base=None) -> list:
  """`key: value` lines of the fields where `config` differs from base_config() (the plan is left out: the
  trainer prints it as a table)."""
  def flat(d, prefix=""):
    for key, value in d.items():
      if isinstance(value, dict):
        yield from flat(value, f"{prefix}{key}.")
      else:
        yield f"{prefix}{key}", value
  ours = dict(flat(config.to_dict()))
  theirs = dict(flat((base or base_config()).to_dict()))
  return [f"  {key}: {value!r}" for key, value in sorted(ours.items())
          if key != "plan" and (key not in theirs or theirs[key] != value)]


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

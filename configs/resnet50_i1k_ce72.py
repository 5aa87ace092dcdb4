r"""ResNet-50 on ImageNet-1K in 72 epochs: the seed authors' Caffe solver chain, re-warmups and a collapse.

  # 64 nodes × 2 ranks × 32 images = global batch 4,096 (hosts: one "nodeNNN slots=2" line per node)
  horovodrun -np 128 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k_ce72.py --workdir=/pfs/runs/ce72 --config.data.dir=/local/i1k
  horovodrun -np 128 --hostfile hosts python -m tfscale.evaluate --workdir=/pfs/runs/ce72

Target: 76.3 % top-1 / 93.2 % top-5 for the final (collapse) model — the authors' README for this chain
(github.com/sara-nl/caffe, models/intel_optimized_models/multinode/resnet50_custom_lr/README.md; its log
shows 0.762781 / 0.931862), ≈ 240 min on 64 Xeon Platinum 8160 nodes at 6,303 images/s. That README calls
the chain "a reduced version compared to the one in the paper … hence the slightly lower accuracy": the
paper's 77.5 % Collapsed-Ensemble figure (arXiv 1711.04291, abstract) belongs to the longer run, not to
this one, and the authors' chain evaluates no ensemble. tfscale snapshots the end of cyc1, cyc2, cyc3 and
the collapse (the solvers' own `snapshot:` points) and `tfscale.evaluate` reports their ensemble beside
each member — a snapshot ensemble with one collapsed member, not the Collapsed Ensemble (variant `ce`);
what either reaches on ImageNet is not measured.

The plan is the chain as Caffe executes it (sara-nl/caffe commit c31f1191, solver_init, solver_cyc1-3,
solver_collapse; LRs absolute at 4,096): five solvers, each a fresh `caffe train --weights=…` whose
iteration count, warmup and poly curve start at 0 and whose momentum history starts empty:

  solver     iters  LR (Caffe's GetLearningRate)                                       wd      augmentation
  init       7,800  warmup 0.1 → 1.6 over 1,560 it, then 1.6·(1 − it/18,720): 1.467 → 0.933   5e-5   full
  cyc1       3,750  1.02·(1 − it/7,500)²: 1.02 → 0.255                                 5e-5   full   snapshot
  cyc2       4,750  warmup 0.255 → 0.764 over 1,000 it, then 0.764·(1 − it/7,500)²: 0.574 → 0.103   snapshot
  cyc3       4,750  warmup 0.19 → 0.572 over 1,000 it, then 0.572·(1 − it/7,500)²: 0.430 → 0.077    snapshot
  collapse   1,560  0.143·(1 − it/1,560)²                                              2e-4   noaug  snapshot

22,610 iterations = 72.3 epochs of 1,281,167 images (the solvers' comments count 312 iterations per epoch).
The LR jumps at solver boundaries (0.933 → 1.02, 0.103 → 0.19, 0.077 → 0.143) and the velocity restarts
from zero at each. Momentum 0.9, BN moving-average fraction 0.95, γ = 0 for each stage's last BN (the BN
fillers of train_val.prototxt at c31f1191) and 1 elsewhere, MSRA init (Gaussian σ = √(2/n); conv1 FAN_OUT,
the other 52 convolutions the default FAN_IN), weight decay on weights, biases and BN γ/β (Intel Caffe's
default MKLDNN engine merges each Scale layer into its BN and drops the Scale's decay_mult 0), Intel Caffe's
random-aspect-ratio crop (config_base.caffe_recipe_config; docs/RECIPES.md gives each source line). At
another global batch each solver keeps its length in images and its LRs scale linearly (the trainer warns).

Variant `ce` (--config=configs/resnet50_i1k_ce72.py:ce) is the Collapsed Ensemble the README describes
("At the end of each cycle a final collapse can be performed, and the resulting models form a collapsed
ensemble"): the same chain with a collapse branched off the end of cyc1 and of cyc2 — each a 1,560-iteration
solver_collapse run from that cycle's snapshot whose result the chain does not go on from (cyc2 and cyc3
start from the cycles' snapshots, as their --weights= say) — and the last collapse as above. Its members
are the three collapses only; `cycle_snapshots` evaluates the same run's cycle ends for comparison. Main
line 22,610 iterations + branches 3,120 = 25,730 (82.3 epochs of 1,281,167 images; the plan table's
82.47 counts its 312-step epochs). The early collapses' LR is ours
(docs/RECIPES.md): the cycle's base_lr / 4, the rule the authors' last collapse follows.

Variant `smooth` (--config=configs/resnet50_i1k_ce72.py:smooth) is the chain's shape as one continuous
plan (`schedules.collapse_cycles`: poly restarted after each warmup, no jumps, no momentum resets, 72
epochs); it is not what the authors ran.
"""
from tfscale.config_base import caffe_recipe_config, evaluation
from tfscale.schedules import caffe_solver, collapse_cycles

GLOBAL_BATCH = 4096  # 64 nodes × 2 ranks × 32


def caffe_chain():
  """The five solver files' fields, as written in them (sara-nl/caffe c31f1191, resnet50_custom_lr/)."""
  wd, batch = 5e-5, GLOBAL_BATCH
  return [
      caffe_solver("init", base_lr=1.6, lr_policy="poly_cyc", power=1, max_iter=7800, lr_iter=18720,
                   warmup_iter=1560, warmup_start_lr=0.1, weight_decay=wd, global_batch=batch),
      caffe_solver("cyc1", base_lr=1.02, lr_policy="poly_cyc", power=2, max_iter=3750, lr_iter=7500,
                   weight_decay=wd, global_batch=batch, snapshot=True),
      caffe_solver("cyc2", base_lr=0.764, lr_policy="poly_cyc", power=2, max_iter=4750, lr_iter=7500,
                   warmup_iter=1000, warmup_start_lr=0.255, weight_decay=wd, global_batch=batch, snapshot=True),
      caffe_solver("cyc3", base_lr=0.572, lr_policy="poly_cyc", power=2, max_iter=4750, lr_iter=7500,
                   warmup_iter=1000, warmup_start_lr=0.19, weight_decay=wd, global_batch=batch, snapshot=True),
      caffe_solver("collapse", base_lr=0.143, lr_policy="poly", power=2, max_iter=1560, weight_decay=2e-4,
                   global_batch=batch, augment="collapse", snapshot=True),
  ]


def collapsed_ensemble_chain():
  """The chain with a collapse branched off the end of cyc1 and of cyc2 (the README: "At the end of each
  cycle a final collapse can be performed, and the resulting models form a collapsed ensemble"): each is
  solver_collapse.prototxt started from that cycle's snapshot, at base_lr = the cycle's base_lr / 4 —
  (ours): the files give the LR of the last collapse only, 0.143 = cyc3's 0.572 / 4, and we apply that
  rule to cyc1 (1.02 / 4 = 0.255) and cyc2 (0.764 / 4 = 0.191). cyc2 and cyc3 still start from cyc1's and
  cyc2's snapshots, as their `--weights=` say; the last collapse ends the chain as before."""
  init, cyc1, cyc2, cyc3, last = caffe_chain()
  def branch(name, cycle):
    return caffe_solver(name, base_lr=cycle["caffe"]["base_lr"] * GLOBAL_BATCH / 256 / 4, lr_policy="poly", power=2,
                        max_iter=1560, weight_decay=2e-4, global_batch=GLOBAL_BATCH, augment="collapse",
                        snapshot=True, branch=True)
  return [init, cyc1, branch("collapse1", cyc1), cyc2, branch("collapse2", cyc2), cyc3, last]


# The `smooth` variant's shape in epochs, LRs per 256 images (the solvers' absolute values × 256 / 4096);
# wrn_places365.py runs it with branched collapses.
SMOOTH = dict(peak_lr=0.1, warmup_start_lr=0.1 / 16, warmup_epochs=5, decay_epochs=20, decay_horizon_epochs=55,
              cycles=3, cycle_epochs=12, cycle_horizon_epochs=24, rewarmup_epochs=3, rewarmup_fraction=0.75,
              final_collapse_epochs=5, weight_decay=5e-5, collapse_weight_decay=2e-4)


def get_config(variant: str = ""):
  config = caffe_recipe_config()
  config.train.reference_global_batch = GLOBAL_BATCH
  if not variant:
    config.plan = caffe_chain()
  elif variant == "ce":
    config.plan = collapsed_ensemble_chain()
    members = "collapse1,collapse2,collapse"  # only collapsed models
    config.evals.val = evaluation(("validation",), snapshots=members)
    config.evals.ilsvrc2012 = evaluation(("validation", "validation_blacklisted"), snapshots=members)
    # The same run's cycle ends averaged: the snapshot ensemble (Huang et al.) the Collapsed Ensemble beats.
    config.evals.cycle_snapshots = evaluation(("validation",), snapshots="cyc1,cyc2,cyc3")
  elif variant == "smooth":
    config.plan = collapse_cycles(**SMOOTH)
  else:
    raise ValueError(f"unknown variant {variant!r} (known: ce, smooth)")
  return config

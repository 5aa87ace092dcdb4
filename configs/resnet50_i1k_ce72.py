r"""ResNet-50 on ImageNet-1K in 72 epochs with three re-warmup cycles and a collapse: the Collapsed Ensemble.

  # 64 nodes × 2 ranks × 32 images = global batch 4,096 (hosts: one "nodeNNN slots=2" line per node)
  horovodrun -np 128 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k_ce72.py --workdir=/pfs/runs/ce72 --config.data.dir=/local/i1k
  horovodrun -np 128 --hostfile hosts python -m tfscale.evaluate --workdir=/pfs/runs/ce72

Target (Codreanu, Podareanu & Saletore, arXiv 1711.04291): 76.3 % top-1 / 93.2 % top-5 for the final
single model (the authors' log: 0.7628 / 0.9319) and 77.5 % top-1 for the Collapsed Ensemble; ≈ 4 h on
64 Skylake nodes at 6,303 images/s.

The plan is the authors' Caffe solver chain for this run (github.com/sara-nl/caffe,
models/intel_optimized_models/multinode/resnet50_custom_lr/: solver_init, solver_cyc1-3, solver_collapse),
in absolute LRs at global batch 4,096:
  warmup   5 ep  0.1 → 1.6 linear
  decay   20 ep  poly-1 over a 55-epoch horizon, 1.6 → 1.018
  cycle1  12 ep  poly-2 over a 24-epoch horizon, 1.02 → 0.255               snapshot
  cycle2   3 ep  re-warmup 0.255 → 0.764, then 12 ep poly-2, → 0.19        snapshot
  cycle3   3 ep  re-warmup 0.19 → 0.572, then 12 ep poly-2, → 0.143        snapshot
  collapse 5 ep  poly-2 0.143 → 0, weight decay 5e-5 → 2e-4, scale/aspect augmentation off   snapshot
momentum 0.9, BN moving-average fraction 0.95, no label smoothing, weight decay off BN parameters and biases;
plain momentum SGD (the solvers never enable LARS at this batch size).
"""
from tfscale.config_base import seed_authors_config
from tfscale.schedules import collapse_cycles

GLOBAL_BATCH = 4096  # 64 nodes × 2 ranks × 32


def get_config():
  config = seed_authors_config()
  config.train.reference_global_batch = GLOBAL_BATCH
  # LRs per 256 images: the solvers' absolute values × 256 / 4096.
  config.plan = collapse_cycles(
      peak_lr=0.1, warmup_start_lr=0.1 / 16, warmup_epochs=5, decay_epochs=20, decay_horizon_epochs=55,
      cycles=3, cycle_epochs=12, cycle_horizon_epochs=24, rewarmup_epochs=3, rewarmup_fraction=0.75,
      final_collapse_epochs=5, weight_decay=5e-5, collapse_weight_decay=2e-4)
  config.eval.crops = 1
  return config

r"""ResNet-50 on ImageNet-1K in 37 epochs: warmup, a short poly decay and one collapse.

  # 64 nodes × 2 ranks × 32 = global batch 4,096
  horovodrun -np 128 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k_fast.py --workdir=/pfs/runs/r50_fast --config.data.dir=/local/i1k

Target: 74 % top-1 in 37 epochs (the figure the project's brief attributes to the seed paper, arXiv
1711.04291; its exact schedule is not in a source we could read). The plan is ours: the 72-epoch recipe's
smooth shape (configs/resnet50_i1k_ce72.py:smooth) without the re-warmup cycles: warmup 5 epochs to 1.6 (absolute, at 4,096),
poly-1 for 20 epochs over a 55-epoch horizon (to ≈ 1.02, as in the 72-epoch run), a 7-epoch poly-2 over
a 14-epoch horizon, then the 5-epoch collapse (augmentation off, weight decay ×4).
"""
from tfscale.config_base import caffe_recipe_config
from tfscale.schedules import collapse_cycles


def get_config():
  config = caffe_recipe_config()
  config.train.reference_global_batch = 4096
  config.plan = collapse_cycles(
      peak_lr=0.1, warmup_start_lr=0.1 / 16, warmup_epochs=5, decay_epochs=20, decay_horizon_epochs=55,
      cycles=1, cycle_epochs=7, cycle_horizon_epochs=14, rewarmup_epochs=0, rewarmup_fraction=1.0,
      final_collapse_epochs=5, weight_decay=5e-5, collapse_weight_decay=2e-4)
  return config

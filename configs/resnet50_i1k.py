r"""ResNet-50 on ImageNet-1K, 90 epochs: warmup and one polynomial decay (the baseline the seeds improve on).

  # 64 nodes × 2 ranks × 32 = global batch 4,096
  horovodrun -np 128 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k.py --workdir=/pfs/runs/r50_90 --config.data.dir=/local/i1k
  # the authors' 448-node run: 448 nodes × 2 ranks × 16 = 14,336, 85 epochs + a 5-epoch collapse
  horovodrun -np 896 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k.py:448n --workdir=/pfs/runs/r50_448n --config.data.dir=/local/i1k

Targets: 75.81 % top-1 for the 90-epoch run (the figure the project's brief attributes to the seed paper,
arXiv 1711.04291; we have not found it in a source we could read). Variant 448n is the authors' published
solver pair (github.com/sara-nl/caffe, models/intel_optimized_models/multinode/resnet50_448nodes/):
75.6 % / 92.7 % after 85 epochs (≈ 60 min), 76.1 % / 93.2 % after the collapse (≈ 5 min more); their log
shows 0.7615 / 0.9318.

Plan, absolute LRs: warmup 5 epochs from 0.1 to base (1.6 at 4,096; 4.8 at 14,336), then poly-1 to 0 at
epoch 90; the 448n variant stops the poly at epoch 85 and collapses for 5 epochs (poly-2 from 0.254,
weight decay 5e-5 → 1e-4, scale/aspect augmentation off). Momentum 0.9, BN moving-average fraction 0.95.
"""
from tfscale.config_base import seed_authors_config
from tfscale.schedules import phase


def get_config(variant: str = ""):
  config = seed_authors_config()
  wd = 5e-5
  if not variant:
    config.train.reference_global_batch = 4096
    config.plan = [  # LRs per 256 images: 1.6 × 256 / 4096 = 0.1
        phase("warmup", 5, "warmup", lr_start=0.1 / 16, lr_end=0.1, weight_decay=wd),
        phase("decay", 85, "poly", lr_end=0.0, lr_power=1, weight_decay=wd, snapshot=True),
    ]
  elif variant == "448n":
    config.train.batch_per_rank = 16
    config.train.reference_global_batch = 14336
    per_256 = 256 / 14336
    config.plan = [
        phase("warmup", 5, "warmup", lr_start=0.1 * per_256, lr_end=4.8 * per_256, weight_decay=wd),
        # Caffe's poly counts iterations from 0 (warmup included) to max_iter = 90 epochs, so after the
        # warmup it restarts at 4.8·(1 − 5/90); training stops at epoch 85 (LR ≈ 0.27).
        phase("decay", 80, "poly", lr_start=4.8 * (1 - 5 / 90) * per_256, lr_end=0.0, lr_power=1,
              lr_horizon_epochs=85, weight_decay=wd, snapshot=True),
        phase("collapse", 5, "poly", lr_start=0.254 * per_256, lr_end=0.0, lr_power=2, weight_decay=2 * wd,
              augment="collapse", snapshot=True),
    ]
  else:
    raise ValueError(f"unknown variant {variant!r} (known: 448n)")
  return config

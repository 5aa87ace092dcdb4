r"""ResNet-50 on ImageNet-1K with LARS at global batch 8K, 16K or 32K (You, Gitman & Ginsburg; You et al.).

  # 8K: 128 nodes × 2 ranks × 32;  16K: 256 × 2 × 32;  32K: 512 × 2 × 32
  horovodrun -np 256 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k_lars.py:8k --workdir=/pfs/runs/lars8k --config.data.dir=/local/i1k
  horovodrun -np 1024 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k_lars.py:32k --workdir=/pfs/runs/lars32k --config.data.dir=/local/i1k

Target: accuracy of the batch-256/1K baselines at 32K ("Resnet-50 to a batch size of 32K without loss in
accuracy", arXiv 1708.03888; 90 epochs in 20 minutes on 2,048 KNLs, arXiv 1709.05011). The papers'
per-batch ResNet-50 tables are not in a source we could read, so these are starting points, not
reproduced recipes: the plan is theirs (warmup 5 epochs, poly power 2, 90 epochs, momentum 0.9, η = 0.001)
and the absolute LRs are You et al.'s AlexNet-BN LARS solvers' (10 at 8K, 33 at 32K; 16K interpolated to
20), which scale sub-linearly with the batch. Weight decay sits inside LARS's trust ratio.
"""
from tfscale.config_base import base_config
from tfscale.schedules import phase

PEAK_LR = {"8k": (8192, 10.0), "16k": (16384, 20.0), "32k": (32768, 33.0)}  # global batch, absolute LR


def get_config(variant: str = "8k"):
  if variant not in PEAK_LR:
    raise ValueError(f"unknown variant {variant!r} (known: {', '.join(PEAK_LR)})")
  global_batch, peak = PEAK_LR[variant]
  config = base_config()
  config.data.dir = "/local/imagenet1k"
  config.data.num_classes = 1000
  config.model.name = "resnet50"
  config.optim.name = "lars"
  config.optim.lars_eta = 0.001
  config.train.batch_per_rank = 32
  config.train.reference_global_batch = global_batch
  per_256 = peak * 256 / global_batch
  config.plan = [
      phase("warmup", 5, "warmup", lr_start=0.0, lr_end=per_256, weight_decay=5e-5),
      phase("decay", 85, "poly", lr_end=0.0, lr_power=2, weight_decay=5e-5, snapshot=True),
  ]
  return config

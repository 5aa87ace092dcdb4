r"""Wide ResNet-50-2 on ImageNet-1K: the 72-epoch chain's Collapsed Ensemble (resnet50_i1k_ce72.py:ce).

  # 64 nodes × 2 ranks × 32 = global batch 4,096 (WRN-50-2 takes ≈ 2.8× ResNet-50's FLOPs per image)
  horovodrun -np 128 --hostfile hosts python -m tfscale.train \
      --config=configs/wrn50_2_i1k.py --workdir=/pfs/runs/wrn50_2 --config.data.dir=/local/i1k
  horovodrun -np 128 --hostfile hosts python -m tfscale.evaluate --workdir=/pfs/runs/wrn50_2
  # the paper's wider variants: --config.model.width_multipliers='(3,3,3,3)' or another per-stage tuple

Target: the seed paper's Wide-ResNet ImageNet-1K rows are not in a source we could read; the published
single-crop reference for this architecture is torchvision's wide_resnet50_2, 78.47 % top-1 / 94.09 %
top-5 (90-epoch step schedule, batch 256). The plan, hyper-parameters and evaluations are
resnet50_i1k_ce72.py's `ce` variant: the authors' solver chain step for step, a collapse branched off the
end of cyc1 and cyc2 (22,610 + 2 × 1,560 iterations), the three collapses the ensemble.
"""
import os

from tfscale.config_base import load_recipe


def get_config():
  config = load_recipe(os.path.join(os.path.dirname(__file__), "resnet50_i1k_ce72.py")).get_config("ce")
  config.model.name = "wrn50_2"
  return config

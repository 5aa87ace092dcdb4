r"""Wide ResNet-50-2 on Places-365 (Standard, 1.8 M images): a Collapsed Ensemble, 12-crop evaluation.

  # 64 nodes × 2 ranks × 32 = global batch 4,096
  python -m data_prep.places365 --raw_dir=/pfs/places365 --output_dir=/pfs/p365 --num_workers=32
  horovodrun -np 128 --hostfile hosts python -m tfscale.train \
      --config=configs/wrn_places365.py --workdir=/pfs/runs/wrn_p365 --config.data.dir=/local/p365
  horovodrun -np 128 --hostfile hosts python -m tfscale.evaluate --workdir=/pfs/runs/wrn_p365

Target: 12-crop top-5 error 0.125 on the Places-365 validation set (36,500 images), the figure the
project's brief attributes to the seed papers (their width factors and plan are not in a source we could
read). The plan is ours: resnet50_i1k_ce72.py's `smooth` shape in epochs of Places-365's 1.8 M images (the
authors' ImageNet solver chain is counted in ImageNet iterations, so it is not reused here), with a 5-epoch
collapse branched off the end of cycles 1 and 2 as in ce72's `ce` variant (but with the main line's
momentum carried into each branch, as everywhere in the smooth shape; ce's branches start with an empty
velocity, as Caffe's --weights does): main line 72 epochs + branches 10 = 82 epochs of images. The ensemble is the three collapses, each evaluated on 12 views per image.
"""
import os

import ml_collections

from tfscale.config_base import evaluation, load_recipe
from tfscale.schedules import collapse_cycles


def get_config():
  ce72 = load_recipe(os.path.join(os.path.dirname(__file__), "resnet50_i1k_ce72.py"))
  config = ce72.get_config("smooth")
  config.data.dir = "/local/places365"
  config.data.num_classes = 365
  config.model.name = "wrn50_2"
  config.plan = collapse_cycles(**ce72.SMOOTH, branch_collapse_epochs=5)
  # Places has no ILSVRC2012 protocol: its one evaluation.
  config.evals = ml_collections.ConfigDict(
      {"val": evaluation(("validation",), crops=12, snapshots="collapse1,collapse2,collapse")})
  return config

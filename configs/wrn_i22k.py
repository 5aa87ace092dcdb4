r"""Wide ResNet-50-2 on ImageNet-22K (all 21,841 classes of fall11_whole): 30 epochs, one cycle and a collapse.

  # 120 nodes × 2 ranks × 32 = global batch 7,680 (the seeds used 6,400–7,680: --config.train.batch_per_rank
  # or the rank count sets it; LRs scale linearly from 7,680)
  python -m data_prep.imagenet22k --raw_dir=/pfs/fall11_whole --output_dir=/pfs/i22k --num_workers=32
  horovodrun -np 240 --hostfile hosts python -m tfscale.train \
      --config=configs/wrn_i22k.py --workdir=/pfs/runs/wrn_i22k --config.data.dir=/local/i22k
  horovodrun -np 240 --hostfile hosts python -m tfscale.evaluate --workdir=/pfs/runs/wrn_i22k

Target: 36.9 % top-1 on a held-out 22K split in 24–30 epochs at global batch 6,400–7,680 (the figure and
ranges the project's brief attributes to the seed papers; their exact plan and width factors are not in a
source we could read). ImageNet-22K has no official validation split: data_prep.imagenet22k holds out a
hashed per-class fraction as split "test" (--test_fraction, default 2/9.5: the 7.5 M train / 2 M test protocol's
ratio; on fall11_whole's 14.2 M images — image-net.org's count, not checked here — it holds out ≈ 3.0 M and
trains on ≈ 11.2 M, so an epoch is ≈ 1.5× that protocol's). The 21,841-way head alone has 44.8 M parameters
(docs/BENCHMARKS.md: memory and step time). Plan, absolute LRs at 7,680: the 72-epoch recipe's shape
compressed to 30 epochs — warmup 3 epochs to 3.0 (0.1 per 256), poly-1 for 14 epochs over a 38-epoch
horizon, one 8-epoch poly-2 cycle (snapshot), a 5-epoch collapse (snapshot). With one cycle there is nothing to
branch a collapse off: the evaluation `test` reports both snapshots and their ensemble.
"""
import ml_collections

from tfscale.config_base import caffe_recipe_config, evaluation
from tfscale.schedules import collapse_cycles


def get_config():
  config = caffe_recipe_config("/local/imagenet22k", 21841, "wrn50_2")
  config.train.batch_per_rank = 32
  config.train.reference_global_batch = 7680
  config.train.validate_every_epochs = 2
  config.eval.split = "test"
  # ImageNet's evaluations (validation, ILSVRC2012) do not exist here: the held-out split is the only one.
  config.evals = ml_collections.ConfigDict({"test": evaluation(("test",))})
  config.plan = collapse_cycles(
      peak_lr=0.1, warmup_start_lr=0.1 / 30, warmup_epochs=3, decay_epochs=14, decay_horizon_epochs=38,
      cycles=1, cycle_epochs=8, cycle_horizon_epochs=16, rewarmup_epochs=0, rewarmup_fraction=1.0,
      final_collapse_epochs=5, weight_decay=5e-5, collapse_weight_decay=2e-4)
  return config

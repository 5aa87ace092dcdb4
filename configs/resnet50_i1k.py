r"""ResNet-50 on ImageNet-1K: warmup and one polynomial decay, and the authors' 448-node run with its collapse.

  # 64 nodes × 2 ranks × 32 = global batch 4,096, 90 epochs
  horovodrun -np 128 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k.py --workdir=/pfs/runs/r50_90 --config.data.dir=/local/i1k
  # the authors' 448-node run: 448 nodes × 2 ranks × 16 = 14,336
  horovodrun -np 896 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k.py:448n --workdir=/pfs/runs/r50_448n --config.data.dir=/local/i1k
  # the same, with the main line run to its end beside the branched collapse (both of the README's models)
  horovodrun -np 896 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k.py:448n_branched --workdir=/pfs/runs/r50_448n_b --config.data.dir=/local/i1k

Targets. Variant 448n reproduces the authors' solver pair (github.com/sara-nl/caffe,
models/intel_optimized_models/multinode/resnet50_448nodes/: solver.prototxt, solver_collapse.prototxt and
README.md at commit 002e2d77, train_val_noaug.prototxt at be328403, whose TRAIN batch_size 16 is its only
change from 002e2d77's 32): 76.1 % / 93.2 % top-1/top-5 after the 402-iteration collapse (README line 35,
≈ 5 min); their log shows 0.76152 / 0.931762 (README lines 37-39). The README's 75.6 % / 92.7 % (line 23,
≈ 60 min) is Part 1 run to solver.prototxt's max_iter 8,040 (line 6; README lines 12-20); the collapse
starts from that run's iteration-7,638 snapshot (README line 33; snapshot: 402, solver.prototxt line 11),
a branch. 448n runs main iterations 0-7,637 and then the collapse in sequence — what the files execute for
76.1 % — so it never trains the 8,040-iteration model behind 75.6 %; 448n_branched runs all the authors ran:
the collapse branched off at 7,638, then the main line on from its kept state (iterations 7,638-8,039, the
velocity kept, as in their one uninterrupted Part 1) to the 75.6 % model, 8,442 iterations in all (+5 %).
Neither has been run by us. The default 90-epoch run
targets 75.81 %, a figure the project's brief attributes to arXiv 1711.04291 that we have not found in a
source we could read; its plan (warmup 5 epochs from 0.1 to 1.6 absolute, then poly-1 to 0 at epoch 90, as
one continuous curve) is ours, not a solver file's.

448n as tfscale executes it (LRs absolute at 14,336; iterations of that batch, 89.37 per epoch):
  main      iterations 0-7,637: warmup 0.1 → 4.8 over 446 it, then 4.8·(1 − it/8,040) (poly counts from
            iteration 0, warmup included; the authors' main line ran on to max_iter 8,040 = 90 epochs,
            tfscale stops at 7,638, LR 0.24 there), weight decay 5e-5                        snapshot
  collapse  402 it (4.50 epochs): 0.254·(1 − it/402)², weight decay 1e-4, train_val_noaug   snapshot
The collapse is a fresh solver: the LR jumps 0.24 → 0.254 and the velocity restarts from zero
(solver_collapse.prototxt lines 4-9; docs/RECIPES.md). 448n_branched: main to 7,638 (no snapshot), the
collapse as above off the main line (snapshot), then main_rest, iterations 7,638-8,039 of the same solver:
4.8·(1 − it/8,040), 0.24 → 0.0006, weight decay 5e-5                                     snapshot
"""
from tfscale.config_base import caffe_recipe_config
from tfscale.schedules import caffe_solver, phase


def get_config(variant: str = ""):
  config = caffe_recipe_config()
  wd = 5e-5
  if not variant:
    config.train.reference_global_batch = 4096
    config.plan = [  # LRs per 256 images: 1.6 × 256 / 4096 = 0.1
        phase("warmup", 5, "warmup", lr_start=0.1 / 16, lr_end=0.1, weight_decay=wd),
        phase("decay", 85, "poly", lr_end=0.0, lr_power=1, weight_decay=wd, snapshot=True),
    ]
  elif variant in ("448n", "448n_branched"):
    batch = 14336
    config.train.batch_per_rank = 16
    config.train.reference_global_batch = batch
    main = dict(base_lr=4.8, lr_policy="poly", power=1, max_iter=8040, warmup_iter=446, warmup_start_lr=0.1,
                weight_decay=wd, global_batch=batch)  # solver.prototxt
    collapse = dict(base_lr=0.254, lr_policy="poly", power=2, max_iter=402, weight_decay=2 * wd,
                    global_batch=batch, augment="collapse", snapshot=True)  # solver_collapse.prototxt
    if variant == "448n":
      config.plan = [caffe_solver("main", stop_iter=7638, snapshot=True, **main),
                     caffe_solver("collapse", **collapse)]
    else:  # Part 1 whole, Part 2 branched off its iteration-7,638 snapshot: both README models
      config.plan = [caffe_solver("main", stop_iter=7638, **main),
                     caffe_solver("collapse", branch=True, **collapse),
                     caffe_solver("main_rest", start_iter=7638, snapshot=True, **main)]
  else:
    raise ValueError(f"unknown variant {variant!r} (known: 448n, 448n_branched)")
  return config

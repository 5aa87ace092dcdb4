r"""The digits demo: a ResNet on scikit-learn's digits, LARS, warmup + poly, re-warmup cycles, a Collapsed Ensemble.

  make demo
  # which runs, after building data/digits/tfrecords:
  horovodrun -np 2 -H localhost:2 python -m tfscale.train --config=configs/demo_digits.py --workdir=runs/demo
  python -m tfscale.evaluate --workdir=runs/demo

Expected (2-core machine, README has the measured run): every collapse ≥ 95 % top-1 on the 359 validation
digits and training ≈ 1 minute. The ensemble lands within a few images of its best member, above or below
(docs/RECIPES.md): at 98–99 % on 359 images one image is 0.28 points, so the digits cannot show the
Collapsed Ensemble's gain. `make study` (configs/digits_distorted.py, 1,617 held-out images) measures it.

The plan has the authors' shape, shrunk (docs/RECIPES.md): warmup → poly-1 → three cycles (re-warmup,
poly-2 stopped at a quarter of its start); a collapse (augmentation off, weight decay doubled, poly-2 to 0,
a snapshot) branches off the end of cycles 1 and 2 and the main line goes on from the weights before it;
the last cycle's collapse ends the main line. Main line 26 epochs + branches 6 = 32 epochs.
Variant `sequential`: the demo's plan before branches (issues 2–18; 28 epochs): cycles 1 and 2 decay
(poly-2 to 0, full augmentation, base weight decay) into snapshots, each re-warmup starts from those
weights, and one collapse ends the run.
"""
from tfscale.config_base import base_config
from tfscale.schedules import phase


def get_config(variant: str = ""):
  """variants: 'sequential' (the plan before branches: snapshot cycles, one collapse), 'tiny' and 'tiny_branched' (5 epochs, for tests:
  --config=configs/demo_digits.py:tiny), 'large_batch' (one warmup + poly-2 run at global batch 360 for
  the SGD-vs-LARS comparison)."""
  config = base_config()
  config.data.dir = "data/digits/tfrecords"
  config.data.image_size = 32
  config.data.scale = (0.5, 1.0)          # digits fill the frame: small crops lose the digit
  config.data.flip = False                # a mirrored 2 is not a 2
  config.data.shuffle_buffer = 2048
  config.data.interleave_files = 4

  config.model.name = "resnet_cifar8"
  config.model.renorm_ramp_epochs = (1.0, 10.0)

  config.optim.name = "lars"
  config.optim.lars_eta = 0.02

  wd, collapse_wd = 5e-4, 1e-3

  def collapse(name, epochs, branch):
    return phase(name, epochs, "poly", lr_end=0.0, lr_power=2, weight_decay=collapse_wd, augment="collapse",
                 snapshot=True, branch=branch)

  def cycle(k, epochs):  # poly-2 over twice its length: it stops at a quarter of where it started
    return phase(f"cycle{k}", epochs, "poly", lr_end=0.0, lr_power=2, lr_horizon_epochs=2 * epochs, weight_decay=wd)

  config.plan = [
      phase("warmup", 2, "warmup", lr_start=0.0, lr_end=8.0, weight_decay=wd),
      phase("train", 8, "poly", lr_end=0.4, lr_power=1, weight_decay=wd),
      cycle(1, 3), collapse("collapse1", 3, branch=True),
      phase("rewarmup2", 2, "warmup", lr_end=4.0, weight_decay=wd), cycle(2, 3), collapse("collapse2", 3, branch=True),
      phase("rewarmup3", 2, "warmup", lr_end=4.0, weight_decay=wd), cycle(3, 3), collapse("collapse", 3, branch=False),
  ]
  config.train.validate_every_epochs = 4
  config.train.checkpoint_every_epochs = 2
  config.train.keep_checkpoints = 2
  config.eval.batch_size = 128

  if variant == "sequential":
    config.plan = [
        phase("warmup", 2, "warmup", lr_start=0.0, lr_end=8.0, weight_decay=wd),
        phase("train", 10, "poly", lr_end=0.4, lr_power=1, weight_decay=wd),
        phase("cycle1", 4, "poly", lr_end=0.0, lr_power=2, weight_decay=wd, snapshot=True),
        phase("rewarmup2", 2, "warmup", lr_end=4.0, weight_decay=wd),
        phase("cycle2", 4, "poly", lr_end=0.0, lr_power=2, weight_decay=wd, snapshot=True),
        phase("rewarmup3", 2, "warmup", lr_end=4.0, weight_decay=wd),
        collapse("collapse", 4, branch=False),
    ]
  elif variant in ("tiny", "tiny_branched"):
    # 5 epochs, 2 snapshots, for tests: cycle 1's end and the collapse (`tiny_branched`: a collapse
    # branched off cycle 1's end instead, and the main line's own collapse).
    config.plan = [
        phase("warmup", 1, "warmup", lr_start=0.0, lr_end=8.0, weight_decay=wd),
        phase("cycle1", 1, "poly", lr_end=0.0, lr_power=2, weight_decay=wd, snapshot=True),
        phase("rewarmup2", 1, "warmup", lr_end=4.0, weight_decay=wd),
        collapse("collapse", 2, branch=False),
    ] if variant == "tiny" else [
        phase("warmup", 1, "warmup", lr_start=0.0, lr_end=8.0, weight_decay=wd),
        cycle(1, 1), collapse("collapse1", 1, branch=True), collapse("collapse", 2, branch=False),
    ]
    config.train.validate_every_epochs = 1
    config.train.checkpoint_every_epochs = 1
  elif variant == "large_batch":
    # SGD vs LARS at a global batch of ≈ ¼ of the 1,438 training digits (2 ranks × 180 = 360, 3 steps per
    # epoch): scripts/sgd_vs_lars.sh sweeps the LR of each under the same linear scaling rule.
    config.train.batch_per_rank = 180
    config.train.reference_global_batch = 360
    config.plan = [
        phase("warmup", 3, "warmup", lr_start=0.0, lr_end=1.0, weight_decay=wd),
        phase("decay", 37, "poly", lr_end=0.0, lr_power=2, weight_decay=wd, snapshot=True),
    ]
    config.train.validate_every_epochs = 10
    config.train.checkpoint_every_epochs = 40
  elif variant:
    raise ValueError(f"unknown variant {variant!r} (known: sequential, tiny, tiny_branched, large_batch)")
  return config

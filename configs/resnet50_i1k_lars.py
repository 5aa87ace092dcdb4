r"""ResNet-50 on ImageNet-1K with LARS at global batch 8K, 16K or 32K: TensorFlow's TPU reference schedule.

  # 8K: 128 nodes × 2 ranks × 32;  16K: 256 × 2 × 32;  32K: 512 × 2 × 32
  horovodrun -np 256 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k_lars.py:8k --workdir=/pfs/runs/lars8k --config.data.dir=/local/i1k
  horovodrun -np 1024 --hostfile hosts python -m tfscale.train \
      --config=configs/resnet50_i1k_lars.py:32k --workdir=/pfs/runs/lars32k --config.data.dir=/local/i1k

Target: the accuracy of small-batch training at 32K ("Resnet-50 to a batch size of 32K without loss in
accuracy", arXiv 1708.03888, abstract; "the 90-epoch ImageNet training with ResNet-50", arXiv 1709.05011,
abstract). You et al.'s ResNet-50 solver files are not public: the LARS solvers in the seed authors' Caffe
fork (sara-nl/caffe alexnet_bn_32nodes/64nodes) are AlexNet-BN's and are not used here. The schedule is
instead the one the TensorFlow TPU ResNet-50 reference uses with LARS (github.com/tensorflow/tpu,
models/official/resnet/lars_util.py at commit 61dbdbc1, `poly_rate_schedule`; resnet_main.py flag defaults):
  peak LR by batch, not scaled linearly: < 16K → 10, < 32K → 25, < 64K → 32 (absolute);
  warmup epochs by batch: 5, 5, 14, linear from 0;
  then poly power 2 down to 1e-4 (tf.train.polynomial_decay's default end LR) at the last step;
  momentum 0.9, weight decay 1e-4, η 0.001, BN parameters and biases neither adapted nor decayed, no
  label smoothing.
90 epochs is 1709.05011's length (the reference's train_steps is a flag). Not step-exact: the reference's
warmup is linear in fractional epochs and its poly horizon one step longer. Not reproduced by us.
"""
from tfscale.config_base import base_config
from tfscale.schedules import phase

# variant → (global batch, absolute peak LR, warmup epochs): lars_util.py's table at 61dbdbc1.
SCHEDULE = {"8k": (8192, 10.0, 5), "16k": (16384, 25.0, 5), "32k": (32768, 32.0, 14)}
EPOCHS = 90


def get_config(variant: str = "8k"):
  if variant not in SCHEDULE:
    raise ValueError(f"unknown variant {variant!r} (known: {', '.join(SCHEDULE)})")
  global_batch, peak, warmup_epochs = SCHEDULE[variant]
  config = base_config()
  config.data.dir = "/local/imagenet1k"
  config.data.num_classes = 1000
  config.model.name = "resnet50"
  config.optim.name = "lars"
  config.optim.lars_eta = 0.001
  config.train.batch_per_rank = 32
  config.train.reference_global_batch = global_batch
  per_256 = 256 / global_batch  # plan LRs are per 256 images
  wd = 1e-4
  config.plan = [
      phase("warmup", warmup_epochs, "warmup", lr_start=0.0, lr_end=peak * per_256, weight_decay=wd),
      phase("decay", EPOCHS - warmup_epochs, "poly", lr_end=1e-4 * per_256, lr_power=2, weight_decay=wd,
            snapshot=True),
  ]
  return config

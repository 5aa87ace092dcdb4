"""tfscale's side of `python -m tfscale_tools.bench_peer`: configs/resnet50_i1k_lars.py cut to one epoch
(`bench_peer_config.py:N`: N epochs).

The step (model, LARS, input pipeline, threads) is the recipe's; only the plan is shortened, which does not
change the speed. The bench sets data.dir, the dtype and the batch with --config.* overrides.
"""
import importlib.util
import os

from tfscale.schedules import phase

RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "resnet50_i1k_lars.py")


def get_config(epochs: str = "1"):
  spec = importlib.util.spec_from_file_location("resnet50_i1k_lars", RECIPE)
  recipe = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(recipe)
  config = recipe.get_config()
  warmup = config.plan[0]
  config.plan = [phase("warmup", int(epochs), "warmup", lr_start=0.0, lr_end=warmup["lr_end"],
                       weight_decay=warmup["weight_decay"])]
  config.train.checkpoint_every_epochs = 0  # nothing to resume
  return config

"""The benchmarks time the trainer's own compiled step, built by the function tfscale.train uses."""
import json
import subprocess
import sys

from conftest import REPO, run_module

TINY = ["--config=configs/demo_digits.py", "--config.data.num_classes=10", "--models=resnet_cifar8",
        "--batches=8", "--dtypes=float32", "--steps=2", "--rounds=1"]

# In a process of its own (absl's flags are global): bench's step, with the trainer's compile_model counted.
STEP_SCRIPT = r'''
import sys
import tfscale
from absl import flags
from tfscale import distributed, trainer
from tfscale_tools import bench

flags.FLAGS(["bench", *sys.argv[1:]])
distributed.start(flags.FLAGS.config.train)
calls = []
compile_model = trainer.compile_model
trainer.compile_model = lambda *args: calls.append(args) or compile_model(*args)
model, dataset = bench.tfscale_model("resnet_cifar8", 8, "float32")
config = bench.step_config("resnet_cifar8", 8, "float32")
plan = trainer.create_plan(config, bench.PLAN_STEPS_PER_EPOCH * trainer.global_batch_size(config))
built = trainer.create_optimizer(config, plan).get_config()
used = model.optimizer.get_config()
assert len(calls) == 1 and calls[0][0] == config, calls
assert {k: v for k, v in used.items() if k != "name"} == {k: v for k, v in built.items() if k != "name"}, (used, built)
assert [m.name for m in model.compiled_metrics._user_metrics] == ["top1", "top5"]
images, labels = next(iter(dataset))
assert images.shape == (8, 32, 32, 3) and labels.shape == (8,)
model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
print("adapt", model.optimizer.adapt, "steps", int(model.optimizer.iterations.numpy()))
'''


def test_bench_step_is_the_trainers_compiled_step_and_takes_config_overrides():
  for override, adapt in (("--config.optim.name=lars", True), ("--config.optim.name=sgd", False)):
    run = subprocess.run([sys.executable, "-c", STEP_SCRIPT, *TINY, override], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and f"adapt {adapt} steps 2" in run.stdout, run.stderr[-3000:]


def test_bench_model_and_knobs_run_the_recipe_they_are_given(tmp_path):
  result = tmp_path / "rows.json"
  table = run_module("tfscale_tools.bench", "model", *TINY, "--nobare", "--nogemm_ceiling",
                     f"--result_file={result}").stdout
  assert "| resnet_cifar8 | float32 | 8 |" in table and "32² uint8 input, 10 classes" in table
  rows = json.loads(result.read_text())
  assert [(r["model"], r["batch"]) for r in rows] == [("resnet_cifar8", 8)] and rows[0]["images_per_second"] > 0
  # Every knob child is handed the same recipe and overrides; a child that lost them would build ResNet-50
  # at 224² for 1000 classes and report no resnet_cifar8 row ("failed").
  knobs = run_module("tfscale_tools.bench", "knobs", "--knobs=sgd", *TINY).stdout
  sgd_row = next(line for line in knobs.splitlines() if line.startswith("| tfscale's momentum SGD"))
  assert "failed" not in sgd_row and "×" in sgd_row
  missing = run_module("tfscale_tools.bench", "model", *TINY[:1], *TINY[2:], "--nobare", "--nogemm_ceiling",
                       check=False)
  assert missing.returncode != 0 and "give --config.data.num_classes=N" in missing.stderr

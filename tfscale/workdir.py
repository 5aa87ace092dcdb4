"""The layout of a run's workdir, owned here: every file a run or its evaluation reads or writes.

  config.json          the resolved config, and under "software" the versions it runs on (rank 0, at start-up)
  checkpoints/         model + optimizer state (tf.train.CheckpointManager), for resuming
  main_line/           the main line's model + optimizer state kept while a branch trains (state.*, a
                       tf.train.Checkpoint, and state.json naming the step it was kept at)
  plan.json            the compiled phase plan: each phase's steps, main line or branch, and the budget
  snapshots/<name>/    model.json + weights.h5 + snapshot.json: one Collapsed-Ensemble member each
  snapshots.json       the index of snapshots, in the order they were taken
  metrics.jsonl        one JSON row per epoch (appended by rank 0)
  mllog.txt            MLPerf-style :::MLLOG events (tfscale/mlperf_log.py)
  run.lock             the live run's POSIX lock, naming its host and pid (tfscale/run_control.py)
  plan.png, training.png, tensorboard/
  eval.json, eval.md, eval.png   tfscale.evaluate's results
Writers are rank 0's; JSON files are replaced atomically, so a reader never sees half a file.
"""
import json
import os

CONFIG = "config.json"
SOFTWARE = "software"  # config.json's key for the versions, beside the config's sections
CHECKPOINTS = "checkpoints"
MAIN_LINE = "main_line"
# The kept state (a tf.train.Checkpoint prefix) and the file naming its step, both under MAIN_LINE.
MAIN_LINE_STATE, MAIN_LINE_INDEX = os.path.join(MAIN_LINE, "state"), os.path.join(MAIN_LINE, "state.json")
PLAN = "plan.json"
SNAPSHOTS = "snapshots"
SNAPSHOT_INDEX = "snapshots.json"
# The files of one snapshot's directory: architecture, weights, and what produced them.
SNAPSHOT_MODEL, SNAPSHOT_WEIGHTS, SNAPSHOT_INFO = "model.json", "weights.h5", "snapshot.json"
METRICS = "metrics.jsonl"
MLLOG = "mllog.txt"
RUN_LOCK = "run.lock"
TENSORBOARD = "tensorboard"
PLAN_PLOT, TRAINING_PLOT = "plan.png", "training.png"
EVAL_JSON, EVAL_MARKDOWN, EVAL_PLOT = "eval.json", "eval.md", "eval.png"


class WorkdirError(ValueError):
  """A workdir that cannot be used; the message says why in one line."""


def check_writable(workdir: str):
  """Creates the workdir and proves it is writable (cheap, before TensorFlow is even imported)."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write-probe-{os.getpid()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"workdir {workdir!r} is not writable: {e.strerror}") from None


def read_run(workdir: str, chosen: str = "all"):
  """(config, snapshot entries) of a finished or running training run; `chosen`: 'all' or comma-separated
  snapshot names or phase names (a phase's name chooses its snapshot whatever step the batch put it at)."""
  for name in (CONFIG, SNAPSHOT_INDEX):
    if not os.path.exists(path(workdir or "", name)):
      raise WorkdirError(f"{workdir!r} has no {name}: is it a tfscale.train workdir with snapshots?")
  config, snapshots = read_config(workdir), read_snapshots(workdir)
  if chosen != "all":
    wanted = chosen.split(",")
    unknown = sorted(set(wanted) - {s["name"] for s in snapshots} - {s["phase"] for s in snapshots})
    if unknown:
      raise WorkdirError(f"unknown snapshots {unknown}; {workdir} has {[s['name'] for s in snapshots]}")
    snapshots = [s for s in snapshots if s["name"] in wanted or s["phase"] in wanted]
  if not snapshots:
    raise WorkdirError(f"{workdir} has no snapshots yet")
  return config, snapshots


def path(workdir: str, name: str) -> str:
  return os.path.join(workdir, name)


def write_json(file_path: str, value):
  """Writes JSON atomically (a temporary file, then a rename)."""
  with open(file_path + ".tmp", "w") as f:
    json.dump(value, f, indent=1)
  os.replace(file_path + ".tmp", file_path)


def write_config(workdir: str, config, software: dict | None = None):
  """config.json: the resolved config and, under "software", the versions the run executes on."""
  os.makedirs(workdir, exist_ok=True)
  value = json.loads(config.to_json_best_effort(sort_keys=True))
  write_json(path(workdir, CONFIG), {**value, SOFTWARE: software} if software else value)


def read_config(workdir: str):
  """The run's config over today's base config: a run saved before a field existed reads as its default.
  Its evaluations are its own, whole (update() would merge base_config's `val` back into a recipe that
  replaced config.evals)."""
  import ml_collections
  from tfscale import config_base
  config = config_base.base_config()
  with open(path(workdir, CONFIG)) as f:
    value = json.load(f)
  value.pop(SOFTWARE, None)
  evals = value.pop("evals", None)
  config.update(value)
  if evals is not None:
    config.evals = ml_collections.ConfigDict({name: config_base.evaluation(**spec) for name, spec in evals.items()})
  return config


def read_software(workdir: str) -> dict:
  """The versions recorded by the run's start ({} for a run recorded before they were)."""
  with open(path(workdir, CONFIG)) as f:
    return json.load(f).get(SOFTWARE, {})


def write_plan(workdir: str, plan):
  """plan.json: the budget and, per phase, its steps [first, end) and whether it is a branch."""
  phases = [{"name": p["name"], "first_step": int(plan.boundaries[i]), "end_step": int(plan.boundaries[i + 1]),
             "branch": bool(p["branch"]), "snapshot": bool(p["snapshot"]), "augment": p["augment"]}
            for i, p in enumerate(plan.phases)]
  write_json(path(workdir, PLAN), {"budget": plan.budget(), "phases": phases})


def read_plan(workdir: str):
  """plan.json, or None for a run written before it existed."""
  if not os.path.exists(path(workdir, PLAN)):
    return None
  with open(path(workdir, PLAN)) as f:
    return json.load(f)


def keep_main_line(workdir: str, checkpoint, step: int, branch: str):
  """Writes `checkpoint` (model + optimizer) as the main line's state before the branch that starts at
  `step`; state.json is written last, so a state it names is complete."""
  os.makedirs(path(workdir, MAIN_LINE), exist_ok=True)
  index = path(workdir, MAIN_LINE_INDEX)
  if os.path.exists(index):
    os.remove(index)
  checkpoint.write(path(workdir, MAIN_LINE_STATE))
  write_json(index, {"step": step, "branch": branch})


def main_line_state(workdir: str, step: int) -> str:
  """The checkpoint prefix of the main line's state kept at `step` (for tf.train.Checkpoint.read)."""
  directory = path(workdir, MAIN_LINE)
  try:
    with open(path(workdir, MAIN_LINE_INDEX)) as f:
      kept = json.load(f)
  except OSError:
    kept = None
  if not kept or kept["step"] != step:
    raise WorkdirError(f"{directory} does not hold the main line's state at step {step} (it holds "
                       f"{'step ' + str(kept['step']) if kept else 'nothing'}): the branch cannot hand the main "
                       "line back; restart the run from a checkpoint before the branch")
  return path(workdir, MAIN_LINE_STATE)


def read_snapshots(workdir: str) -> list:
  """The snapshot index: [{name, path, phase, step, epoch, val_top1, val_top5}], oldest first."""
  if not os.path.exists(path(workdir, SNAPSHOT_INDEX)):
    return []
  with open(path(workdir, SNAPSHOT_INDEX)) as f:
    return json.load(f)


def snapshot_entry(phase: str, step: int, epoch: float, accuracy: dict) -> dict:
  name = f"{phase}-{step}"
  return {"name": name, "path": os.path.join(SNAPSHOTS, name), "phase": phase, "step": step, "epoch": epoch,
          "val_top1": accuracy["top1"], "val_top5": accuracy["top5"]}


def save_snapshot(workdir: str, model, entry: dict, index: list, config):
  """Writes a self-contained snapshot (architecture JSON, HDF5 weights, what produced them) and the index
  `index` (which already holds `entry`)."""
  directory = path(workdir, entry["path"])
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, SNAPSHOT_MODEL), "w") as f:
    f.write(model.to_json())
  model.save_weights(os.path.join(directory, SNAPSHOT_WEIGHTS))
  write_json(os.path.join(directory, SNAPSHOT_INFO), {**entry, "config": config.to_dict()})
  write_json(path(workdir, SNAPSHOT_INDEX), index)


def load_snapshot(workdir: str, entry: dict):
  """A snapshot as a tf_keras model: architecture from model.json, weights from weights.h5."""
  import tf_keras
  from tfscale.models import resnet  # noqa: F401  (registers tfscale's layers for model_from_json)
  directory = path(workdir, entry["path"])
  with open(os.path.join(directory, SNAPSHOT_MODEL)) as f:
    model = tf_keras.models.model_from_json(f.read())
  model.load_weights(os.path.join(directory, SNAPSHOT_WEIGHTS))
  return model


def append_metrics(workdir: str, row: dict):
  with open(path(workdir, METRICS), "a") as f:
    f.write(json.dumps(row) + "\n")


def read_metrics(workdir: str) -> list:
  """Epoch rows of metrics.jsonl; a resumed run re-trains epochs after its checkpoint, so the last row of
  each epoch wins."""
  if not os.path.exists(path(workdir, METRICS)):
    return []
  rows = {}
  with open(path(workdir, METRICS)) as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        rows[row["epoch"]] = row
  return [rows[e] for e in sorted(rows)]


def read_eval(workdir: str) -> dict:
  with open(path(workdir, EVAL_JSON)) as f:
    return json.load(f)

r"""Copy to node-local storage the shards this node's ranks will read (no TensorFlow; run once per node).

  python -m tfscale_tools.staging --src=/pfs/i1k --dst=/local/i1k --node=$NODE --nodes=$NODES --ranks_per_node=2

Ranks are assumed placed in blocks (node n runs ranks n·P … n·P+P−1, which is what `mpirun --map-by
ppr:P:node` and Slurm's block distribution do). Each rank's files follow `shard_format.files_for_rank`, the
rule the input pipeline uses, for every split the manifest lists (--splits narrows it: training and
evaluation read different ones — ImageNet's ILSVRC2012 protocol reads validation_blacklisted too). manifest.json and labels.txt are copied
too (`shard_format.metadata_files`); a shard already present with the same size is skipped, and copies land
under a temporary name and are renamed, so an interrupted staging is finished by running it again.
scripts/stage_data.sh wraps this.
"""
import os
import shutil
import sys

from absl import app, flags

from data_prep import shard_format
from tfscale import datasets

FLAGS = flags.FLAGS
flags.DEFINE_string("src", None, "Shard directory on the shared file system.")
flags.DEFINE_string("dst", None, "Node-local directory to fill.")
flags.DEFINE_integer("node", 0, "This node's index (0-based).")
flags.DEFINE_integer("nodes", 1, "Number of nodes in the job.")
flags.DEFINE_integer("ranks_per_node", 1, "Ranks per node.")
flags.DEFINE_list("splits", [], "Splits to stage (default: every split in the manifest).")


def files_for_node(info: datasets.DatasetInfo, split: str, node: int, nodes: int, ranks_per_node: int):
  files = info.split(split).files
  chosen = set()
  for rank in range(node * ranks_per_node, (node + 1) * ranks_per_node):
    chosen.update(shard_format.files_for_rank(files, rank, nodes * ranks_per_node)[0])
  return [f for f in files if f in chosen]


def copy_atomically(source: str, target: str) -> bool:
  """Copies unless a file of the same size is already there; returns whether it copied."""
  if os.path.exists(target) and os.path.getsize(target) == os.path.getsize(source):
    return False
  shutil.copyfile(source, target + ".staging")
  os.replace(target + ".staging", target)
  return True


def stage(src, dst, node, nodes, ranks_per_node, splits=()):
  """Copies the node's files of `splits` (every split when empty); returns (files copied, bytes copied,
  files already there)."""
  info = datasets.load(src)
  for split in splits:
    info.split(split)  # a one-line DataError naming the splits there are
  os.makedirs(dst, exist_ok=True)
  wanted = shard_format.metadata_files(src)
  for split in splits or sorted(info.splits):
    wanted += files_for_node(info, split, node, nodes, ranks_per_node)
  copied = copied_bytes = kept = 0
  for source in wanted:
    if copy_atomically(source, os.path.join(dst, os.path.basename(source))):
      copied, copied_bytes = copied + 1, copied_bytes + os.path.getsize(source)
    else:
      kept += 1
  return copied, copied_bytes, kept


def main(argv):
  del argv
  if not FLAGS.src or not FLAGS.dst:
    sys.exit("tfscale_tools.staging: error: --src and --dst are required")
  if not 0 <= FLAGS.node < FLAGS.nodes:
    sys.exit(f"tfscale_tools.staging: error: --node={FLAGS.node} is not in 0..{FLAGS.nodes - 1}")
  try:
    copied, size, kept = stage(FLAGS.src, FLAGS.dst, FLAGS.node, FLAGS.nodes, FLAGS.ranks_per_node, FLAGS.splits)
  except datasets.DataError as e:
    sys.exit(f"tfscale_tools.staging: error: {e}")
  print(f"node {FLAGS.node}/{FLAGS.nodes}: copied {copied} files ({size / 1e9:.2f} GB) to {FLAGS.dst}, "
        f"{kept} already there")


if __name__ == "__main__":
  app.run(main)

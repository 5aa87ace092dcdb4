r"""What a run at N nodes will cost, before you spend it: step time, images/s, scaling efficiency and
time-to-train from a measured per-node throughput and an α-β allreduce model with compute/communication
overlap. Pure arithmetic: no TensorFlow, runs on a login node.

  python -m tfscale_tools.cost_model --nodes=64,128,256,512 --system=stampede2-skx --batch_per_rank=32 --epochs=72
  python -m tfscale_tools.cost_model --nodes=16 --node_images_per_second=14.2 --ranks_per_node=1 --batch_per_rank=64 \
      --link_gbps=100 --latency_us=2 --model=wrn50_2
  python -m tfscale_tools.cost_model --calibration=netns.json --nodes=2 …   # α, β fitted to a `bench comm_worker` sweep
  python -m tfscale_tools.cost_model --published                             # the seed paper's points, predicted

The model (docs/SCALING.md states every assumption):
  compute   t_c = batch_per_rank / (node_images_per_second / ranks_per_node); backward is 2/3 of it.
  allreduce hierarchical, as MLSL and Horovod's hierarchical mode do it: within a node over shared memory
            at β_intra, then across the N nodes with recursive halving/doubling (Rabenseifner) or a ring,
            fused into buffers of `fusion_mb`; per buffer  c(N)·α + 2(N−1)/N · bytes/β,
            c(N) = 2⌈log2 N⌉ (halving/doubling) or 2(N−1) (ring).
  overlap   up to `overlap` × backward time of the allreduce hides behind the backward pass:
            t_step = t_c + max(0, t_ar − overlap · t_backward).
"""
import dataclasses
import json
import math

from absl import app, flags
from ml_collections import config_flags

from tfscale.datasets import PUBLISHED_TRAIN_IMAGES

# Trainable parameters of the models (tfscale.models; the gradient allreduced each step).
GRADIENT_FLOATS = {"resnet50": 25_557_032, "wrn50_2": 68_883_240, "resnet101": 44_549_160, "resnet152": 60_192_808}
HEAD_INPUTS = 2048  # every model above pools 2,048 features into its classifier (1,000 classes in GRADIENT_FLOATS)


def gradient_floats(model: str, num_classes: int = 1000) -> int:
  return GRADIENT_FLOATS[model] + (HEAD_INPUTS + 1) * (num_classes - 1000)
ILSVRC2012_TRAIN_IMAGES = PUBLISHED_TRAIN_IMAGES[1000]


@dataclasses.dataclass(frozen=True)
class Network:
  alpha_seconds: float            # per message, per step of the algorithm
  beta_bytes_per_second: float    # one node's link, each direction
  intra_bytes_per_second: float = 10e9   # ranks of one node reducing through shared memory
  algorithm: str = "halving_doubling"    # or "ring"
  fusion_bytes: float = 64 * 2 ** 20     # Horovod's default HOROVOD_FUSION_THRESHOLD


@dataclasses.dataclass(frozen=True)
class Job:
  nodes: int
  ranks_per_node: int
  batch_per_rank: int
  node_images_per_second: float   # one node alone, all its ranks, at this batch per rank (no allreduce)
  gradient_bytes: float
  overlap: float = 0.0            # share of the backward pass the allreduce can hide behind (0 … 1)
  backward_share: float = 2 / 3   # backward FLOPs are twice the forward's
  epochs: float = 90
  train_images: int = ILSVRC2012_TRAIN_IMAGES


def latency_steps(nodes: int, algorithm: str) -> int:
  if nodes <= 1:
    return 0
  if algorithm == "ring":
    return 2 * (nodes - 1)
  if algorithm == "halving_doubling":
    return 2 * math.ceil(math.log2(nodes))
  raise ValueError(f"unknown allreduce algorithm {algorithm!r}")


def allreduce_seconds(nbytes: float, nodes: int, ranks_per_node: int, network: Network) -> float:
  """Time of one (fused) allreduce of `nbytes` per rank over nodes × ranks_per_node ranks."""
  buffers = max(1, math.ceil(nbytes / network.fusion_bytes))
  intra = 2 * (ranks_per_node - 1) / ranks_per_node * nbytes / network.intra_bytes_per_second
  if nodes <= 1:
    return intra
  inter = (buffers * latency_steps(nodes, network.algorithm) * network.alpha_seconds
           + 2 * (nodes - 1) / nodes * nbytes / network.beta_bytes_per_second)
  return intra + inter


def predict(job: Job, network: Network) -> dict:
  """Step time, throughput, efficiency against the same node count without communication, time to train."""
  compute = job.batch_per_rank * job.ranks_per_node / job.node_images_per_second
  allreduce = allreduce_seconds(job.gradient_bytes, job.nodes, job.ranks_per_node, network)
  exposed = max(0.0, allreduce - job.overlap * job.backward_share * compute)
  step = compute + exposed
  images_per_second = job.nodes * job.ranks_per_node * job.batch_per_rank / step
  return {"nodes": job.nodes, "global_batch": job.nodes * job.ranks_per_node * job.batch_per_rank,
          "compute_s": compute, "allreduce_s": allreduce, "exposed_s": exposed, "step_s": step,
          "images_per_second": images_per_second, "efficiency": compute / step,
          "hours_to_train": job.epochs * job.train_images / images_per_second / 3600}


def node_rate_for(observed_images_per_second: float, job: Job, network: Network) -> float:
  """The per-node compute rate at which `predict` gives the observed throughput (bisection; the inverse
  used to calibrate on a published multi-node run when no single-node number exists)."""
  low, high = 1e-6, 1e6
  for _ in range(200):
    mid = math.sqrt(low * high)
    rate = predict(dataclasses.replace(job, node_images_per_second=mid), network)["images_per_second"]
    low, high = (mid, high) if rate < observed_images_per_second else (low, mid)
  return math.sqrt(low * high)


def fit_alpha_beta(sweep, ranks: int, algorithm: str = "halving_doubling"):
  """α, β of t = c·α + 2(p−1)/p · n/β fitted to (bytes, seconds) points of one flat allreduce
  (`bench comm_worker --comm_sizes=…` over the namespace links). Least squares in relative error (each
  point weighted by 1/t²), so 4 KB and 64 MB messages both count. Returns (α seconds, β bytes/s)."""
  c = latency_steps(ranks, algorithm)
  k = 2 * (ranks - 1) / ranks
  points = [(k * point["bytes"], point["seconds"]) for point in sweep]
  weights = [1 / y ** 2 for _, y in points]
  sw = sum(weights)
  mean_x = sum(w * x for w, (x, _) in zip(weights, points)) / sw
  mean_y = sum(w * y for w, (_, y) in zip(weights, points)) / sw
  slope = (sum(w * (x - mean_x) * (y - mean_y) for w, (x, y) in zip(weights, points))
           / sum(w * (x - mean_x) ** 2 for w, (x, _) in zip(weights, points)))
  intercept = mean_y - slope * mean_x
  return max(intercept, 0.0) / c, 1.0 / slope


# Named systems: the assumptions behind each number are in docs/SCALING.md.
SYSTEMS = {
    # TACC Stampede2 SKX: 2 × 24-core Xeon Platinum 8160, Intel Omni-Path 100 Gb/s (12.5 GB/s line rate;
    # 10 GB/s achievable assumed), MPI latency over Omni-Path taken as 3 µs per message.
    "stampede2-skx": {"network": Network(alpha_seconds=3e-6, beta_bytes_per_second=10e9, intra_bytes_per_second=20e9),
                      "ranks_per_node": 2},
    # Xeon Phi 7250 (KNL, 68 cores) nodes on Omni-Path, one rank per node.
    "knl-7250": {"network": Network(alpha_seconds=3e-6, beta_bytes_per_second=10e9, intra_bytes_per_second=20e9),
                 "ranks_per_node": 1},
}

# The seeds' published points (docs/SCALING.md gives each source and what is derived).
PUBLISHED = [
    {"name": "64 SKX nodes, 72 epochs (sara-nl/caffe resnet50_custom_lr)", "system": "stampede2-skx", "nodes": 64,
     "batch_per_rank": 32, "epochs": 72.3, "images_per_second": 6303, "minutes": 240, "calibrates": True},
    {"name": "448 SKX nodes, 90 + 5 epochs (sara-nl/caffe resnet50_448nodes)", "system": "stampede2-skx",
     "nodes": 448, "batch_per_rank": 16, "epochs": 95, "minutes": 65, "calibrates": True},
    {"name": "512 SKX nodes (issue 8, from the paper)", "system": "stampede2-skx", "nodes": 512,
     "batch_per_rank": 16, "epochs": 72.3, "minutes": 44},
    {"name": "768 KNL nodes, batch 16 per node (issue 8, from the paper)", "system": "knl-7250", "nodes": 768,
     "batch_per_rank": 16, "epochs": 72.3, "minutes": 39},
]


def published_check(overlap: float):
  """Rows (point, predicted, published) for the seeds' runs. The b32 and b16 per-node compute rates of a
  Stampede2 SKX node are calibrated on the 64- and 448-node runs (no single-node number is published);
  the 512-node run is then predicted, and KNL is assumed to match an SKX node per image (Dell EMC's
  measurement: 'very similar to the Platinum models')."""
  rates = {}   # per-node compute rate, by the per-rank batch it was calibrated at
  rows = []
  for point in PUBLISHED:
    system = SYSTEMS[point["system"]]
    job = Job(nodes=point["nodes"], ranks_per_node=system["ranks_per_node"], batch_per_rank=point["batch_per_rank"],
              node_images_per_second=1.0, gradient_bytes=4 * GRADIENT_FLOATS["resnet50"], overlap=overlap,
              epochs=point["epochs"])
    observed = point.get("images_per_second") or point["epochs"] * ILSVRC2012_TRAIN_IMAGES / (60 * point["minutes"])
    if point.get("calibrates"):
      rates[point["batch_per_rank"]] = node_rate_for(observed, job, system["network"])
    rate = rates[point["batch_per_rank"]]
    prediction = predict(dataclasses.replace(job, node_images_per_second=rate), system["network"])
    rows.append((point, rate, prediction, observed))
  return rows


FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags, defined when run as a program: the arithmetic above is imported by tests and
  tools whose own --nodes and --ranks_per_node (tfscale_tools.staging) would otherwise collide."""
  flags.DEFINE_list("nodes", ["1", "2", "4", "8", "16", "32", "64", "128", "256", "512"], "Node counts to predict.")
  flags.DEFINE_string("system", None, f"Preset network and ranks per node: {', '.join(SYSTEMS)}.")
  flags.DEFINE_float("node_images_per_second", 98.5, "One node's training throughput at --batch_per_rank "
                     "(measure it: `python -m tfscale_tools.bench model` on one node with its ranks).")
  flags.DEFINE_integer("ranks_per_node", None, "Ranks per node (default: the system's, else 2).")
  flags.DEFINE_integer("batch_per_rank", 32, "Images per rank per step.")
  flags.DEFINE_enum("model", "resnet50", list(GRADIENT_FLOATS), "Whose gradient is allreduced.")
  flags.DEFINE_integer("num_classes", 1000, "Classifier width (21841 for ImageNet-22K, 365 for Places-365).")
  flags.DEFINE_enum("wire", "fp32", ["fp32", "fp16"], "Gradient precision on the wire (fp16: "
                    "--config.train.gradient_compression=fp16, Horovod's fp16 compression).")
  flags.DEFINE_float("link_gbps", None, "Node link bandwidth, Gbit/s each direction (overrides the system's).")
  flags.DEFINE_float("latency_us", None, "Per-message latency α, µs (overrides the system's).")
  flags.DEFINE_enum("algorithm", None, ["halving_doubling", "ring"], "Inter-node allreduce (default: ring for a "
                    "tf-backend calibration, TF's collectives being ring allreduces; halving_doubling otherwise).")
  flags.DEFINE_float("overlap", 0.25, "Share of the backward pass the allreduce hides behind; 0.25 fits tfscale's "
                     "tf_keras + Horovod step on the namespace links (docs/SCALING.md).")
  flags.DEFINE_float("epochs", 90, "Epochs to train.")
  flags.DEFINE_integer("dataset_images", ILSVRC2012_TRAIN_IMAGES, "Training-set size.")
  flags.DEFINE_list("calibration", [], "JSON of `bench comm_worker --comm_sizes=…` (one per backend, comma-separated): "
                    "fit α and β to each sweep and predict with each backend's.")
  flags.DEFINE_bool("published", False, "Predict the seed paper's published points and compare.")
  flags.DEFINE_bool("json", False, "Print the predictions as JSON lines instead of a table.")
  config_flags.DEFINE_config_file("config", None, "A recipe (as for tfscale.train, --config.* overrides too): its "
                                  "model.name, data.num_classes, train.batch_per_rank and train.gradient_compression "
                                  "are the defaults of --model, --num_classes, --batch_per_rank and --wire.",
                                  lock_config=False)


def job_settings() -> dict:
  """--model, --num_classes, --batch_per_rank and --wire; those not given on the command line come from
  --config's recipe."""
  settings = {"model": FLAGS.model, "num_classes": FLAGS.num_classes, "batch_per_rank": FLAGS.batch_per_rank,
              "wire": FLAGS.wire}
  if FLAGS.config is not None:
    recipe = {"model": FLAGS.config.model.name, "num_classes": FLAGS.config.data.num_classes or 1000,
              "batch_per_rank": FLAGS.config.train.batch_per_rank,
              "wire": "fp16" if FLAGS.config.train.gradient_compression == "fp16" else "fp32"}
    settings.update({name: value for name, value in recipe.items() if not FLAGS[name].present})
  if settings["model"] not in GRADIENT_FLOATS:
    raise app.UsageError(f"no gradient size for model {settings['model']!r} (known: {', '.join(GRADIENT_FLOATS)})")
  return settings


def networks_from_flags() -> list:
  """[(what the network is, Network)]: one per --calibration file (its backend's fitted α-β), else one from
  --system, --link_gbps and --latency_us."""
  base = SYSTEMS[FLAGS.system]["network"] if FLAGS.system else Network(alpha_seconds=3e-6, beta_bytes_per_second=10e9)
  networks = []
  for path in FLAGS.calibration or [None]:
    network, backend = base, None
    if path:
      with open(path) as f:
        result = json.load(f)
      backend = result.get("backend", "horovod")
      algorithm = FLAGS.algorithm or ("ring" if backend == "tf" else "halving_doubling")
      alpha, beta = fit_alpha_beta(result["sweep"], result["ranks"], algorithm)
      network = dataclasses.replace(network, alpha_seconds=alpha, beta_bytes_per_second=beta)
    if FLAGS.link_gbps:
      network = dataclasses.replace(network, beta_bytes_per_second=FLAGS.link_gbps * 1e9 / 8)
    if FLAGS.latency_us is not None:
      network = dataclasses.replace(network, alpha_seconds=FLAGS.latency_us * 1e-6)
    algorithm = FLAGS.algorithm or ("ring" if backend == "tf" else network.algorithm)
    networks.append((f"{backend} backend, α-β fitted to {path}" if path else "given network",
                     dataclasses.replace(network, algorithm=algorithm)))
  return networks


def main(argv):
  del argv
  if FLAGS.published:
    print("| run | per-node compute rate used (img/s) | predicted img/s | published img/s | predicted min | "
          "published min | error |\n|---|---:|---:|---:|---:|---:|---:|")
    for point, rate, prediction, observed in published_check(FLAGS.overlap):
      minutes = 60 * prediction["hours_to_train"]
      role = " (calibration)" if "calibrates" in point else ""
      print(f"| {point['name']}{role} | {rate:.1f} | {prediction['images_per_second']:,.0f} | {observed:,.0f} | "
            f"{minutes:.0f} | {point['minutes']} | {100 * (minutes / point['minutes'] - 1):+.0f} % |")
    return
  ranks_per_node = FLAGS.ranks_per_node or (SYSTEMS[FLAGS.system]["ranks_per_node"] if FLAGS.system else 2)
  job = job_settings()
  gradient_bytes = gradient_floats(job["model"], job["num_classes"]) * (4 if job["wire"] == "fp32" else 2)
  for number, (label, network) in enumerate(networks_from_flags()):
    rows = [predict(Job(nodes=int(n), ranks_per_node=ranks_per_node, batch_per_rank=job["batch_per_rank"],
                        node_images_per_second=FLAGS.node_images_per_second, gradient_bytes=gradient_bytes,
                        overlap=FLAGS.overlap, epochs=FLAGS.epochs, train_images=FLAGS.dataset_images), network)
            for n in FLAGS.nodes]
    if FLAGS.json:
      for row in rows:
        print(json.dumps({"network": label, **row}))
    else:
      print(("\n" if number else "") + f"{label}: ", end="")
      print_table(job, gradient_bytes, ranks_per_node, network, rows)


def print_table(job, gradient_bytes, ranks_per_node, network, rows):
  print(f"{job['model']} gradient {gradient_bytes / 1e6:.1f} MB ({job['wire']}); {ranks_per_node} ranks/node × "
        f"{job['batch_per_rank']} images; node {FLAGS.node_images_per_second:g} img/s alone; α "
        f"{1e6 * network.alpha_seconds:.2f} µs, β {network.beta_bytes_per_second / 1e9:.2f} GB/s, "
        f"{network.algorithm}, overlap {FLAGS.overlap:g}; {FLAGS.epochs:g} epochs of {FLAGS.dataset_images:,} images\n")
  print("| nodes | global batch | compute s | allreduce s | exposed s | step s | images/s | efficiency | "
        "time to train |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for r in rows:
    hours = r["hours_to_train"]
    when = f"{hours:.1f} h" if hours >= 2 else f"{60 * hours:.0f} min"
    print(f"| {r['nodes']} | {r['global_batch']:,} | {r['compute_s']:.3f} | {r['allreduce_s']:.4f} | "
          f"{r['exposed_s']:.4f} | {r['step_s']:.3f} | {r['images_per_second']:,.0f} | "
          f"{100 * r['efficiency']:.1f} % | {when} |")


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()

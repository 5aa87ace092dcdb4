r"""The tables of `scripts/netns/bench.sh --backends=ROUNDS`: Horovod against the tf backend, from the JSON
files that run leaves in its --out directory (docs/BENCHMARKS.md, Backends).

  python -m tfscale_tools.bench_comm_summary runs/netns 1gbit,10gbit 2

Ratios are tf ÷ Horovod per round (the two ran back to back, in alternating order), then the median over
rounds; for allreduce times below 1 the tf backend is faster, for images/s above 1.
"""
import json
import os
import statistics
import sys

from tfscale_tools import cost_model

BACKENDS = ("horovod", "tf")
MODES = ("the training step's (distributed.mean_gradients)", "one flat buffer")


def load(out, name):
  with open(os.path.join(out, name)) as f:
    return json.load(f)


def ratio_cell(ratios) -> str:
  return f"**{statistics.median(ratios):.3f}** ({' '.join(f'{r:.2f}' for r in ratios)})"


def host_counts(out, rate) -> list:
  """The host counts the run measured at `rate` (allreduce-<rate>-<N>hosts-… files)."""
  prefix = f"allreduce-{rate}-"
  return sorted({int(name[len(prefix):].split("hosts")[0]) for name in os.listdir(out) if name.startswith(prefix)})


def allreduce_tables(out, rates, rounds):
  print("| link | hosts | wire | reduction | Horovod ms | tf ms | tf ÷ Horovod time (rounds) |\n"
        "|---|---:|---|---|---:|---:|---|")
  fits = []
  for rate in rates:
    for hosts in host_counts(out, rate):
      runs = {b: [load(out, f"allreduce-{rate}-{hosts}hosts-{b}-{r}.json") for r in range(1, rounds + 1)]
              for b in BACKENDS}
      for wire in ("fp32", "fp16"):
        for mode in MODES:
          ms = {b: [1e3 * next(row["seconds"] for row in run["rows"] if row["wire"] == wire and row["mode"] == mode)
                    for run in runs[b]] for b in BACKENDS}
          ratios = [t / h for t, h in zip(ms["tf"], ms["horovod"])]
          print(f"| {rate} | {hosts} | {wire} | {mode} | {statistics.median(ms['horovod']):.0f} | "
                f"{statistics.median(ms['tf']):.0f} | {ratio_cell(ratios)} |")
      for backend in BACKENDS:
        algorithm = "ring" if backend == "tf" else "halving_doubling"
        alphas, betas = zip(*(cost_model.fit_alpha_beta(run["sweep"], run["ranks"], algorithm) for run in runs[backend]))
        fits.append((rate, hosts, backend, algorithm, statistics.median(alphas), statistics.median(betas)))
  print("\nα-β fitted to the flat-allreduce sweep (4 KB … 64 MB; `python -m tfscale_tools.cost_model "
        "--calibration=<a run's JSON>` takes the same fit), median over rounds:\n")
  print("| link | hosts | backend | algorithm | α µs | β GB/s |\n|---|---:|---|---|---:|---:|")
  for rate, hosts, backend, algorithm, alpha, beta in fits:
    print(f"| {rate} | {hosts} | {backend} | {algorithm} | {1e6 * alpha:.0f} | {beta / 1e9:.3f} |")


def step_table(out, rates, rounds):
  if not any(name.startswith("step-") for name in os.listdir(out)):
    return
  print("\ntraining step, images/s per rank (fp32 ResNet-50, 1 thread per rank; 2 hosts × 1 rank against 1 rank "
        "alone; efficiency = median of per-round ratios to the 1-rank run of the same round):\n")
  print("| link | 1 rank alone | Horovod, 2 hosts (efficiency) | tf, 2 hosts (efficiency) | tf ÷ Horovod (rounds) |\n"
        "|---|---:|---:|---:|---|")
  for rate in rates:
    rate_of = lambda name, r: load(out, name.format(rate=rate, r=r))[0]["images_per_second"]
    one = [rate_of("step-1rank-{rate}-{r}.json", r) for r in range(1, rounds + 1)]
    two = {b: [rate_of(f"step-2hosts-{{rate}}-{b}-{{r}}.json", r) for r in range(1, rounds + 1)] for b in BACKENDS}
    cells = []
    for backend in BACKENDS:
      efficiency = statistics.median(t / o for t, o in zip(two[backend], one))
      cells.append(f"{statistics.median(two[backend]):.3f} ({100 * efficiency:.1f} %)")
    ratios = [t / h for t, h in zip(two["tf"], two["horovod"])]
    print(f"| {rate} | {statistics.median(one):.3f} | {cells[0]} | {cells[1]} | {ratio_cell(ratios)} |")


def main(argv):
  out, rates, rounds = argv[1], argv[2].split(","), int(argv[3])
  allreduce_tables(out, rates, rounds)
  step_table(out, rates, rounds)


if __name__ == "__main__":
  main(sys.argv)

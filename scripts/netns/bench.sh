#!/usr/bin/env bash
# The communication measurements over namespace hosts (docs/SCALING.md): for each link rate,
#   1. the allreduce benchmark (ResNet-50's gradients, fp32/fp16, fused/per variable) plus a sweep of
#      flat allreduces whose α-β fit calibrates `python -m tfscale_tools.cost_model`;
#   2. the real training step of 2 hosts × 1 rank × 1 thread over that link, beside 1 rank alone
#      (pinned to one core): the exposed communication, hence the overlap the planner should assume.
#
#   3. with --compression=ROUNDS: only the training step of 2 hosts, fp32 and fp16 gradients on the wire
#      (train.gradient_compression) in alternating order for ROUNDS rounds per link rate.
#   4. with --backends=ROUNDS: Horovod against the tf backend (train.backend), in alternating order for
#      ROUNDS rounds per link rate: the allreduce benchmark with its α-β sweep on 2 and 4 hosts, and the
#      training step of 2 hosts beside 1 rank alone (weak-scaling efficiency).
#
#   scripts/netns/bench.sh [--rates=1gbit,200mbit] [--out=runs/netns] [--steps=3] [--batch=16] [--compression=N]
#                          [--backends=N]
# Needs root and network namespaces; run it on an otherwise idle machine.
set -euo pipefail
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$dir/../.." && pwd)
rates=1gbit,200mbit out=$repo/runs/netns steps=3 batch=16 compression=0 backends=0
for arg; do
  case $arg in
    --rates=*) rates=${arg#*=} ;;
    --out=*) out=${arg#*=} ;;
    --steps=*) steps=${arg#*=} ;;
    --batch=*) batch=${arg#*=} ;;
    --compression=*) compression=${arg#*=} ;;
    --backends=*) backends=${arg#*=} ;;
    *) echo "usage: bench.sh [--rates=R1,R2] [--out=DIR] [--steps=N] [--batch=B] [--compression=ROUNDS]" \
            "[--backends=ROUNDS]" >&2; exit 2 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
python=${PYTHON:-$repo/.venv/bin/python}
mkdir -p "$out"
cd "$repo"
sizes=4096,65536,1048576,4194304,16777216,67108864
step=(-m tfscale_tools.bench model --models=resnet50 "--batches=$batch" --dtypes=float32 --nobare --rounds=1
      "--steps=$steps" --config.train.intra_op_threads=1 --config.train.inter_op_threads=1 --nogemm_ceiling)
trap '"$dir/down.sh"' EXIT

if ((backends)); then
  for rate in ${rates//,/ }; do
    for hosts in 2 4; do
      "$dir/up.sh" --hosts=$hosts --rate="$rate"
      for ((round = 1; round <= backends; round++)); do
        order=(horovod tf)
        ((round % 2)) || order=(tf horovod)
        for backend in "${order[@]}"; do
          echo "== $rate round $round: allreduce over $hosts hosts, $backend backend"
          "$dir/mpirun.sh" -- "$python" -m tfscale_tools.bench comm_worker "--backend=$backend" --comm_repeats=5 \
            "--comm_sizes=$sizes" "--result_file=$out/allreduce-$rate-${hosts}hosts-$backend-$round.json" >/dev/null
        done
        if ((hosts == 2)); then
          order=(one horovod tf)
          ((round % 2)) || order=(tf horovod one)
          for backend in "${order[@]}"; do
            echo "== $rate round $round: training step, ${backend/one/1 rank alone (core 0)}"
            if [[ $backend == one ]]; then
              taskset -c 0 "$python" "${step[@]}" "--result_file=$out/step-1rank-$rate-$round.json" >/dev/null
            else
              "$dir/mpirun.sh" -- sh -c 'exec taskset -c "$OMPI_COMM_WORLD_RANK" "$0" "$@"' "$repo/scripts/cpu_env.sh" 1 -- \
                "$python" "${step[@]}" "--config.train.backend=$backend" "--result_file=$out/step-2hosts-$rate-$backend-$round.json" >/dev/null
            fi
          done
        fi
      done
      "$dir/down.sh"
    done
  done
  "$python" -m tfscale_tools.bench_comm_summary "$out" "$rates" "$backends"
  exit 0
fi

if ((compression)); then
  for rate in ${rates//,/ }; do
    "$dir/up.sh" --hosts=2 --rate="$rate"
    for ((round = 1; round <= compression; round++)); do
      wires=(none fp16)
      ((round % 2)) || wires=(fp16 none)
      for wire in "${wires[@]}"; do
        echo "== $rate round $round: training step, 2 hosts × 1 rank × 1 thread, gradient_compression=$wire"
        "$dir/mpirun.sh" -- "$repo/scripts/cpu_env.sh" 1 -- "$python" "${step[@]}" "--config.train.gradient_compression=$wire" \
          "--result_file=$out/step-2hosts-$rate-$wire-$round.json" | grep -E '^\| resnet50'
      done
    done
    "$dir/down.sh"
  done
  "$python" - "$out" "$rates" "$compression" <<'SUMMARY'
import json, statistics, sys
out, rates, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
for rate in rates:
  rate_of = lambda wire, r: json.load(open(f"{out}/step-2hosts-{rate}-{wire}-{r}.json"))[0]["images_per_second"]
  fp32 = [rate_of("none", r) for r in range(1, rounds + 1)]
  fp16 = [rate_of("fp16", r) for r in range(1, rounds + 1)]
  ratios = [b / a for a, b in zip(fp32, fp16)]
  print(f"{rate}: fp32 wire {statistics.median(fp32):.3f}, fp16 wire {statistics.median(fp16):.3f} images/s per rank; "
        f"fp16 ÷ fp32 {statistics.median(ratios):.3f} (rounds: {' '.join(f'{r:.3f}' for r in ratios)})")
SUMMARY
  exit 0
fi

echo "== 1 rank × 1 thread alone (core 0): the step without communication"
taskset -c 0 "$python" "${step[@]}" "--result_file=$out/step-1rank.json" | grep -E '^\| resnet50'
for rate in ${rates//,/ }; do
  "$dir/up.sh" --hosts=2 --rate="$rate"
  echo "== $rate: allreduce over 2 hosts"
  "$dir/mpirun.sh" -- "$python" -m tfscale_tools.bench comm_worker --comm_repeats=5 "--comm_sizes=$sizes" \
    "--result_file=$out/allreduce-$rate.json" | tee "$out/allreduce-$rate.txt"
  echo "== $rate: training step, 2 hosts × 1 rank × 1 thread"
  "$dir/mpirun.sh" -- "$repo/scripts/cpu_env.sh" 1 -- "$python" "${step[@]}" \
    "--result_file=$out/step-2hosts-$rate.json" | grep -E '^\| resnet50'
  "$dir/down.sh"
done
echo "results in $out"

#!/usr/bin/env bash
# Momentum SGD vs LARS on the digits at a large batch (global 360 ≈ ¼ of the training set), same plan, same
# linear scaling rule, each over the same grid of peak learning rates (per 256 images; the variant's plan peaks
# at 1.0 and --config.optim.lr_scale sets the peak). Prints a Markdown table
# of final validation top-1 (docs/RECIPES.md has a measured run). Needs the digits shards (make demo, step 2).
#   bash scripts/sgd_vs_lars.sh [LR ...]        default grid: 0.1 0.4 1.6 6.4
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="${TFSCALE_VENV:-$PWD/.venv}/bin:$PATH" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
lrs=("${@:-0.1 0.4 1.6 6.4}")
read -r -a lrs <<< "${lrs[*]}"
out=runs/sgd_vs_lars
mkdir -p "$out"
printf '| optimizer | %s |\n|---|%s\n' "$(printf 'LR %s | ' "${lrs[@]}" | sed 's/ | $//')" "$(printf -- '---:|%.0s' "${lrs[@]}")"
for optim in sgd lars; do
  row="| $optim |"
  for lr in "${lrs[@]}"; do
    workdir="$out/$optim-$lr"
    rm -rf "$workdir"
    horovodrun -np 2 -H localhost:2 python -m tfscale.train --config=configs/demo_digits.py:large_batch \
      --workdir="$workdir" --config.optim.name="$optim" --config.optim.lr_scale="$lr" > "$workdir.log" 2>&1 \
      || { row="$row failed |"; continue; }
    top1=$(python -c "import sys; from tfscale import workdir as w; \
print(f\"{100 * w.read_snapshots(sys.argv[1])[-1]['val_top1']:.2f}\")" "$workdir")
    row="$row $top1 |"
  done
  echo "$row"
done

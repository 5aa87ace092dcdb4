#!/usr/bin/env bash
# The digits demo end to end: JPEG tree → TFRecords → 2-rank Horovod training → Collapsed Ensemble eval.
# Run through `make demo` (which installs first and puts .venv/bin on PATH). Each step is timed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
np=${NP:-2}
raw=data/digits/raw
shards=data/digits/tfrecords
workdir=runs/demo

step() { printf '\n=== %s\n' "$*"; }
start=$SECONDS

step "1/4 render scikit-learn's digits as an ILSVRC2012-style JPEG tree ($raw)"
[[ -f $raw/ILSVRC2012_validation_ground_truth.txt ]] || python -m data_prep.digits --output_dir="$raw"

step "2/4 convert to sharded TFRecords ($shards)"
python -m data_prep.imagenet1k --raw_dir="$raw" --output_dir="$shards" --train_shards=8 --val_shards=2

step "3/4 train on $np Horovod ranks ($workdir, started fresh)"
rm -rf "$workdir"
t=$SECONDS
# horovodrun imports TensorFlow itself: level 1 keeps its INFO banners out of the log (the ranks filter the rest).
TF_CPP_MIN_LOG_LEVEL=1 horovodrun -np "$np" -H "localhost:$np" python -m tfscale.train --config=configs/demo_digits.py \
  --workdir="$workdir"
train_seconds=$((SECONDS - t))

step "4/4 evaluate every snapshot and their Collapsed Ensemble"
python -m tfscale.evaluate --workdir="$workdir"

printf '\ndemo done in %d s (training %d s); results in %s/eval.json and %s/eval.md\n' \
  $((SECONDS - start)) "$train_seconds" "$workdir" "$workdir"

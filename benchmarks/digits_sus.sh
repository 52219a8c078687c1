#!/usr/bin/env bash
# docs/RESULTS.md, digits SUS: classes 5-9 hidden, 20% labels on 0-4, 10 extra slots, 3 seeds, both models.
# Usage: bash benchmarks/digits_sus.sh [OUT_ROOT]   (two runs at a time, one torch thread each)
set -euo pipefail
out=${1:-runs/digits-sus}
common=(--dataset digits --hidden-classes 5 6 7 8 9 --labelled-fraction 0.2 --extra-slots 10
        --epochs 200 --lr 1e-3 --z-dim 5 --hidden-dims 500 500 --device cpu --no-progress)
for seed in 0 1 2; do
  for model in m2 gmdgm; do
    OMP_NUM_THREADS=1 pyro-sus train --model "$model" --seed "$seed" --out "$out/$model-seed$seed" "${common[@]}" &
  done
  wait
done
python benchmarks/summarize_runs.py "$out"/*

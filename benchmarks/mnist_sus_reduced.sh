#!/usr/bin/env bash
# docs/RESULTS.md, MNIST SUS (reduced): classes 5-9 hidden, 20% labels on 0-4, 40 extra slots
# (Willetts n_aug = 40), Table III MNIST settings (z = 5, 200 hidden units, lr 1e-3), one seed,
# 15 epochs instead of the paper's up to 400. Both models at once, one torch thread each.
# Usage: bash benchmarks/mnist_sus_reduced.sh [OUT_ROOT] [DATA_DIR]
set -euo pipefail
out=${1:-runs/mnist-sus-reduced}
data=${2:-${PYRO_SUS_DATA:-../shared/data}}
common=(--dataset mnist --data-dir "$data" --hidden-classes 5 6 7 8 9 --labelled-fraction 0.2 --extra-slots 40
        --epochs 15 --lr 1e-3 --z-dim 5 --hidden-dims 200 200 --seed 0 --device cpu --no-progress)
for model in m2 gmdgm; do
  OMP_NUM_THREADS=1 pyro-sus train --model "$model" --out "$out/$model-seed0" "${common[@]}" &
done
wait
python benchmarks/summarize_runs.py "$out"/*

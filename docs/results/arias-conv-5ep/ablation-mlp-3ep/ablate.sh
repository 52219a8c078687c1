#!/usr/bin/env bash
# The record behind docs/RESULTS.md's Arias ablation: the MLP categorical VAE on MNIST with 100 labels
# (the zoo's mnist-100 setting), 3 epochs, seed 0, the default against three variants, two at a time.
# Run from the repository root: bash docs/results/arias-conv-5ep/ablation-mlp-3ep/ablate.sh
set -u
common=(--model catvae --z-dim 50 --dataset mnist --labels-per-class 10 --epochs 3 --lr 1e-3 --hidden-dims 500
        --data-dir ../shared/data --device cpu --no-progress --seed 0)
run() { name=$1; shift; OMP_NUM_THREADS=1 pyro-sus train "${common[@]}" --out "runs/ablate/$name" "$@" > "runs/ablate-$name.log" 2>&1; }
mkdir -p runs/ablate
run default & run no-feature-loss --model-option w_feature=0 & wait
run margin-0.1 --model-option feature_margin=0.1 & run w-assignment-30 --model-option w_assignment=30 & wait
for name in default no-feature-loss margin-0.1 w-assignment-30; do
  python docs/results/arias-conv-5ep/diagnose.py "runs/ablate/$name" ../shared/data > "runs/ablate/$name-diagnosis.json"
done

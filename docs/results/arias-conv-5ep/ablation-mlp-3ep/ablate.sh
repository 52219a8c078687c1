#!/usr/bin/env bash
# The record behind docs/RESULTS.md's Arias ablation: the MLP categorical VAE on MNIST with 100 labels
# (the zoo's mnist-100 setting), 3 epochs, seed 0, the default against nine variants, two at a time.
# Run from the repository root: bash docs/results/arias-conv-5ep/ablation-mlp-3ep/ablate.sh
set -u
common=(--model catvae --z-dim 50 --dataset mnist --labels-per-class 10 --epochs 3 --lr 1e-3 --hidden-dims 500
        --data-dir ../shared/data --device cpu --no-progress --seed 0)
here=docs/results/arias-conv-5ep/ablation-mlp-3ep
# PLUGIN names a module in $here to import first (a model of its own, registered there).
run() { name=$1; shift; PYTHONPATH=$here OMP_NUM_THREADS=1 pyro-sus ${PLUGIN:+--plugin "$PLUGIN"} train "${common[@]}" \
          --out "runs/ablate/$name" "$@" > "runs/ablate-$name.log" 2>&1; }
mkdir -p runs/ablate
run default & run no-feature-loss --model-option w_feature=0 & wait
run margin-0.1 --model-option feature_margin=0.1 & run w-assignment-30 --model-option w_assignment=30 & wait
run w-categorical-0.1 --model-option w_categorical=0.1 & run w-categorical-0.01 --model-option w_categorical=0.01 & wait
# The assignment and feature losses on the labelled points only: no 1-NN pseudo-label in the objective.
export PLUGIN=labels_only_assignment
run labels-only-assignment --model catvae-labels-only-assignment &
run labels-only-assignment-no-feature-loss --model catvae-labels-only-assignment --model-option w_feature=0 & wait
# Cross-entropy on the labels through the model's f and head, with and without the unlabelled ELBO.
run labels-only-cross-entropy --model catvae-labels-only-cross-entropy &
run labels-only-cross-entropy-no-unlabelled --model catvae-labels-only-cross-entropy-no-unlabelled & wait
for name in default no-feature-loss margin-0.1 w-assignment-30 w-categorical-0.1 w-categorical-0.01 \
    labels-only-assignment labels-only-assignment-no-feature-loss labels-only-cross-entropy \
    labels-only-cross-entropy-no-unlabelled; do
  PYTHONPATH=$here python docs/results/arias-conv-5ep/diagnose.py "runs/ablate/$name" ../shared/data "$PLUGIN" \
    > "runs/ablate/$name-diagnosis.json"
done

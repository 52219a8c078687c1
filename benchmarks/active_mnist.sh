#!/usr/bin/env bash
# Vengalil & Sinha's comparison (Figs. 3-4) on MNIST from zero labels with the simulated oracle:
# 10 unsupervised epochs, then 5 rounds of 10 epochs, at most 30 answers per round; then our
# extension (--refine spread) on the two best paper settings.
# Usage: bash benchmarks/active_mnist.sh [OUT_DIR] [DATA_DIR]   (runs two at a time, one thread each)
set -euo pipefail
out=${1:-runs/active-mnist}
data=${2:-../shared/data}
export OMP_NUM_THREADS=1
common=(--dataset mnist --data-dir "$data" --rounds 5 --warmup-epochs 10 --epochs-per-round 10 --budget 30 --seed 0 --no-progress)
python -m pyro_sus active "${common[@]}" --method kmeans --metric euclidean --confidence gaussian --out "$out/kmeans-euclidean" &
python -m pyro_sus active "${common[@]}" --method kmeans --metric mahalanobis --confidence gaussian --out "$out/kmeans-mahalanobis" &
wait
python -m pyro_sus active "${common[@]}" --method gmm --out "$out/gmm" &
python -m pyro_sus active "${common[@]}" --method kmeans --metric euclidean --confidence exponential --out "$out/kmeans-euclidean-exponential" &
wait
python -m pyro_sus active "${common[@]}" --method kmeans --metric mahalanobis --confidence gaussian --refine spread --out "$out/kmeans-mahalanobis-refine" &
python -m pyro_sus active "${common[@]}" --method gmm --refine spread --out "$out/gmm-refine" &
wait

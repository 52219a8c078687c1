#!/usr/bin/env bash
# docs/RESULTS.md, "Reproductions": REDUCED CPU versions of the papers' key rows (no GPU lent).
# Two runs at a time, one torch thread each, on a 2-core machine; writes the generated sections.
# Usage: bash benchmarks/reproduce_cpu_reduced.sh [OUT_ROOT] [DATA_DIR]
set -euo pipefail
out=${1:-runs/reproduce}
data=${2:-../shared/data}
common=(--out "$out" --data-dir "$data" --device cpu --threads 1 --write-results docs/RESULTS.md)
# Pyro's tutorial: the full 50 epochs, 2 of its 5 runs per row, each trained at both learning rates
# (chosen on validation): 16 runs.
pyro-sus reproduce pyro-ssvae-tutorial --seeds 2 --jobs 2 "${common[@]}"
pyro-sus reproduce jurasinski-table1 --rows "baseline (labelled-only classifier)" "M2 alpha=10000" \
    "LCVAE lambda=0.5" "LCVAE simplified lambda=0.001" --epochs 10 --seeds 1 --jobs 2 "${common[@]}"
pyro-sus reproduce willetts-workshop-table1 --epochs 5 --seeds 2 --jobs 2 "${common[@]}"
pyro-sus reproduce willetts-table2-mnist --rows "M2 SUS" "GM-DGM SUS" --epochs 20 --seeds 2 --jobs 2 "${common[@]}"

#!/usr/bin/env bash
# docs/RESULTS.md, the zoo on digits SUS (same split as benchmarks/digits_sus.sh: classes 5-9 hidden,
# 20% labels on 0-4, 10 extra slots), same networks and budget for every model, seed 0.
# Usage: bash benchmarks/zoo_digits_sus.sh [OUT_ROOT] [SEEDS...]   (two runs at a time, one torch thread each)
set -euo pipefail
out=${1:-runs/zoo-digits-sus}
seeds=("${@:2}")
[ ${#seeds[@]} -eq 0 ] && seeds=(0)
common=(--dataset digits --hidden-classes 5 6 7 8 9 --labelled-fraction 0.2 --extra-slots 10
        --epochs 200 --lr 1e-3 --hidden-dims 500 500 --device cpu --no-progress)
variants=(
  "am2|--model am2 --z-dim 5"
  "agmdgm|--model agmdgm --z-dim 5"
  "m2-flow|--model m2 --z-dim 5 --posterior flow --flow-layers 4"
  "gmdgm-flow|--model gmdgm --z-dim 5 --posterior flow --flow-layers 4"
  "lcvae|--model lcvae --z-dim 5"
  "lcvae-flow|--model lcvae --z-dim 5 --posterior flow --flow-layers 4"
  "lcvae-simple|--model lcvae-simple --z-dim 5"
  "m1|--model m1 --z-dim 5"
  "classifier|--model classifier"
)
for seed in "${seeds[@]}"; do
  running=0
  for variant in "${variants[@]}"; do
    name=${variant%%|*}; args=${variant#*|}
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 pyro-sus train $args --seed "$seed" --out "$out/$name-seed$seed" "${common[@]}" \
      > "$out-$name-seed$seed.log" 2>&1 &
    running=$((running + 1))
    if [ "$running" -eq 2 ]; then wait -n; running=$((running - 1)); fi
  done
  wait
done
python benchmarks/summarize_runs.py "$out"/*

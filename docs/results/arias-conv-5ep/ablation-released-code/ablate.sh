#!/usr/bin/env bash
# The record behind docs/RESULTS.md's second Arias ablation: the MLP categorical VAE on MNIST with 100
# labels (the zoo's mnist-100 setting, as ../ablation-mlp-3ep/), 3 epochs, seed 0, moved step by step
# towards the authors' released code. Run from the repository root:
#   bash docs/results/arias-conv-5ep/ablation-released-code/ablate.sh
set -u
common=(--z-dim 50 --dataset mnist --labels-per-class 10 --epochs 3 --lr 1e-3 --hidden-dims 500
        --data-dir ../shared/data --device cpu --no-progress --seed 0)
# The released code's MNIST weights (its run.sh): BCE summed over pixels, the categorical KL not
# divided by log K (1.2 log 10 = 2.7631), w_assign 4.7, w_metric 0.85, margin 0.5, k = 7.
released=(--model-option w_reconstruction=784 --model-option w_categorical=2.7631 --model-option w_assignment=4.7
          --model-option w_feature=0.85 --model-option feature_margin=0.5 --model-option assignment_neighbours=7)
here=docs/results/arias-conv-5ep/ablation-released-code
run() { name=$1; shift; PYTHONPATH=$here OMP_NUM_THREADS=1 pyro-sus --plugin released_code train "${common[@]}" \
          --out "runs/ablate-released/$name" "$@" > "runs/ablate-released-$name.log" 2>&1; }
mkdir -p runs/ablate-released
run cross-entropy --model catvae-cross-entropy & run gaussian-z-released-weights --model catvae-gaussian-z "${released[@]}" & wait
run cross-entropy-released-weights --model catvae-cross-entropy "${released[@]}" &
run gaussian-z-raw-features-released-weights --model catvae-gaussian-z-raw-features "${released[@]}" & wait
run released-weights --model catvae "${released[@]}" &
run gaussian-z-paper-assignment-released-weights --model catvae-gaussian-z-paper-assignment "${released[@]}" & wait
# Stage 2, with the package's options (assignment_loss, gaussian_dim, w_gaussian) in place of the plugin:
# the same best model again (the parameters are created in another order, so another initialisation),
# then one of the released code's settings at a time put back to the paper's, and Gumbel-softmax C.
z=(--model catvae --model-option assignment_loss=cross_entropy --model-option gaussian_dim=150
   --model-option w_gaussian=1.1)
run package-gaussian-z-released-weights "${z[@]}" "${released[@]}" &
run package-gaussian-z-paper-weights "${z[@]}" & wait
run package-gaussian-z-released-weights-per-pixel "${z[@]}" "${released[@]}" --model-option w_reconstruction=1 &
run package-gaussian-z-released-weights-margin-1 "${z[@]}" "${released[@]}" --model-option feature_margin=1 & wait
run package-gaussian-z-released-weights-1-nn "${z[@]}" "${released[@]}" --model-option assignment_neighbours=1 &
run package-gaussian-z-released-weights-gumbel "${z[@]}" "${released[@]}" --model-option category_inference=gumbel & wait
for name in cross-entropy gaussian-z-released-weights cross-entropy-released-weights \
    gaussian-z-raw-features-released-weights released-weights gaussian-z-paper-assignment-released-weights \
    package-gaussian-z-released-weights package-gaussian-z-paper-weights package-gaussian-z-released-weights-per-pixel \
    package-gaussian-z-released-weights-margin-1 package-gaussian-z-released-weights-1-nn \
    package-gaussian-z-released-weights-gumbel; do
  PYTHONPATH=$here python docs/results/arias-conv-5ep/diagnose.py "runs/ablate-released/$name" ../shared/data \
    released_code > "runs/ablate-released/$name-diagnosis.json"
done

"""Trained models beat chance by stated margins (fast on digits; slow ones behind -m slow)."""

import json

import pytest

from pyro_sus import fit

SMALL = {"hidden_dims": [64], "z_dim": 5}


@pytest.mark.parametrize("model", ["m2", "gmdgm"])
def test_semi_supervised_digits_beats_chance_by_far(model, tmp_path):
    # 20% labels on all ten classes, 15 quick epochs: chance is 10%.
    run = fit(model, "digits", tmp_path / model, labelled_fraction=0.2,
              model_options=SMALL, train_options={"epochs": 15, "learning_rate": 3e-3, "device": "cpu"},
              progress=False)
    test = json.loads((run.run_dir / "results.json").read_text())["test"]
    assert test["accuracy"] > 0.75


@pytest.mark.parametrize("model,options,epochs,threshold", [
    # measured on 2 CPU cores, seed 0: 0.93, 0.93, 0.67, 0.76, 0.80 (chance is 0.10)
    ("am2", {"a_dim": 5, "z_dim": 5}, 15, 0.75),
    ("classifier", {}, 15, 0.75),
    ("catvae", {"z_dim": 50}, 15, 0.5),
    ("m1", {"z_dim": 5}, 40, 0.6),
    ("lcvae", {"z_dim": 5, "posterior": "flow"}, 60, 0.6),
])
def test_zoo_models_learn_semi_supervised_digits(model, options, epochs, threshold, tmp_path):
    run = fit(model, "digits", tmp_path / model, labelled_fraction=0.2,
              model_options={"hidden_dims": [64], **options},
              train_options={"epochs": epochs, "learning_rate": 3e-3, "device": "cpu"}, progress=False)
    test = json.loads((run.run_dir / "results.json").read_text())["test"]
    assert test["accuracy"] > threshold


def test_gmdgm_discovers_hidden_digits_in_seconds(tmp_path):
    """The package's main claim in the default run: with no label for digits 5-9, GM-DGM puts them in
    slots of their own. 256 hidden units, 60 epochs at 3e-3 (about 17 s on 2 cores). Measured
    2026-12-04, seeds 0 / 1 / 2: novel accuracy 0.68 / 0.66 / 0.57, known 0.98 / 0.94 / 0.96, 4 / 5 / 3
    of the 5 hidden digits found under the report's first rule (seed 0: 4 under issue 40's, 8 missed at
    29% validation recall); chance over five hidden classes is 0.2."""
    run = fit("gmdgm", "digits", tmp_path / "gm", hidden_classes=[5, 6, 7, 8, 9], labelled_fraction=0.2,
              extra_slots=10, model_options={"hidden_dims": [256], "z_dim": 5},
              train_options={"epochs": 60, "learning_rate": 3e-3, "device": "cpu", "seed": 0}, progress=False)
    results = json.loads((run.run_dir / "results.json").read_text())
    assert results["test"]["known_accuracy"] > 0.9
    assert results["test"]["novel_accuracy"] > 0.45
    assert results["discovery"]["n_found"] >= 3


@pytest.mark.slow
def test_gmdgm_discovers_hidden_digits(tmp_path):
    # The papers' claim on our embedded data: GM-DGM clusters digits 5-9 with no label for them.
    run = fit("gmdgm", "digits", tmp_path / "gm", hidden_classes=[5, 6, 7, 8, 9], labelled_fraction=0.2,
              extra_slots=10, model_options={"hidden_dims": [500, 500], "z_dim": 5},
              train_options={"epochs": 200, "learning_rate": 1e-3, "device": "cpu"}, progress=False)
    test = json.loads((run.run_dir / "results.json").read_text())["test"]
    assert test["known_accuracy"] > 0.9
    assert test["novel_accuracy"] > 0.5   # chance over five hidden classes is 0.2

"""The papers' settings beside ours (pyro_sus.fidelity): every declared setting is what the rows run,
the deviation lists are computed from them, and the options that hold the papers' choices (init,
the categorical VAE's objective) do what they say."""

import dataclasses
import math

import pytest
import torch

from pyro_sus.fidelity import deviations, row_options, setting_mismatches
from pyro_sus.models import build_model
from pyro_sus.nn import INITS, initialise
import pyro_sus.experiments  # noqa: F401  (registers the built-in tables)
from pyro_sus.tables import EXPERIMENTS, Setting, get_experiment

# Tables of a paper (seed), as against the zoo (our benchmark), a peer's script and our own diagnostics.
PAPER_TABLES = sorted(name for name in EXPERIMENTS if name.startswith(("willetts-table", "willetts-workshop-table",
                                                                       "jurasinski", "arias-figueroa")))


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_declared_setting_is_what_the_rows_run(name):
    assert setting_mismatches(get_experiment(name)) == []


@pytest.mark.parametrize("name", PAPER_TABLES)
def test_every_paper_table_declares_its_settings_and_lists_what_is_not_the_papers(name):
    experiment = get_experiment(name)
    assert len(experiment.settings) >= 8
    listed = deviations(experiment)
    for setting in experiment.settings:
        assert (setting.text() in listed) == (setting.source != "paper"), setting.name
    # Where a value comes from is always said, and "not stated" is never passed off as the paper's.
    for setting in experiment.settings:
        assert not (setting.source == "paper" and "not stated" in setting.paper), setting


def test_a_setting_that_the_rows_do_not_run_is_caught():
    experiment = get_experiment("willetts-table2-mnist")
    wrong = dataclasses.replace(experiment, settings=(
        Setting("gradient clipping", "not stated", "clipped to [-5, 5]", "ours", "train.clip_value", 5.0),
        Setting("activation", "ReLU", "ReLU", "paper", "model.activation", "relu", rows=("no such row",)),
        Setting("z", "5", "5", "paper", "model.no_such_option", 5),
    ))
    found = setting_mismatches(wrong)
    assert any("train.clip_value=1.0" in line for line in found)
    assert any("no rows ['no such row']" in line for line in found)
    assert any("has no option model.no_such_option" in line for line in found)
    with pytest.raises(ValueError, match="source must be one of"):
        Setting("x", "a", "b", "somebody")


def test_row_options_fill_in_every_default_the_run_trains_with():
    experiment = get_experiment("willetts-workshop-table1")
    options = row_options(experiment, experiment.row("GM-DGM"))
    assert options["model.z_dim"] == 100 and options["model.alpha"] == 1.1  # given, and the config's default
    assert options["train.clip_value"] == 1.0 and options["train.epochs"] == 200
    assert options["split.labels_per_class"] == 100 and options["preprocess.std_threshold"] == 0.1
    assert options["prior.probs"] == [0.1] * 5 + [0.05] * 10


@pytest.mark.parametrize("kind,std", [("xavier-normal", math.sqrt(2 / (60 + 500))),
                                      ("xavier-uniform", math.sqrt(2 / (60 + 500))),
                                      ("lecun-normal", math.sqrt(1 / 60)), ("normal-0.001", 0.001)])
def test_init_draws_every_kernel_as_named_and_zeroes_the_biases(kind, std):
    model = build_model("m2", x_dim=784, n_slots=10, hidden_dims=(500,), z_dim=50, init=kind)
    first = model.decoder[0]  # 50 + 10 inputs, 500 outputs
    assert float(first.weight.detach().std()) == pytest.approx(std, rel=0.05)
    assert all(float(layer.bias.detach().abs().sum()) == 0.0 for layer in model.modules()
               if isinstance(layer, torch.nn.Linear))


def test_the_default_init_is_pytorchs_and_an_unknown_one_is_refused():
    torch.manual_seed(0)
    default = build_model("m2", x_dim=20, n_slots=3, hidden_dims=(8,), z_dim=2)
    torch.manual_seed(0)
    plain = type(default)(type(default.config)(x_dim=20, n_slots=3, hidden_dims=(8,), z_dim=2))
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), plain.state_dict().values()))
    assert set(INITS) == {"default", "xavier-uniform", "xavier-normal", "lecun-normal", "normal-0.001"}
    with pytest.raises(ValueError, match="init must be one of"):
        build_model("m2", x_dim=20, n_slots=3, init="he")
    with pytest.raises(ValueError, match="init must be one of"):
        initialise(default, "he")


def test_a_run_trains_from_the_init_its_options_name(tmp_path):
    from pyro_sus import fit

    run = fit("m2", "digits", tmp_path / "run", labels_per_class=5, model_options={
        "hidden_dims": [16], "z_dim": 2, "init": "normal-0.001"}, train_options={"epochs": 1, "device": "cpu"},
        progress=False, evaluate_after=False, stop_after=None)
    assert run.model.config.init == "normal-0.001"
    # One epoch of Adam at 3e-4 moves a weight by at most about 3e-4 per step: still far below PyTorch's scale.
    assert float(run.model.decoder[-1].weight.detach().std()) < 0.02

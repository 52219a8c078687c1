"""The run specification: one JSON round trip, older run.json files still read, bad ones refused."""

import dataclasses
import json
from pathlib import Path

import pytest

from pyro_sus.run import run_spec
from pyro_sus.spec import DataSpec, PriorSpec, RunSpec, SplitSpec, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_a_run_spec_survives_its_json_form_and_the_split_follows_the_training_seed():
    spec = run_spec("m2", hidden_classes=[7, 8, 9], unseen_classes=[6], labelled_fraction=0.2, n_extra=4,
                    class_probs=[0.1] * 10, model_options={"z_dim": 3, "hidden_dims": [16]},
                    train_options={"epochs": 3, "seed": 5, "labelled_scale": 0.5},
                    data=DataSpec("digits", None, "abc", 1437, (8, 8)))
    assert spec.split.seed == 5 and spec.prior == PriorSpec("given", 0.5, (0.1,) * 10)
    again = RunSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    assert run_spec("m2", split_seed=1, train_options={"seed": 5}).split.seed == 1


@pytest.mark.parametrize("record", sorted((ROOT / "docs" / "results").glob("*/*run.json")), ids=lambda p: p.name)
def test_every_recorded_run_json_reads_as_a_spec_and_writes_back_what_it_said(record):
    """run.json files written by earlier versions (no unseen classes, fewer training options) read,
    and the spec's JSON form repeats every option they hold; one written before runs recorded their
    data's hash is refused, naming it (no data could be checked to be its data)."""
    info = json.loads(record.read_text())
    if "data_sha256" not in info:
        with pytest.raises(ValueError, match="data_sha256"):
            RunSpec.from_json(info)
        return
    spec = RunSpec.from_json(info)
    written = spec.to_json()
    for part in ("split", "preprocess", "prior", "train"):
        for key, value in info.get(part, {}).items():
            assert written[part][key] == value, (part, key)
    assert written["model"] == info["model"] and written["model_options"] == info["model_options"]
    assert written["dataset"] == info["dataset"] and written["data_sha256"] == info["data_sha256"]


@pytest.mark.parametrize("change, message", [
    (lambda info: info.pop("train"), "lacks \\['train'\\]"),
    (lambda info: info["split"].update(hidden=[1]), "split has unknown options \\['hidden'\\]"),
    (lambda info: info["train"].update(epochs="many"), "train:"),
    (lambda info: info["prior"].update(kind="flat"), "prior: option kind=.flat. of PriorSpec: kind must be one of"),
    (lambda info: info.update(model_options=[1, 2]), "model_options must be an object"),
])
def test_a_broken_run_json_is_refused_naming_what_is_wrong(change, message):
    info = run_spec("gmdgm").to_json()
    change(info)
    with pytest.raises(ValueError, match=message):
        RunSpec.from_json(info)


def test_split_spec_makes_the_split_make_split_makes():
    import numpy as np

    from pyro_sus.data import make_split

    y = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 30))
    spec = SplitSpec(hidden_classes=(8, 9), unseen_classes=(7,), labels_per_class=3, seed=2)
    a, b = spec.make(y), make_split(y, hidden_classes=[8, 9], unseen_classes=[7], labels_per_class=3, seed=2)
    assert all(np.array_equal(x, z) for x, z in zip(a.to_arrays().values(), b.to_arrays().values()))
    assert TrainConfig().seed == RunSpec("m2").split.seed


def test_fit_trains_a_given_spec_with_options_overriding_its_parts(tmp_path):
    """fit(spec=...) trains that spec; an option given beside it replaces the spec's (and what excludes
    it: labelled_fraction drops labels_per_class), model and training options merge into its own,
    and the data set's training defaults (digits: 200 epochs) do not apply to a whole spec."""
    from pyro_sus import fit

    quiet = {"progress": False, "evaluate_after": False, "plot": False}
    first = fit("m2", "digits", tmp_path / "first", hidden_classes=[8, 9], labels_per_class=5,
                model_options={"hidden_dims": [8], "z_dim": 2}, train_options={"epochs": 1, "batch_size": 64}, **quiet)
    second = fit(dataset="digits", run_dir=tmp_path / "second", spec=first.spec, labelled_fraction=0.2,
                 model_options={"z_dim": 3}, train_options={"learning_rate": 2e-3}, **quiet)
    a, b = first.spec, second.spec
    assert b.split == dataclasses.replace(a.split, labels_per_class=None, labelled_fraction=0.2)
    assert b.model_options == {"hidden_dims": [8], "z_dim": 3}
    assert b.train == dataclasses.replace(a.train, learning_rate=2e-3) and b.train.epochs == 1
    assert (b.model, b.prior, b.preprocess, b.data) == (a.model, a.prior, a.preprocess, a.data)
    assert "data_set_defaults" not in json.loads((tmp_path / "second" / "run.json").read_text())
    with pytest.raises(ValueError, match="resume continues"):
        fit(run_dir=tmp_path / "first", spec=first.spec, resume=True)


@pytest.mark.parametrize("options, message", [
    ({"select": "best"}, "select must be one of 'final', 'best-validation'"),
    ({"lr_schedule": "Cosine"}, "lr_schedule must be one of 'cosine', 'constant'"),
    ({"precision": "fp16"}, "precision must be one of 'fp32', 'bf16'"),
    ({"precision": 32}, "precision must be one of"),
])
def test_a_choice_is_a_literal_type_and_anything_else_is_refused_naming_the_choices(options, message):
    """The choices live in the spec's Literal types (LR_SCHEDULES, SELECTIONS, PRECISIONS are read from
    them), and the field check refuses any other value, naming the option and its choices."""
    import typing

    from pyro_sus.nn import PRECISIONS
    from pyro_sus.spec import LR_SCHEDULES, SELECTIONS

    hints = typing.get_type_hints(TrainConfig)
    assert (typing.get_args(hints["select"]), typing.get_args(hints["lr_schedule"]),
            typing.get_args(hints["precision"])) == (SELECTIONS, LR_SCHEDULES, tuple(PRECISIONS))
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)

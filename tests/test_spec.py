"""The run specification: one JSON round trip, older run.json files still read, bad ones refused."""

import dataclasses
import json
from pathlib import Path

import pytest

from pyro_sus.run import run_spec
from pyro_sus.spec import DataSpec, PriorSpec, RunSpec, SplitSpec, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_a_run_spec_survives_its_json_form_and_the_split_follows_the_training_seed():
    spec = run_spec("m2", hidden_classes=[7, 8, 9], unseen_classes=[6], labelled_fraction=0.2, extra_slots=4,
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

    from pyro_sus.split import make_split

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


def _given_split(y, labels=None, weights=None):
    """Every point of classes 0-4 labelled (with ``labels`` given in place of the data's), the rest unlabelled."""
    import numpy as np

    from pyro_sus.split import Split

    points = np.arange(len(y))
    labelled, unlabelled = points[y < 5], points[y >= 5]
    return Split((0, 1, 2, 3, 4), (5, 6, 7, 8, 9), 5, labelled, unlabelled, np.zeros(0, dtype=np.int64), 3, (),
                 labels, weights)


def test_fit_trains_a_given_split_with_its_own_labels_and_weights(tmp_path):
    """fit(split=...) trains on the split as given, its labels and weights in place of the data's, and
    run.json / split.npz keep it, so that resume and load read the same split back."""
    import numpy as np

    from pyro_sus import fit, load
    from pyro_sus.data import load_dataset
    from pyro_sus.run import training_data

    data = load_dataset("digits")
    n = int((data.y_train < 5).sum())
    labels = np.where(np.arange(n) % 3 == 0, -1, (data.y_train[data.y_train < 5] + 1) % 5)  # not the data's
    weights = np.where(labels < 0, 0.0, 0.5)
    run = fit("betavae", data, tmp_path / "given", split=_given_split(data.y_train, labels, weights),
              model_options={"hidden_dims": [8], "z_dim": 2}, train_options={"epochs": 1, "batch_size": 64},
              progress=False, plot=False)
    assert run.spec.split == SplitSpec(hidden_classes=(5, 6, 7, 8, 9), extra_slots=5, validation_fraction=0.0,
                                       seed=3, given=True)
    back = load(tmp_path / "given")
    np.testing.assert_array_equal(back.split.labels, labels)
    np.testing.assert_array_equal(back.split.label_weights, weights)
    tensors = training_data(data, back.split, back.preprocessor)
    np.testing.assert_array_equal(tensors.y_labelled.numpy(), np.maximum(labels, 0))  # slot c is class c here
    np.testing.assert_allclose(tensors.w_labelled.numpy(), weights)
    with pytest.raises(ValueError, match="given whole"):
        back.spec.split.make(data.y_train)
    with pytest.raises(ValueError, match=r"split options \['labelled_fraction'\]"):
        fit("betavae", data, tmp_path / "both", split=_given_split(data.y_train, labels, weights),
            labelled_fraction=0.2, progress=False)
    with pytest.raises(ValueError, match="takes no per-label weights"):
        fit("m2", data, tmp_path / "m2", split=_given_split(data.y_train, labels, weights), progress=False)
    assert not (tmp_path / "m2").exists()


@pytest.mark.parametrize("change, message", [
    (lambda y, n: ([7] * n, [1.0] * n), "not its known classes"),
    (lambda y, n: ([-1] * n, [0.5] * n), "no label .-1. must have weight 0"),
    (lambda y, n: ([0] * n, [1.5] * n), r"weights must lie in \[0, 1\]"),
    (lambda y, n: ([0] * (n - 1), [1.0] * (n - 1)), "labels and"),
    (lambda y, n: ([-1] * n, None), "must have weight 0"),
])
def test_a_given_split_whose_labels_do_not_fit_is_refused_before_anything_is_written(tmp_path, change, message):
    import numpy as np

    from pyro_sus import fit
    from pyro_sus.data import DataError, load_dataset

    data = load_dataset("digits")
    labels, weights = change(data.y_train, int((data.y_train < 5).sum()))
    split = _given_split(data.y_train, np.array(labels), None if weights is None else np.array(weights))
    with pytest.raises(DataError, match=message):
        fit("betavae", data, tmp_path / "bad", split=split, train_options={"epochs": 1}, progress=False)
    assert not (tmp_path / "bad").exists()


def test_init_from_starts_a_run_at_another_runs_weights(tmp_path):
    """A run with ``init_from`` starts at that run's final weights, not its seed's (a learning rate of
    1e-12 keeps them within 1e-6); weights of another model's shapes are refused, naming the file."""
    import torch

    from pyro_sus import fit

    tiny = {"hidden_classes": [8, 9], "labels_per_class": 5, "progress": False, "evaluate_after": False,
            "plot": False, "model_options": {"hidden_dims": [8], "z_dim": 2}}
    first = fit("m2", "digits", tmp_path / "first", train_options={"epochs": 2, "seed": 1}, **tiny)
    start = tmp_path / "first" / "final.pt"
    second = fit("m2", "digits", tmp_path / "second", init_from=start,
                 train_options={"epochs": 1, "seed": 2, "learning_rate": 1e-12}, **tiny)
    assert second.spec.init_from == str(start.resolve())
    for name, value in first.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], value, rtol=0, atol=1e-6)
    fresh = fit("m2", "digits", tmp_path / "fresh", train_options={"epochs": 1, "seed": 2, "learning_rate": 1e-12},
                **tiny)
    assert not torch.allclose(fresh.model.state_dict()["decoder.0.weight"], first.model.state_dict()["decoder.0.weight"])
    with pytest.raises(ValueError, match="holds weights of another model"):
        fit("m2", "digits", tmp_path / "other", init_from=start,
            **{**tiny, "model_options": {"hidden_dims": [16], "z_dim": 2}})
    assert not (tmp_path / "other").exists()

"""Every CLI command, smoke-run with tiny settings, plus the Python API behind it."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pyro_sus import evaluate, load, load_dataset, predict
from pyro_sus.cli import main
from pyro_sus.io import RunFileError
from pyro_sus.models import MODELS

TINY = ["--hidden-classes", "7", "8", "9", "--labelled-fraction", "0.2", "--extra-slots", "4",
        "--epochs", "2", "--hidden-dims", "16", "--z-dim", "2", "--batch-size", "64",
        "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "gmdgm"
    assert main(["train", "--model", "gmdgm", "--out", str(out)] + TINY) == 0
    return out


def test_train_writes_a_complete_run_folder(trained_run):
    for name in ("run.json", "final.json", "final.pt", "split.npz", "preprocess.npz", "last.pt", "final.pt",
                 "metrics.jsonl", "mapping.json", "results.json", "confusion.png", "learning_curves.png"):
        assert (trained_run / name).is_file(), name
    results = json.loads((trained_run / "results.json").read_text())
    assert results["regime"] == "semi-unsupervised" and results["n_slots"] == 11
    assert results["hidden_classes"] == [7, 8, 9]
    for part in ("validation", "test"):
        scored = results[part]
        # The confusion matrix (true class x mapped prediction, unmapped points left out) holds exactly
        # the correct predictions on its diagonal: accuracy is its trace over the points scored.
        diagonal = sum(row[i] for i, row in enumerate(scored["confusion_matrix"]))
        assert scored["accuracy"] == pytest.approx(diagonal / scored["n"])
        assert scored["novel_accuracy"] is not None
    assert len((trained_run / "metrics.jsonl").read_text().splitlines()) == 2
    mapping = json.loads((trained_run / "mapping.json").read_text())["slot_to_class"]
    assert mapping[:7] == list(range(7))
    # GCD protocol: one one-to-one assignment, made on the unlabelled training points. On the test set
    # it can beat neither the test set's own best one-to-one assignment (Hungarian) nor its majority
    # mapping (paper protocol), which are the best maps of their kinds for those very points.
    gcd = results["gcd"]
    assigned = [c for c in gcd["slot_to_class"] if c >= 0]
    assert len(assigned) == len(set(assigned)) == 10  # every class of digits, each to its own slot
    for part in ("unlabelled_train", "test"):
        assert all(0.0 <= gcd[part][k] <= 1.0 for k in ("all", "old", "new"))
    assert gcd["test"]["all"] <= results["test"]["hungarian_accuracy"] <= results["test"]["paper_protocol_accuracy"]


def test_evaluate_command_reproduces_results(trained_run, capsys):
    before = json.loads((trained_run / "results.json").read_text())
    assert main(["evaluate", str(trained_run)]) == 0
    printed = capsys.readouterr().out
    assert "paper-protocol" in printed and "GCD (unlabelled train): All" in printed and "GCD (test): All" in printed
    after = json.loads((trained_run / "results.json").read_text())
    assert after["test"] == before["test"]


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_predict_command(trained_run, tmp_path, suffix):
    data = load_dataset("digits")
    source = tmp_path / "new.npz"
    np.savez(source, x=data.x_test[:9].reshape(9, 8, 8))  # images in their natural shape
    target = tmp_path / f"out{suffix}"
    assert main(["predict", str(trained_run), str(source), "--output", str(target)]) == 0
    expected = predict(trained_run, data.x_test[:9])
    if suffix == ".csv":
        rows = list(csv.DictReader(target.open()))
        assert len(rows) == 9 and len([k for k in rows[0] if k.startswith("p_slot_")]) == 11
        assert [int(r["predicted_class"]) for r in rows] == expected["predicted_class"].tolist()
    else:
        with np.load(target) as got:
            assert np.array_equal(got["slot"], expected["slot"])
            np.testing.assert_allclose(got["probabilities"].sum(1), 1.0, rtol=1e-5)


def test_predicted_class_follows_the_validation_mapping(trained_run):
    run = load(trained_run)
    out = run.predict(load_dataset("digits").x_test)
    assert np.array_equal(out["predicted_class"], run.mapping[out["slot"]])
    assert np.array_equal(out["discovered"], out["slot"] >= 7)


def test_predict_rejects_wrong_shape(trained_run, tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 10)))
    assert main(["predict", str(trained_run), str(bad)]) == 2
    assert "trained on 64" in capsys.readouterr().err


def test_compare_puts_runs_side_by_side_from_their_results(trained_run, tmp_path, capsys):
    import shutil

    seeds = tmp_path / "seeds"
    for seed in (0, 1):  # a folder of seed runs counts as its seeds
        shutil.copytree(trained_run, seeds / f"seed{seed}")
    results = json.loads((trained_run / "results.json").read_text())
    (seeds / "seed1" / "results.json").write_text(json.dumps({**results, "test": {**results["test"], "accuracy": 0.5}}))
    table = tmp_path / "table.csv"
    assert main(["compare", str(trained_run), str(seeds), "--csv", str(table)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:4]]
    assert [row[0] for row in rows] == [str(trained_run), str(seeds / "seed0"), str(seeds / "seed1")]
    assert rows[0][5] == rows[1][5] == f"{100 * results['test']['accuracy']:.1f}" and rows[2][5] == "50.0"
    saved = list(csv.DictReader(table.open()))
    assert float(saved[2]["accuracy"]) == 0.5 and saved[0]["model"] == "gmdgm"
    assert main(["compare", str(trained_run), "--csv", str(table)]) == 2  # never overwritten unasked
    assert "--overwrite" in capsys.readouterr().err
    (seeds / "seed0" / "results.json").unlink()
    assert main(["compare", str(seeds)]) == 2
    assert "pyro-sus evaluate" in capsys.readouterr().err


def test_history_is_metrics_jsonl_as_records_or_a_frame(run_copy):
    run = load(run_copy)
    records = run.history()
    assert records == [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            run.history(as_frame=True)
    else:
        assert run.history(as_frame=True)["loss"].tolist() == [r["loss"] for r in records]
    (run_copy / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(RunFileError, match="one JSON record per line"):
        run.history()


def test_digits_trains_with_its_own_defaults_where_options_are_not_given(trained_run, tmp_path):
    from pyro_sus.data import TRAIN_DEFAULTS

    # TINY gives --epochs but not --lr: the learning rate is digits' own, and run.json says so.
    info = json.loads((trained_run / "run.json").read_text())
    assert info["train"]["epochs"] == 2 and info["train"]["learning_rate"] == TRAIN_DEFAULTS["digits"]["learning_rate"]
    assert info["data_set_defaults"] == {"learning_rate": TRAIN_DEFAULTS["digits"]["learning_rate"]}
    # Given, an option is taken as given; a data set without defaults of its own takes TrainConfig's.
    out = tmp_path / "given"
    assert main(["train", "--model", "m2", "--out", str(out), "--lr", "0.0005"] + TINY) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["train"]["learning_rate"] == 0.0005 and "data_set_defaults" not in info
    from pyro_sus import fit

    digits = load_dataset("digits")
    npz = tmp_path / "digits.npz"
    np.savez(npz, x=digits.x_train[:300], y=digits.y_train[:300])
    fit("m2", str(npz), tmp_path / "npz", labelled_fraction=0.2, model_options={"hidden_dims": [16], "z_dim": 2},
        train_options={"epochs": 1, "device": "cpu"}, progress=False)
    info = json.loads((tmp_path / "npz" / "run.json").read_text())
    assert info["train"]["learning_rate"] == 3e-4 and "data_set_defaults" not in info


def test_models_command_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODELS:
        assert name in out


def test_stop_and_resume_from_the_cli_matches_an_uninterrupted_run(tmp_path, capsys):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", "--model", "m2", "--out", str(straight)] + TINY) == 0
    assert main(["train", "--model", "m2", "--out", str(stopped), "--stop-after", "1"] + TINY) == 0
    assert "--resume" in capsys.readouterr().out
    assert not (stopped / "final.pt").exists()
    assert main(["train", "--out", str(stopped), "--resume", "--no-progress"]) == 0
    a, b = load(straight), load(stopped)
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), name
    assert json.loads((stopped / "results.json").read_text())["test"] == \
        json.loads((straight / "results.json").read_text())["test"]


def test_refuses_to_overwrite_a_run_and_rejects_bad_options(trained_run, capsys):
    assert main(["train", "--out", str(trained_run)] + TINY) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["train", "--model", "nope", "--out", str(trained_run.parent / "x")] + TINY) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["train", "--hidden-classes"] + [str(c) for c in range(10)] + ["--extra-slots", "0",
                 "--out", str(trained_run.parent / "y"), "--device", "cpu"]) == 2
    assert "nothing left to learn" in capsys.readouterr().err
    bad_model = trained_run.parent / "z"
    assert main(["train", "--known-mass", "1.5", "--hidden-classes", "9", "--out", str(bad_model)] + TINY[4:]) == 2
    assert "known_mass" in capsys.readouterr().err
    assert not bad_model.exists()  # nothing half-written to block a corrected retry


def test_corrupt_final_checkpoint_is_a_clear_error(trained_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    (copy / "final.pt").write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(copy)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "pyro_sus", "models"], capture_output=True, text=True, check=True)
    assert "gmdgm" in done.stdout


def test_top_level_help_loads_neither_torch_nor_pyro():
    """`pyro-sus --help` lists every command without importing torch (seconds); `train --help` still
    shows every option with its default (test_train_help_shows_every_default_once_and_the_models_own)."""
    code = ("import sys\nfrom pyro_sus.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'pyro') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED []" in done.stdout
    for command in ("train", "evaluate", "report", "predict", "compare", "active", "reproduce", "models"):
        assert f"    {command} " in done.stdout, command


def test_models_lists_the_registries_from_the_source_as_imported_and_without_torch():
    from pyro_sus.catalogue import catalogue
    from pyro_sus.models import MODELS
    from pyro_sus.posteriors import POSTERIORS
    from pyro_sus.priors import LATENT_PRIORS

    # (Tests may register parts of their own in this process: the built-in ones are pyro_sus's.)
    imported = [{name: (part.__doc__ or "").strip().splitlines()[0] for name, part in registry.items()
                 if part.__module__.startswith("pyro_sus.")} for registry in (MODELS, POSTERIORS, LATENT_PRIORS)]
    assert [entries for _, entries in catalogue()] == imported  # the same names and lines, read without importing
    code = ("import sys\nfrom pyro_sus.cli import main\nmain(['models'])\n"
            "print('LOADED', sorted(m for m in ('torch', 'pyro') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED []" in done.stdout and "  gmdgm " in done.stdout and "  class_gaussian " in done.stdout


def test_evaluate_function_on_a_loaded_run(trained_run):
    results = evaluate(load(trained_run), plot=False)
    assert set(results["test"]) >= {"accuracy", "known_accuracy", "novel_accuracy", "paper_protocol_accuracy",
                                    "hungarian_accuracy", "nmi", "ari", "confusion_matrix"}


def test_train_on_a_users_npz_without_a_test_set(tmp_path):
    data = load_dataset("digits")
    y = data.y_train.copy()
    y[(y >= 8) | (np.arange(len(y)) % 4 != 0)] = -1   # classes 8, 9 never labelled; 3/4 of the rest unlabelled
    # the user knows nothing about classes 8 and 9, so nothing scores the discovered clusters
    source = tmp_path / "mine.npz"
    np.savez(source, x=data.x_train, y=y)
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(source), "--extra-slots", "3", "--epochs", "1", "--hidden-dims", "16",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert "test" not in results and results["regime"] == "semi-unsupervised"
    assert results["n_slots"] == 11 and results["known_classes"] == list(range(8))
    with np.load(out / "split.npz") as split:
        assert results["validation"]["n"] == int((y[split["validation_idx"]] >= 0).sum()) > 0
    assert (out / "confusion.png").is_file()
    assert results["validation"]["novel_accuracy"] is None  # every scored point is of a known class


def test_swapped_parts_from_the_cli_survive_the_run_folder(tmp_path):
    """A flow posterior, a mixture prior and a user's class prior, trained and reloaded from disk."""
    out = tmp_path / "parts"
    class_probs = ["0.2"] * 7 + ["0.6", "0.6", "0.6", "0.6"]  # normalised by the prior: 7 known + 4 extra
    assert main(["train", "--model", "gmdgm", "--posterior", "flow", "--flow-layers", "2", "--flow-kind", "maf",
                 "--latent-prior", "mixture", "--prior-components", "2", "--class-probs", *class_probs,
                 "--out", str(out)] + TINY) == 0
    config = json.loads((out / "final.json").read_text())
    assert config["posterior"] == "flow" and config["posterior_options"] == {"transforms": 2, "kind": "maf"}
    assert config["latent_prior"] == "mixture" and config["latent_prior_options"] == {"components": 2}
    np.testing.assert_allclose(config["class_prior"], [0.2 / 3.8] * 7 + [0.6 / 3.8] * 4, rtol=1e-5)
    run = load(out)
    assert type(run.model.posterior).__name__ == "FlowPosterior"
    assert json.loads((out / "results.json").read_text())["model_options"]["posterior"] == "flow"


@pytest.mark.parametrize("model,extra", [("lcvae", ["--labelled-weight", "0.5", "--unlabelled-bound", "exact"]),
                                         ("am2", ["--a-dim", "3"]), ("classifier", []),
                                         ("m2", ["--labelled-scale", "dataset", "--adam-beta1", "0.95",
                                                 "--activation", "softplus"]),
                                         ("gmdgm", ["--precision", "bf16", "--model-option",
                                                    "y_estimator=gumbel-straight-through"]),
                                         ("m1", ["--select", "best-validation", "--patience", "1"])])
def test_model_specific_options_from_the_cli(model, extra, tmp_path):
    args = TINY
    if model == "classifier":  # no latent z: drop "--z-dim 2"
        at = TINY.index("--z-dim")
        args = TINY[:at] + TINY[at + 2:]
    out = tmp_path / model
    assert main(["train", "--model", model, "--out", str(out)] + extra + args) == 0
    assert "test" in json.loads((out / "results.json").read_text())
    if "--labelled-scale" in extra:
        train_options = json.loads((out / "run.json").read_text())["train"]
        assert (train_options["labelled_scale"], train_options["adam_beta1"]) == ("dataset", 0.95)
        assert json.loads((out / "run.json").read_text())["model_options"]["activation"] == "softplus"
    if "--select" in extra:
        results = json.loads((out / "results.json").read_text())
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert results["select"] == "best-validation" and results["selected_epoch"] == history[-1]["selected_epoch"]
        best = max(history, key=lambda r: r["val_accuracy"])  # the first of ties, as the trainer keeps
        assert results["selected_epoch"] == best["epoch"]
    if "--precision" in extra:
        saved = json.loads((out / "run.json").read_text())
        assert saved["train"]["precision"] == "bf16"
        assert saved["model_options"]["y_estimator"] == "gumbel-straight-through"


def test_bad_part_choices_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--posterior", "spline", "--out", str(tmp_path / "a")] + TINY) == 2
    assert "known posteriors" in capsys.readouterr().err
    assert main(["train", "--flow-layers", "3", "--out", str(tmp_path / "b")] + TINY) == 2
    assert "bad options for posterior 'normal'" in capsys.readouterr().err
    assert main(["train", "--model", "classifier", "--out", str(tmp_path / "c")] + TINY) == 2
    assert "bad options for model 'classifier'" in capsys.readouterr().err
    assert main(["train", "--class-probs", "0.5", "0.5", "--out", str(tmp_path / "d")] + TINY) == 2
    assert "11 probabilities" in capsys.readouterr().err
    assert main(["train", "--model", "lcvae", "--class-probs"] + ["1"] * 11 + ["--out", str(tmp_path / "e")] + TINY) == 2
    assert "no class prior" in capsys.readouterr().err
    assert main(["train", "--labelled-scale", "0", "--out", str(tmp_path / "f")] + TINY) == 2
    assert "labelled_scale must be 'batch', 'dataset' or a number > 0, got 0.0" in capsys.readouterr().err
    assert main(["--plugin", "no_such_module_xyz", "models"]) == 2
    assert "no_such_module_xyz" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abcdef")


def test_plugin_registers_a_users_prior_for_the_cli(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_priors.py").write_text(
        "import torch, pyro.distributions as dist\n"
        "from pyro_sus.priors import register_latent_prior, ClassGaussianPrior\n"
        "@register_latent_prior('student_t_test')\n"
        "class StudentT(ClassGaussianPrior):\n"
        "    '''p(z|y): Student-t per slot.'''\n"
        "    def forward(self, y):\n"
        "        return dist.StudentT(3.0, self.loc[y], self.log_scale[y].exp()).to_event(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    assert main(["--plugin", "my_priors", "train", "--latent-prior", "student_t_test", "--out", str(out)] + TINY) == 0
    assert main(["--plugin", "my_priors", "models"]) == 0
    assert "student_t_test" in capsys.readouterr().out
    assert main(["--plugin", "my_priors", "evaluate", str(out)]) == 0


def test_model_option_pairs_reach_the_config(tmp_path, capsys):
    out = tmp_path / "cat"
    assert main(["train", "--model", "catvae", "--model-option", "category_inference=gumbel",
                 "--model-option", "w_assignment=2.5", "--out", str(out)] + TINY) == 0
    config = json.loads((out / "final.json").read_text())
    assert config["category_inference"] == "gumbel" and config["w_assignment"] == 2.5
    assert main(["train", "--model-option", "oops", "--out", str(tmp_path / "bad")] + TINY) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_active_command_runs_rounds_resumes_and_rejects_bad_models(tmp_path, capsys):
    out = tmp_path / "active"
    args = ["active", "--dataset", "digits", "--rounds", "1", "--warmup-epochs", "1", "--epochs-per-round", "1",
            "--max-train", "200", "--budget", "20", "--device", "cpu", "--no-progress", "--out", str(out),
            "--model-option", "hidden_dims=[16]", "--model-option", "beta=1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "test acc" in printed and (out / "rounds.json").is_file()
    saved = json.loads((out / "active.json").read_text())["config"]
    assert saved["model_options"] == {"hidden_dims": [16], "beta": 1} and saved["max_train"] == 200
    assert main(["active", "--resume", "--out", str(out), "--no-progress"]) == 0  # finished: nothing to do
    # Each round is a run folder: `evaluate` scores it again, to the number the loop recorded.
    round_one = json.loads((out / "round_01" / "round.json").read_text())
    assert str(out / "round_01" / "run") in printed
    assert main(["evaluate", str(out / "round_01" / "run")]) == 0
    rescored = json.loads((out / "round_01" / "run" / "results.json").read_text())
    assert rescored["test"]["accuracy"] == round_one["test_accuracy"]
    assert main(["active", "--model", "m2", "--out", str(tmp_path / "m2")]) == 2
    assert "cannot run the active loop" in capsys.readouterr().err
    # --keep-all-dims reaches the model: digits keeps all 64 pixels (the std filter drops some), which
    # the conv networks (28 x 28 images) refuse by that size.
    from pyro_sus.spec import PreprocessSpec

    assert saved["std_threshold"] == PreprocessSpec.std_threshold
    assert main(["active", "--dataset", "digits", "--keep-all-dims", "--model-option", "networks=conv",
                 "--device", "cpu", "--no-progress", "--out", str(tmp_path / "conv")]) == 2
    assert "(x_dim 784), got x_dim 64" in capsys.readouterr().err


def test_train_flags_take_their_defaults_from_the_run_specification():
    """Each default lives once, in pyro_sus.spec / TrainConfig: the parser's defaults are those fields'."""
    import dataclasses

    from pyro_sus.cli import SPEC_FLAGS, build_parser
    from pyro_sus.spec import PreprocessSpec, PriorSpec, SplitSpec
    from pyro_sus.spec import TrainConfig

    parts = {"split": SplitSpec(), "preprocess": PreprocessSpec(), "prior": PriorSpec(), "train": TrainConfig()}
    args = build_parser().parse_args(["train"])
    for dest, (part, name) in SPEC_FLAGS.items():
        default = getattr(parts[part], name)
        assert getattr(args, dest) == (list(default) if isinstance(default, tuple) else default), dest
    assert args.no_binarize is not TrainConfig().binarize
    # Every field of the split, preprocessing and prior has a flag (the training ones: see train --help).
    # A validation set given with the data (SplitSpec.given_validation_points) comes with arrays
    # (SemiUnsupervisedClassifier.fit's X_val, y_val), and a split given whole (SplitSpec.given) as a
    # Split object (fit(..., split=...)), not with a data set a flag names.
    covered = {(part, name) for part, name in SPEC_FLAGS.values()} | {("split", "given_validation_points"),
                                                                       ("split", "given")}
    for part in ("split", "preprocess", "prior"):
        assert {(part, f.name) for f in dataclasses.fields(parts[part])} <= covered, part


def test_train_help_shows_every_default_once_and_the_models_own(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    options = " ".join(text.split()).split(" --")[1:]  # one chunk per option, its help joined
    assert "(default: None)" not in text
    for chunk in options:
        assert chunk.count("default") <= 1 or "(default), " in chunk, chunk  # "relu (default)" names a choice
    joined = " ".join(text.split())
    for shown in ("--epochs EPOCHS (default: 100; digits: 200, the data set's own)", "--seed SEED (default: 0)",
                  "--lr LR (default: 0.0003; digits: 0.001, the data set's own)",
                  "size of the latent z (default: 5)", "hidden layers (default: 500 500)",
                  "(default: 1.1 for the M2 family, 1.0 for m1)", "(default: 0.1)"):
        assert shown in joined, shown


def test_init_from_starts_a_run_at_another_runs_weights_and_resume_refuses_it(tmp_path, capsys):
    """--init-from RUN: the new run starts at RUN's final weights (with a learning rate of 1e-12 it
    ends there), run.json names the file; an unknown folder or --init-from with --resume is refused."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", *TINY, "--out", str(first)]) == 0
    assert main(["train", *TINY, "--seed", "5", "--lr", "1e-12", "--epochs", "1", "--init-from", str(first),
                 "--out", str(second)]) == 0
    assert json.loads((second / "run.json").read_text())["init_from"] == str((first / "final.pt").resolve())
    a, b = torch.load(first / "final.pt"), torch.load(second / "final.pt")
    assert all(torch.allclose(a[name], b[name], atol=1e-6) for name in a)
    capsys.readouterr()
    assert main(["train", *TINY, "--init-from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "init_from" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["train", "--resume", "--out", str(second), "--init-from", str(first)]) == 2
    assert "--init-from" in capsys.readouterr().err

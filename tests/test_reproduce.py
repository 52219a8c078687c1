"""`pyro-sus reproduce`: every registered experiment runs end to end (smoke settings), aggregation and
the results-page generator on fabricated run outputs, and a failing job that loses no other result."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

import pytest

from pyro_sus.cli import main
from pyro_sus.reproduce import aggregate, render_markdown, write_results_section
from pyro_sus.sweep import plan_jobs, run_jobs
from pyro_sus.tables import EXPERIMENTS, get_experiment


# The first row of every experiment, plus the rows with their own data handling: the US regime
# (no known class) and accidental SUS (hidden classes without slots, test set restricted).
SMOKE_ROWS = {name: [experiment.rows[0].label] for name, experiment in EXPERIMENTS.items()}
# A diagnostic of GM-DGM on Table II's data, whose model and data path Table II's smoke row already runs.
del SMOKE_ROWS["willetts-workshop-ablation"]
SMOKE_ROWS["willetts-table1-mnist"].append("accidental SUS (5-9 unlabelled, no extra slots)")
SMOKE_ROWS["willetts-table2-mnist"] = ["M2 US", "GM-DGM SUS"]


def test_every_registered_experiment_runs_end_to_end_with_smoke_settings(tmp_path, shared_data_dir, write_har):
    har = write_har(tmp_path / "har-data")
    paths = []
    for name, rows in SMOKE_ROWS.items():
        data_dir = str(har) if get_experiment(name).dataset == "har" else shared_data_dir
        paths += plan_jobs(name, tmp_path / "out", rows=rows, device="cpu", data_dir=data_dir, smoke=True)
    statuses = run_jobs(paths, jobs=2, threads=1)
    failed = [json.loads(Path(job).read_text())["log"] for job, code in statuses.items() if code]
    assert not failed, [Path(log).read_text()[-2000:] for log in failed]
    for name, rows in SMOKE_ROWS.items():
        summary = aggregate(name, tmp_path / "out")
        assert [r["row"] for r in summary["rows"]] == rows
        for row in summary["rows"]:
            assert row["smoke"] and row["seeds"] == [0] and row["epochs"] == [1]
            for metric in row["metrics"].values():
                assert metric["ours_mean"] is not None and 0 <= metric["ours_mean"] <= 100
    accidental = json.loads(next((tmp_path / "out" / "willetts-table1-mnist" / "runs").glob("accidental*/results.json"))
                            .read_text())
    assert accidental["n_slots"] == 5 and set(accidental["test"]["confusion_classes"]) <= {0, 1, 2, 3, 4}
    with pytest.raises(ValueError, match="smoke"):
        write_results_section(aggregate("pyro-ssvae-tutorial", tmp_path / "out"), tmp_path / "RESULTS.md")


def fabricate(tmp_path, name, row_values, epochs):
    """Job files through plan_jobs, and a results.json per run with the given test accuracies (None: failed).

    A row that chooses on validation gets the same test and validation accuracy for every choice, unless
    its value is a dict {choice text: (validation, test) or None}."""
    experiment = get_experiment(name)
    rows = list(row_values)
    paths = plan_jobs(name, tmp_path, seeds=max(len(v) for v in row_values.values()), epochs=epochs, rows=rows)
    for path in paths:
        job = json.loads(path.read_text())
        value = row_values[job["row"]][job["seed"]]
        validation = value
        if isinstance(value, dict):
            choice = ", ".join(f"{k}={v:g}" for k, v in job["candidate"].items())
            validation, value = value[choice] or (None, None)
        if value is None:
            continue
        metric = next(iter(experiment.row(job["row"]).paper))
        run_dir = Path(job["run_dir"])
        run_dir.mkdir(parents=True)
        (run_dir / "results.json").write_text(json.dumps({
            "seed": job["seed"], "epochs": epochs, "train_wall_seconds": 100.0 + job["seed"],
            "hardware": {"device": "cpu", "cpu": "x86_64", "torch_threads": 1},
            "validation": {"accuracy": validation}, "test": {metric: value}}))
    return paths


def test_aggregation_gives_mean_sd_and_difference_and_lists_failed_seeds(tmp_path):
    fabricate(tmp_path, "willetts-workshop-table1", {"M2": [0.70, 0.72, 0.74], "GM-DGM": [0.90, None, 0.92]}, 20)
    summary = aggregate("willetts-workshop-table1", tmp_path)
    m2, gmdgm = summary["rows"]
    accuracy = m2["metrics"]["paper_protocol_accuracy"]
    assert accuracy["ours_mean"] == pytest.approx(72.0) and accuracy["ours_sd"] == pytest.approx(2.0)
    assert accuracy["paper_mean"] == 74.3 and accuracy["difference"] == pytest.approx(72.0 - 74.3)
    assert m2["metrics"]["known_accuracy"]["ours_mean"] is None          # not in the fabricated results
    assert gmdgm["seeds"] == [0, 2] and gmdgm["failed_seeds"] == [1]
    assert m2["wall_seconds_per_run"] == pytest.approx(101.0)
    text = render_markdown(summary)
    assert "REDUCED" in text and "72.0 ± 2.0" in text and "-2.3" in text and "(1 not finished)" in text
    assert json.loads((tmp_path / "willetts-workshop-table1" / "summary.json").read_text()) == summary
    assert (tmp_path / "willetts-workshop-table1" / "summary.md").read_text() == text


def test_results_section_is_inserted_once_and_replaced_in_place(tmp_path):
    page = tmp_path / "RESULTS.md"
    page.write_text("# Results\n\nhand-written text\n\n## Later section\n")
    fabricate(tmp_path, "pyro-ssvae-tutorial", {"M2, 100 labels": [0.79, 0.80, 0.81, 0.80, 0.80]}, 50)
    write_results_section(aggregate("pyro-ssvae-tutorial", tmp_path), page)
    first = page.read_text()
    assert "hand-written text" in first and "| M2, 100 labels | honest accuracy | 80.0 ± 0.7 |" in first
    assert "REDUCED" not in first                                       # the paper's 50 epochs and 5 runs
    fabricate(tmp_path / "again", "pyro-ssvae-tutorial", {"M2, 100 labels": [0.85]}, 50)
    write_results_section(aggregate("pyro-ssvae-tutorial", tmp_path / "again"), page)
    second = page.read_text()
    assert second.count("BEGIN generated: pyro-sus reproduce pyro-ssvae-tutorial") == 1
    assert "| 85.0 |" in second and "80.0 ±" not in second and second.startswith(first.split("<!--")[0])
    assert "REDUCED" in second                                          # 1 of the paper's 5 runs


def test_the_command_line_names_each_group_of_rows_run_with_its_own_seeds(tmp_path):
    fabricate(tmp_path, "pyro-ssvae-tutorial", {"M2, 100 labels": [0.5, 0.6], "M2, 3000 labels": [0.9, 0.9]}, 50)
    only_first_rows = render_markdown(aggregate("pyro-ssvae-tutorial", tmp_path))
    assert ('Command: `pyro-sus reproduce pyro-ssvae-tutorial --rows "M2, 100 labels" "M2, 3000 labels" '
            '--seeds 2 --write-results`') in only_first_rows
    fabricate(tmp_path, "pyro-ssvae-tutorial", {"M2, 600 labels": [0.8], "M2, 1000 labels": [0.85]}, 50)
    text = render_markdown(aggregate("pyro-ssvae-tutorial", tmp_path))
    assert ('Commands: `pyro-sus reproduce pyro-ssvae-tutorial --rows "M2, 100 labels" "M2, 3000 labels" --seeds 2 '
            '--write-results`; `pyro-sus reproduce pyro-ssvae-tutorial --rows "M2, 600 labels" "M2, 1000 labels" '
            '--seeds 1 --write-results`') in text
    assert "| M2, 600 labels | honest accuracy | 80.0 |" in text


def test_a_row_whose_runs_all_failed_keeps_its_epochs_in_the_command(tmp_path):
    fabricate(tmp_path, "willetts-workshop-table1", {"M2": [0.70], "GM-DGM": [None]}, 20)
    text = render_markdown(aggregate("willetts-workshop-table1", tmp_path))
    assert "Command: `pyro-sus reproduce willetts-workshop-table1 --epochs 20 --seeds 1 --write-results`" in text
    assert "| GM-DGM | accuracy (paper protocol) | n/a | 90.7 ± 2.0 | n/a | 0 (1 not finished) |" in text


def test_each_seed_scores_the_choice_with_the_best_validation_accuracy(tmp_path):
    low, high = "learning_rate=0.00042", "learning_rate=0.0042"
    row = "M2, 600 labels"
    assert get_experiment("pyro-ssvae-tutorial").row(row).choose_on_validation == {"learning_rate": (4.2e-4, 4.2e-3)}
    fabricate(tmp_path, "pyro-ssvae-tutorial", {row: [
        {low: (0.80, 0.95), high: (0.90, 0.85)},   # the better test number is not the one chosen
        {low: (0.92, 0.91), high: (0.88, 0.99)},
        {low: (0.99, 0.99), high: None},           # a choice that failed: the seed is not scored
    ]}, 50)
    jobs = sorted(p.name for p in (tmp_path / "pyro-ssvae-tutorial" / "jobs").glob("*.json"))
    assert jobs == [f"m2-600-labels-learning-rate={lr}-seed{seed}.json" for lr in ("0.00042", "0.0042")
                    for seed in range(3)]
    summary = aggregate("pyro-ssvae-tutorial", tmp_path)
    (result,) = summary["rows"]
    assert result["metrics"]["accuracy"]["ours_mean"] == pytest.approx(88.0)   # 85 and 91
    assert result["seeds"] == [0, 1] and result["failed_seeds"] == [2]
    assert [s["chosen"] for s in result["chosen_on_validation"]] == [{"learning_rate": 4.2e-3},
                                                                     {"learning_rate": 4.2e-4}]
    assert result["wall_seconds_per_run"] == pytest.approx(201.0)             # both choices' training, per seed
    text = render_markdown(summary)
    assert f"- {row}, seed 0: {high} (validation: {low} 80.0, {high} 90.0)" in text
    # A job planned before the row had choices (no "candidate") is not one of its runs.
    stale = json.loads((tmp_path / "pyro-ssvae-tutorial" / "jobs" / jobs[0]).read_text())
    del stale["candidate"]
    (tmp_path / "pyro-ssvae-tutorial" / "jobs" / "m2-600-labels-seed5.json").write_text(json.dumps({**stale, "seed": 5}))
    assert aggregate("pyro-ssvae-tutorial", tmp_path)["rows"][0]["failed_seeds"] == [2]


def test_choices_must_be_training_options_and_need_a_validation_set(tmp_path):
    import dataclasses

    from pyro_sus.tables import Experiment, register_experiment

    base = get_experiment("pyro-ssvae-tutorial")
    row = base.rows[0]
    for bad, message in ((dataclasses.replace(row, choose_on_validation={"z_dim": (10, 50)}), "not training options"),
                         (dataclasses.replace(row, fit={**row.fit, "validation_fraction": 0}), "no validation set")):
        register_experiment(Experiment("test-bad-choice", base.paper, base.table, base.dataset, base.train, (bad,), 1),
                            replace=True)
        try:
            with pytest.raises(ValueError, match=message):
                plan_jobs("test-bad-choice", tmp_path)
        finally:
            EXPERIMENTS.pop("test-bad-choice")


def plugin_table(tmp_path, monkeypatch, module, registration):
    """A plugin module ``module`` in ``tmp_path`` registering a table of its own from Pyro's tutorial
    experiment (``base``), importable here and in the job processes."""
    (tmp_path / f"{module}.py").write_text(
        "import dataclasses\n"
        "import pyro_sus.experiments\n"
        "from pyro_sus.tables import Row, get_experiment, register_experiment\n"
        "base = get_experiment('pyro-ssvae-tutorial')\n" + registration)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))


def test_an_experiment_registered_by_a_plugin_runs_in_its_job_process(tmp_path, monkeypatch):
    # The job runs as `python -m pyro_sus.sweep`; the plugin must register into the package's
    # registry, not into that script's own copy of the module.
    plugin_table(tmp_path, monkeypatch, "my_table",
                 "register_experiment(dataclasses.replace(base, name='my-digits-table', dataset='digits', rows=(\n"
                 "    Row('M2, lr 1e-3', 'm2', {'labels_per_class': 5, 'std_threshold': None,\n"
                 "        'model_options': {'z_dim': 4, 'hidden_dims': [16]}}, {'accuracy': (50.0, None)},\n"
                 "        train={'batch_size': 50}, choose_on_validation={'learning_rate': (1e-3, 3e-3)}),)))\n")
    try:
        assert main(["--plugin", "my_table", "reproduce", "my-digits-table", "--smoke", "--out", str(tmp_path / "out"),
                     "--device", "cpu", "--threads", "1"]) == 0
        runs = sorted((tmp_path / "out" / "my-digits-table" / "runs").iterdir())
        assert [json.loads((run / "run.json").read_text())["train"]["learning_rate"] for run in runs] == [1e-3, 3e-3]
        assert len(aggregate("my-digits-table", tmp_path / "out")["rows"][0]["chosen_on_validation"]) == 1
    finally:
        EXPERIMENTS.pop("my-digits-table", None)


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance on this machine (2 CPUs), as a user's cluster would be, for the Ray engine's tests."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(params=["local", "ray"])
def engine(request):
    if request.param == "ray":
        request.getfixturevalue("local_ray")
    return request.param


def test_a_failing_job_is_reported_and_the_others_keep_their_results(tmp_path, shared_data_dir, engine):
    """The same semantics on both engines: failures isolated, finished runs skipped on a re-run."""
    good = plan_jobs("pyro-ssvae-tutorial", tmp_path / "good", rows=["M2, 100 labels"], device="cpu",
                     data_dir=shared_data_dir, smoke=True)
    bad = plan_jobs("pyro-ssvae-tutorial", tmp_path / "bad", rows=["M2, 600 labels"], device="cpu",
                    data_dir=str(tmp_path / "no-such-folder"), smoke=True)
    statuses = run_jobs(bad + good, jobs=2, threads=1, engine=engine)
    assert all(statuses[str(p)] != 0 for p in bad) and all(statuses[str(p)] == 0 for p in good)
    finished = tmp_path / "good" / "pyro-ssvae-tutorial" / "runs" / "m2-100-labels-learning-rate=0.00042-seed0"
    assert (finished / "results.json").is_file()
    assert "cannot find" in (tmp_path / "bad" / "pyro-ssvae-tutorial" / "logs"
                             / "m2-600-labels-learning-rate=0.00042-seed0.log").read_text()
    assert aggregate("pyro-ssvae-tutorial", tmp_path / "bad")["rows"][0]["failed_seeds"] == [0]
    assert aggregate("pyro-ssvae-tutorial", tmp_path / "good")["rows"][0]["seeds"] == [0]
    # Running again skips the finished jobs: their folders are untouched.
    stamp = (finished / "results.json").stat().st_mtime_ns
    assert run_jobs(good, jobs=1, threads=1, engine=engine) == {str(p): 0 for p in good}
    assert (finished / "results.json").stat().st_mtime_ns == stamp


def test_reproduce_on_ray_runs_the_smoke_entries_end_to_end(tmp_path, shared_data_dir, local_ray):
    """`pyro-sus reproduce --engine ray` joins the Ray instance this process is connected to (a test
    stands in for a cluster here), trains every run as a Ray task, resumes an interrupted one."""
    args = ["reproduce", "willetts-workshop-table1", "--smoke", "--engine", "ray", "--threads", "1", "--device", "cpu",
            "--out", str(tmp_path), "--data-dir", shared_data_dir]
    assert main(args) == 0
    summary = aggregate("willetts-workshop-table1", tmp_path)
    assert [(r["row"], r["seeds"], r["failed_seeds"]) for r in summary["rows"]] == [("M2", [0], []), ("GM-DGM", [0], [])]
    # An interrupted run (its results gone, its checkpoint kept) is resumed, a finished one skipped.
    runs = tmp_path / "willetts-workshop-table1" / "runs"
    (runs / "m2-seed0" / "results.json").unlink()
    stamp = (runs / "gm-dgm-seed0" / "results.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (runs / "m2-seed0" / "results.json").is_file()
    assert (runs / "gm-dgm-seed0" / "results.json").stat().st_mtime_ns == stamp


def test_jit_reaches_every_run_and_the_command_that_made_the_table(tmp_path, shared_data_dir):
    assert main(["reproduce", "willetts-table2-mnist", "--rows", "GM-DGM SUS", "--smoke", "--jit", "--device", "cpu",
                 "--threads", "1", "--out", str(tmp_path), "--data-dir", shared_data_dir]) == 0
    run = next((tmp_path / "willetts-table2-mnist" / "runs").iterdir())
    assert json.loads((run / "run.json").read_text())["train"]["jit"] is True
    summary = aggregate("willetts-table2-mnist", tmp_path)
    assert summary["rows"][0]["jit"] is True and ' --rows "GM-DGM SUS" --smoke --jit`' in render_markdown(summary)
    fabricate(tmp_path / "eager", "willetts-workshop-table1", {"M2": [0.70]}, 20)
    assert "--jit" not in render_markdown(aggregate("willetts-workshop-table1", tmp_path / "eager"))


def test_precision_reaches_every_run_and_the_command_that_made_the_table(tmp_path, shared_data_dir):
    assert main(["reproduce", "willetts-table2-mnist", "--rows", "M2 SUS, Gumbel-softmax y", "--smoke", "--precision",
                 "bf16", "--device", "cpu", "--threads", "1", "--out", str(tmp_path), "--data-dir", shared_data_dir]) == 0
    run = next((tmp_path / "willetts-table2-mnist" / "runs").iterdir())
    saved = json.loads((run / "run.json").read_text())
    assert saved["train"]["precision"] == "bf16" and saved["model_options"]["y_estimator"] == "gumbel-softmax"
    summary = aggregate("willetts-table2-mnist", tmp_path)
    assert summary["rows"][0]["precision"] == ["bf16"]
    assert " --smoke --precision bf16`" in render_markdown(summary)  # as run: a smoke section is never written
    fabricate(tmp_path / "fp32", "willetts-workshop-table1", {"M2": [0.70]}, 20)
    assert "--precision" not in render_markdown(aggregate("willetts-workshop-table1", tmp_path / "fp32"))


def test_planning_refuses_to_mix_runs_of_a_different_definition(tmp_path):
    fabricate(tmp_path, "pyro-ssvae-tutorial", {"M2, 100 labels": [0.80]}, 50)
    plan_jobs("pyro-ssvae-tutorial", tmp_path, seeds=1, epochs=50, rows=["M2, 100 labels"])  # same: fine
    with pytest.raises(ValueError, match="different definition"):
        plan_jobs("pyro-ssvae-tutorial", tmp_path, seeds=1, epochs=20, rows=["M2, 100 labels"])


def test_cli_lists_experiments_and_rejects_unknown_ones(capsys):
    assert main(["reproduce", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert name in listing
    assert "93.19" in listing and "needs the UCI HAR Dataset" in listing
    assert main(["reproduce", "no-such-table"]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path, shared_data_dir):
    """A run killed in its first epoch leaves its folder without last.pt: a re-run starts it over
    rather than refusing the non-empty folder. A folder holding anything else is left as it is."""
    stopped = plan_jobs("pyro-ssvae-tutorial", tmp_path / "a", rows=["M2, 100 labels"], device="cpu",
                        data_dir=shared_data_dir, smoke=True)[:1]  # one of its two learning rates
    run_dir = Path(json.loads(stopped[0].read_text())["run_dir"])
    run_dir.mkdir(parents=True)
    for name in ("run.json", "split.npz", "preprocess.npz", ".last.pt.x1y2.tmp"):
        (run_dir / name).write_text("cut short")
    assert run_jobs(stopped, threads=1) == {str(stopped[0]): 0}
    assert (run_dir / "results.json").is_file() and not (run_dir / ".last.pt.x1y2.tmp").exists()
    other = plan_jobs("pyro-ssvae-tutorial", tmp_path / "b", rows=["M2, 100 labels"], device="cpu",
                      data_dir=shared_data_dir, smoke=True)[:1]
    other_dir = Path(json.loads(other[0].read_text())["run_dir"])
    other_dir.mkdir(parents=True)
    (other_dir / "run.json").write_text("cut short")
    (other_dir / "notes.txt").write_text("mine")
    assert run_jobs(other, threads=1)[str(other[0])] != 0
    assert (other_dir / "notes.txt").read_text() == "mine" and (other_dir / "run.json").read_text() == "cut short"


# Recorded reproduction runs (docs/results/FOLDER/ROW-seedS-run.json) and the experiment they ran.
RECORDED_RUNS = {"mnist-sus-estimator": "willetts-table2-mnist", "bf16-parity": "willetts-table2-mnist",
                 "table1-mnist-20ep": "willetts-table1-mnist", "fashion-sus-20ep": "willetts-table2-fashion-mnist",
                 "mnist-sus-50ep": "willetts-table2-mnist"}


@pytest.mark.parametrize("folder", sorted(RECORDED_RUNS))
def test_a_stored_run_spec_replays_exactly_from_its_experiment(folder, tmp_path):
    """Moving the tables out of the runner changed no run: planning each recorded run's row, seed and
    epochs again gives, through the job's options, the run.json it was trained with (options added
    since are at their defaults)."""
    import dataclasses

    from pyro_sus.run import run_spec
    from pyro_sus.sweep import job_fit_options
    from pyro_sus.spec import TrainConfig

    experiment = get_experiment(RECORDED_RUNS[folder])
    slugs = {path.name[: -len(".json")]: json.loads(path.read_text())
             for path in plan_jobs(experiment.name, tmp_path, seeds=2, epochs=20, device="cpu")}
    records = sorted((Path(__file__).parents[1] / "docs" / "results" / folder).glob("*-run.json"))
    assert records
    defaults = {"train": {f.name: f.default for f in dataclasses.fields(TrainConfig)},
                "split": {"unseen_classes": [], "given_validation_points": 0, "given": False}}
    for record in records:
        stored = json.loads(record.read_text())
        job = slugs[record.name[: -len("-run.json")]]
        # How long, how fast and at what rounding are the command's choices, not the row's.
        job["epochs"] = stored["train"]["epochs"]
        job["precision"] = stored["train"].get("precision", "fp32")
        job["jit"] = stored["train"].get("jit", False)
        model, options = job_fit_options(job)
        replayed = run_spec(model, **options).to_json()
        assert replayed["model"] == stored["model"], record.name
        for part in ("split", "preprocess", "prior", "model_options", "train"):
            for key, value in replayed[part].items():
                assert stored[part].get(key, defaults.get(part, {}).get(key)) == value, (record.name, part, key)
            assert set(stored[part]) <= set(replayed[part]), (record.name, part)


def test_a_job_another_process_is_running_is_not_started_twice(tmp_path, shared_data_dir):
    """Two commands on one --out: the second leaves the job to the process holding its lock (no
    run folder touched, a line in the log, its own status), and runs it once the lock is free."""
    import fcntl

    from pyro_sus.sweep import ALREADY_RUNNING, run_one_job

    (job,) = plan_jobs("pyro-ssvae-tutorial", tmp_path, rows=["M2, 100 labels"], device="cpu",
                       data_dir=shared_data_dir, smoke=True)[:1]
    spec = json.loads(job.read_text())
    with open(job.with_suffix(".lock"), "a") as held:  # as the other process would
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_one_job(job, threads=1) == ALREADY_RUNNING
        assert not Path(spec["run_dir"]).exists()
        assert "another process is running this job" in Path(spec["log"]).read_text()
    assert run_one_job(job, threads=1) == 0 and (Path(spec["run_dir"]) / "results.json").is_file()
    with open(job.with_suffix(".lock"), "a") as held:  # finished: reported so, whoever holds the lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_one_job(job, threads=1) == 0


def test_a_row_s_training_options_override_the_experiment_s(tmp_path):
    from pyro_sus.sweep import job_fit_options

    label = "GM-DGM SUS, batch 4, learning rate 0.0002"
    (job_path,) = plan_jobs("willetts-table2-mnist", tmp_path, seeds=1, epochs=3, rows=[label], device="cpu")
    model, options = job_fit_options(json.loads(job_path.read_text()))
    assert model == "gmdgm"
    assert options["train_options"]["batch_size"] == 4
    assert options["train_options"]["learning_rate"] == pytest.approx(2e-4)
    assert options["train_options"]["epochs"] == 3


def test_reproduce_trains_a_rows_seeds_as_one_stack(tmp_path, monkeypatch):
    # A tiny digits table of its own (not smoke): two seeds of one row.
    plugin_table(tmp_path, monkeypatch, "stack_table",
                 "register_experiment(dataclasses.replace(base, name='stack-digits', dataset='digits', seeds=2,\n"
                 "    train={**base.train, 'epochs': 2}, rows=(\n"
                 "    Row('GM-DGM', 'gmdgm', {'labels_per_class': 5, 'hidden_classes': [8, 9], 'extra_slots': 2,\n"
                 "        'model_options': {'z_dim': 2, 'hidden_dims': [16]}}, {'accuracy': None},\n"
                 "        train={'batch_size': 128}),)))\n")
    out = tmp_path / "out"
    importlib.import_module("stack_table")
    try:
        paths = plan_jobs("stack-digits", out, device="cpu", plugins=["stack_table"])
        assert len(paths) == 2
        statuses = run_jobs(paths, threads=1)
        assert statuses == {str(p): 0 for p in paths}, [Path(json.loads(p.read_text())["log"]).read_text()[-1500:]
                                                        for p in paths]
        infos = [json.loads((Path(json.loads(p.read_text())["run_dir"]) / "run.json").read_text()) for p in paths]
        assert [info["stacked_with_seeds"] for info in infos] == [[0, 1], [0, 1]]
        assert [info["train"]["seed"] for info in infos] == [0, 1]
        assert "trained together" in Path(json.loads(paths[1].read_text())["log"]).read_text()
        summary = aggregate("stack-digits", out)
        assert summary["rows"][0]["seeds"] == [0, 1]
        # Each run gets the k-means baseline on its own split, and the summary its margin over it (issue 41).
        run_dirs = [Path(json.loads(p.read_text())["run_dir"]) for p in paths]
        theirs = [json.loads((d / "baselines" / "kmeans" / "results.json").read_text())["test"]["accuracy"]
                  for d in run_dirs]
        ours = [json.loads((d / "results.json").read_text())["test"]["accuracy"] for d in run_dirs]
        kmeans = summary["rows"][0]["kmeans"]
        assert kmeans["n"] == 2 and abs(kmeans["margin"] - 100 * (np.mean(ours) - np.mean(theirs))) < 1e-9
        assert "k-means on each run's own split" in render_markdown(summary)
        # Run again: both finished, nothing is trained.
        assert run_jobs(paths, threads=1) == {str(p): 0 for p in paths}
        unstacked = plan_jobs("stack-digits", tmp_path / "alone", device="cpu", plugins=["stack_table"])
        assert run_jobs(unstacked, threads=1, stack=False) == {str(p): 0 for p in unstacked}
        info = json.loads((Path(json.loads(unstacked[0].read_text())["run_dir"]) / "run.json").read_text())
        assert "stacked_with_seeds" not in info
    finally:
        EXPERIMENTS.pop("stack-digits", None)
        sys.modules.pop("stack_table", None)


def test_a_smoke_summary_names_the_command_as_run_and_its_short_wall_time(tmp_path):
    fabricate(tmp_path, "pyro-ssvae-tutorial", {"M2, 100 labels": [0.5]}, 1)
    for job in (tmp_path / "pyro-ssvae-tutorial" / "jobs").glob("*.json"):  # made smoke, as --smoke plans them
        spec = json.loads(job.read_text())
        spec["smoke"] = True
        job.write_text(json.dumps(spec))
        results = Path(spec["run_dir"]) / "results.json"
        results.write_text(json.dumps({**json.loads(results.read_text()), "train_wall_seconds": 0.43}))
    text = render_markdown(aggregate("pyro-ssvae-tutorial", tmp_path))
    assert 'Command: `pyro-sus reproduce pyro-ssvae-tutorial --rows "M2, 100 labels" --smoke`' in text
    assert "--write-results" not in text and "--epochs" not in text and "--seeds" not in text
    assert "| 0.86 |" in text  # under a second, not "0": the two learning rates the row chooses between, 0.43 s each


def test_a_reduced_row_is_a_snapshot_of_the_full_schedule_that_continues_to_it(tmp_path, monkeypatch):
    """--stop-after k trains each run to epoch k of the paper's schedule (not a squeezed one), scores
    it there and says so; a later --stop-after, or none, continues the same run folders, and the
    finished runs are the runs trained in one go (issue 38, item 3)."""
    plugin_table(tmp_path, monkeypatch, "snapshot_table",
                 "register_experiment(dataclasses.replace(base, name='snapshot-digits', dataset='digits', seeds=2,\n"
                 "    train={**base.train, 'epochs': 3, 'lr_schedule': 'cosine'}, rows=(\n"
                 "    Row('GM-DGM', 'gmdgm', {'labels_per_class': 5, 'hidden_classes': [8, 9], 'extra_slots': 2,\n"
                 "        'model_options': {'z_dim': 2, 'hidden_dims': [16]}}, {'accuracy': None},\n"
                 "        train={'batch_size': 256, 'select': 'best-validation'}),)))\n")
    importlib.import_module("snapshot_table")
    out = tmp_path / "out"
    try:
        def reproduce_until(stop_after):
            paths = plan_jobs("snapshot-digits", out, device="cpu", plugins=["snapshot_table"], stop_after=stop_after)
            assert run_jobs(paths, threads=1) == {str(p): 0 for p in paths}
            return [Path(json.loads(p.read_text())["run_dir"]) for p in paths]

        run_dirs = reproduce_until(1)
        results = [json.loads((d / "results.json").read_text()) for d in run_dirs]
        assert [r["snapshot"] for r in results] == [{"epoch": 1, "of": 3}] * 2
        assert all(r["epochs"] == 3 and r["selected_epoch"] == 1 for r in results)
        lr_at_1 = json.loads((run_dirs[0] / "metrics.jsonl").read_text().splitlines()[0])["lr"]
        assert lr_at_1 == pytest.approx(0.75 * base_rate())  # a third into the 3-epoch cosine, not squeezed to 0
        summary = aggregate("snapshot-digits", out)
        assert summary["rows"][0]["epochs"] == [1] and "| 1 of 3 |" in render_markdown(summary)
        assert "--stop-after 1 --write-results`" in render_markdown(summary)
        finished = reproduce_until(None)
        assert [len((d / "metrics.jsonl").read_text().splitlines()) for d in finished] == [3, 3]
        assert all("snapshot" not in json.loads((d / "results.json").read_text()) for d in finished)
        assert all("snapshot" not in json.loads((d / "run.json").read_text()) for d in finished)
        # The same runs as trained in one go: scoring a snapshot leaves the training state as it was.
        whole = [Path(json.loads(p.read_text())["run_dir"]) for p in
                 plan_jobs("snapshot-digits", tmp_path / "whole", device="cpu", plugins=["snapshot_table"])]
        jobs = sorted((tmp_path / "whole" / "snapshot-digits" / "jobs").glob("*.json"))
        assert run_jobs(jobs, threads=1) == {str(p): 0 for p in jobs}
        for ours, theirs in zip(finished, whole):
            assert json.loads((ours / "results.json").read_text())["test"]["accuracy"] == \
                json.loads((theirs / "results.json").read_text())["test"]["accuracy"]
            mine, one_go = (torch.load(d / "final.pt") for d in (ours, theirs))
            assert all(torch.allclose(mine[k], one_go[k], atol=1e-6) for k in one_go)
    finally:
        EXPERIMENTS.pop("snapshot-digits", None)
        sys.modules.pop("snapshot_table", None)


def base_rate():
    return get_experiment("pyro-ssvae-tutorial").train["learning_rate"]


def test_merge_summaries_keeps_the_experiments_row_order_and_the_row_with_most_seeds():
    """Rows run into different --out folders (or kept only as records) make one section."""
    from pyro_sus.fidelity import deviations
    from pyro_sus.reproduce import merge_summaries
    from pyro_sus.tables import get_experiment

    def summary(*rows):
        return {"experiment": "jurasinski-table1", "deviations": ["old"], "all_rows": True,
                "rows": [{"row": label, "seeds": seeds} for label, seeds in rows]}

    merged = merge_summaries([summary(("LCVAE lambda=0.5", [0]), ("M2 alpha=0", [0, 1])),
                              summary(("LCVAE lambda=0.5", [0, 1]), ("baseline (labelled-only classifier)", [0]),
                                      ("M2 alpha=0", [1]))])
    assert [(r["row"], r["seeds"]) for r in merged["rows"]] == [
        ("baseline (labelled-only classifier)", [0]), ("M2 alpha=0", [0, 1]), ("LCVAE lambda=0.5", [0, 1])]
    assert merged["deviations"] == deviations(get_experiment("jurasinski-table1")) and not merged["all_rows"]
    with pytest.raises(ValueError, match="not rows of 'jurasinski-table1'"):
        merge_summaries([summary(("M2 alpha=7", [0]))])
    with pytest.raises(ValueError, match="one experiment only"):
        merge_summaries([summary(), {**summary(), "experiment": "willetts-table2-mnist"}])


def test_a_section_of_squeezed_rows_and_snapshot_rows_names_each_rows_epochs():
    """A merged section whose rows ran 5 squeezed epochs beside snapshots at 10 of 100 says so per
    row ("5; 10 of 100"), never a cross product ("5, 10 of 5, 100")."""
    from pyro_sus.reproduce import merge_summaries, render_markdown

    def row(label, epochs, schedule, stop_after):
        return {"row": label, "model": "catvae", "seeds": [0, 1], "failed_seeds": [], "epochs": [epochs],
                "schedule_epochs": [schedule], "planned_epochs": [schedule], "stop_after": stop_after,
                "smoke": False, "wall_seconds_per_run": 12.0, "hardware": None, "jit": False, "precision": ["fp32"],
                "metrics": {"accuracy": {"ours_mean": 90.0, "ours_sd": 1.0, "paper_mean": 98.3, "paper_sd": 0.2,
                                         "difference": -8.3, "n": 2}}}

    base = {"experiment": "arias-figueroa-tables2-3", "paper": "p", "table": "t", "paper_epochs": 100,
            "paper_seeds": 5, "deviations": [], "all_rows": False}
    merged = merge_summaries([
        {**base, "rows": [row("categorical VAE (conv)", 5, 5, [])]},
        {**base, "rows": [row("categorical VAE (conv), losses of the released code, all labels", 10, 100, [10])]}])
    text = render_markdown(merged)
    assert "Ours: 5; 10 of 100 epochs, up to 2 seed(s)." in text
    assert "--epochs 5 --seeds 2" in text and "--stop-after 10 --seeds 2" in text

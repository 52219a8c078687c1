"""The hostile trial of 2026-12-04 (issue 35, docs/RELIABILITY.md): each case it found, as a test.

Data loss: no write through a link, one writer per run folder, predict never replaces a run file.
Memory: sizes are checked before anything is built. Silently wrong: refused with one line. Dead ends:
every error names a way out that works. Messages: one line, the right words.
"""

import errno
import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pyro_sus import fit, load, load_dataset
from pyro_sus.cli import main
from pyro_sus.io import RunFileError, load_checkpoint

from conftest import TINY, error_output

PLOTS = ("confusion.png", "slot_counts.png", "discovered.png")


def _victim(tmp_path, name="victim.txt"):
    victim = tmp_path / name
    victim.write_text("the user's own file\n")
    return victim


def _stopped_run(tmp_path, *extra, name="stopped"):
    """A TINY m2 run stopped after its first epoch (last.pt holds epoch 1)."""
    out = tmp_path / name
    assert main(["train", "--model", "m2", "--out", str(out), "--stop-after", "1"] + TINY + list(extra)) == 0
    return out


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# -- 1. plots are never written through a link -------------------------------------------------
def test_evaluate_replaces_a_planted_link_and_leaves_its_target_alone(run_copy, tmp_path):
    victims = {}
    for name in PLOTS:
        victims[name] = _victim(tmp_path, f"victim-{name}.txt")
        (run_copy / name).unlink(missing_ok=True)
        (run_copy / name).symlink_to(victims[name])
    assert main(["evaluate", str(run_copy)]) == 0
    for name, victim in victims.items():
        assert victim.read_text() == "the user's own file\n", name
        assert not (run_copy / name).is_symlink() and (run_copy / name).read_bytes()[:4] == b"\x89PNG", name


def test_resume_replaces_a_planted_learning_curves_link(tmp_path):
    out = _stopped_run(tmp_path)
    victim = _victim(tmp_path)
    (out / "learning_curves.png").unlink()
    (out / "learning_curves.png").symlink_to(victim)
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    assert victim.read_text() == "the user's own file\n"
    assert not (out / "learning_curves.png").is_symlink()


# -- 2. one writer per run folder ----------------------------------------------------------------
def _hold_lock(folder, what="trained"):
    """Another process holding the run folder's lock (as a trainer does) until it is killed."""
    ready = folder.parent / f".{folder.name}.ready"
    code = ("import sys, time, pathlib; from pyro_sus.io import run_folder_lock\n"
            f"with run_folder_lock({str(folder)!r}, {what!r}):\n"
            f"    pathlib.Path({str(ready)!r}).touch(); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the lock holder never started"
    return holder


def test_a_second_train_on_a_folder_in_use_is_refused_and_touches_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        before = sorted(p.name for p in out.iterdir())
        assert main(["train", "--model", "m2", "--out", str(out)] + TINY) == 2
        err = error_output(capsys)
        assert f"is being trained by process {holder.pid}" in err
        assert sorted(p.name for p in out.iterdir()) == before  # only the holder's lock file
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", "--model", "m2", "--out", str(out)] + TINY) == 0  # free again once the holder is gone


def test_evaluate_during_training_says_it_is_being_trained(tmp_path, capsys):
    out = _stopped_run(tmp_path)
    holder = _hold_lock(out)
    try:
        assert main(["evaluate", str(out)]) == 2
        err = error_output(capsys)
        assert "being trained" in err and "--resume" not in err
        assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
        assert "being trained" in error_output(capsys)
    finally:
        holder.kill()
        holder.wait()


# -- 3. predict never writes into the run folder -----------------------------------------------
@pytest.mark.parametrize("name", ["preprocess.npz", "split.npz", "new.csv"])
def test_predict_output_may_not_name_a_file_of_the_run_folder(run_copy, tmp_path, capsys, name):
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=load_dataset("digits").x_test[:3])
    before = {p.name: p.read_bytes() for p in run_copy.iterdir() if p.is_file()}
    assert main(["predict", str(run_copy), str(inputs), "--output", str(run_copy / name), "--overwrite"]) == 2
    assert "run folder" in error_output(capsys)
    assert {p.name: p.read_bytes() for p in run_copy.iterdir() if p.is_file()} == before


# -- 4. sizes are checked before anything is allocated -----------------------------------------
def test_an_edited_final_json_is_one_line_before_any_allocation(run_copy, tmp_path, capsys):
    _edit_json(run_copy / "final.json", lambda config: config.update(hidden_dims=[100_000_000]))
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=load_dataset("digits").x_test[:3])
    assert main(["predict", str(run_copy), str(inputs)]) == 2
    err = error_output(capsys)
    assert err.count("\n") == 1 and "does not match" in err and "final.json" in err


def test_an_edited_run_json_with_huge_sizes_is_refused_on_resume(tmp_path, capsys):
    out = _stopped_run(tmp_path)
    _edit_json(out / "run.json", lambda info: info["model_options"].update(hidden_dims=[10**12]))
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    err = error_output(capsys)
    assert "run.json" in err and "GiB" in err


def test_a_class_id_of_ten_to_the_twelve_is_refused_without_allocating(tmp_path, capsys):
    data = load_dataset("digits")
    y = data.y_train.copy()
    y[0] = 10**12
    np.savez(tmp_path / "big.npz", x=data.x_train, y=y)
    assert main(["train", "--dataset", str(tmp_path / "big.npz"), "--out", str(tmp_path / "run")] + TINY) == 2
    assert "class id 1000000000000" in error_output(capsys)


def test_the_metrics_count_over_the_classes_present_not_up_to_the_largest_id():
    from pyro_sus.metrics import gcd_assignment, hungarian_accuracy, majority_mapping

    labels = np.array([5, 2**31 - 1, 2**31 - 1, 5])
    slots = np.array([0, 1, 1, 0])
    assert majority_mapping(slots, labels, 2).tolist() == [5, 2**31 - 1]
    assert hungarian_accuracy(slots, labels, 2) == 1.0
    assert gcd_assignment(slots, labels, 3).tolist() == [5, 2**31 - 1, -1]


# -- 5. predict checks its inputs as training does -----------------------------------------------
def test_predict_refuses_inputs_outside_the_bernoulli_range(trained_run, tmp_path, capsys):
    raw = load_dataset("digits").x_test[:5] * 16  # the 0-16 grey levels scikit-learn ships
    np.savez(tmp_path / "raw.npz", x=raw)
    assert main(["predict", str(trained_run), str(tmp_path / "raw.npz"), "--output", str(tmp_path / "p.csv")]) == 2
    assert "needs inputs in [0, 1]" in error_output(capsys) and not (tmp_path / "p.csv").exists()


def test_predict_refuses_images_of_another_shape(trained_run):
    x = load_dataset("digits").x_test[:5].reshape(5, 4, 16)  # 64 values per point, but not 8 x 8
    with pytest.raises(ValueError, match=r"shape \[4, 16\] per point; this run was trained on \[8, 8\]"):
        load(trained_run).predict(x)


# -- 6. last.pt holds the options it was trained with ---------------------------------------------
@pytest.mark.parametrize("part,field,value", [("train", "learning_rate", 0.1), ("train", "epochs", 4),
                                              ("model_options", "z_dim", 3), ("prior", "known_mass", 0.7)])
def test_an_edited_run_json_is_refused_on_resume_naming_the_field(tmp_path, capsys, part, field, value):
    out = _stopped_run(tmp_path)
    _edit_json(out / "run.json", lambda info: info[part].update({field: value}))
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    err = error_output(capsys)
    assert f"{part}.{field} = {value!r}" in err and "last.pt" in err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # nothing trained on


# -- 7 and 16. data with one class (or none left) is refused ------------------------------------------
def test_single_class_data_with_extra_slots_is_refused(tmp_path, capsys):
    data = load_dataset("digits")
    keep = data.y_train == 3
    np.savez(tmp_path / "one.npz", x=data.x_train[keep], y=data.y_train[keep])
    assert main(["train", "--dataset", str(tmp_path / "one.npz"), "--out", str(tmp_path / "run"),
                 "--extra-slots", "3", "--epochs", "1", "--no-progress"]) == 2
    assert "has 1 class [3]" in error_output(capsys) and not (tmp_path / "run").exists()


def test_all_classes_unseen_is_called_unseen(tmp_path, capsys):
    assert main(["train", "--unseen-classes"] + [str(c) for c in range(10)] +
                ["--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"]) == 2
    err = error_output(capsys)
    assert "unseen" in err and "hidden" not in err


# -- 8. the API refuses numbers it would have to truncate ----------------------------------------------
@pytest.mark.parametrize("options,name", [
    ({"hidden_classes": [7.9, 8, 9]}, "hidden_classes"), ({"hidden_classes": [8, 9], "extra_slots": 2.7}, "extra_slots"),
    ({"hidden_classes": [8, 9], "labelled_fraction": "0.2"}, "labelled_fraction"),
    ({"hidden_classes": [8, 9], "labels_per_class": 3.5}, "labels_per_class"),
    ({"hidden_classes": "89"}, "hidden_classes")])
def test_fit_refuses_non_integers_and_strings(tmp_path, options, name):
    with pytest.raises(ValueError, match=name):
        fit("m2", "digits", tmp_path / "run", progress=False, **options)
    assert not (tmp_path / "run").exists()


def test_make_split_refuses_fractional_class_ids():
    from pyro_sus.data import DataError
    from pyro_sus.split import make_split

    with pytest.raises(DataError, match="hidden_classes must be integer class ids"):
        make_split(np.arange(20) % 4, hidden_classes=[2.5])


# -- 9. evaluate rebuilds a malformed mapping.json ---------------------------------------------------
@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_evaluate_rewrites_a_malformed_mapping(run_copy, capsys, command):
    (run_copy / "mapping.json").write_text("{broken")
    assert main([command, str(run_copy)]) == 0
    assert len(json.loads((run_copy / "mapping.json").read_text())["slot_to_class"]) == 11


# -- 10. the device may change on resume ----------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_run_started_on_cuda_continues_on_the_cpu(tmp_path, capsys):
    out = _stopped_run(tmp_path)
    _edit_json(out / "run.json", lambda info: info["train"].update(device="cuda"))
    state = load_checkpoint(out / "last.pt")
    state["train_config"]["device"], state["device"] = "cuda", "cuda"
    state["rng"]["shuffle"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state is 16 bytes
    torch.save(state, out / "last.pt")
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    assert "--device cpu" in error_output(capsys)
    assert main(["train", "--resume", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert "moved from cuda to cpu" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["train"]["device"] == "cpu"
    assert (out / "final.pt").is_file()


# -- 11. a run killed while being set up is no dead end -------------------------------------------------
def test_a_folder_holding_only_split_npz_is_started_by_the_same_command(trained_run, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "split.npz").write_bytes((trained_run / "split.npz").read_bytes())
    (out / ".run.json.abc.tmp").write_text("{")
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    assert "run the original train command again" in error_output(capsys)
    assert main(["train", "--model", "m2", "--out", str(out)] + TINY) == 0
    assert (out / "final.pt").is_file() and not (out / ".run.json.abc.tmp").exists()


# -- 12. best.pt lost at the end of a best-validation run ---------------------------------------------
def test_a_lost_best_checkpoint_ends_with_the_last_weights_and_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "m2", "--out", str(out), "--select", "best-validation"] + TINY) == 0
    for name in ("best.pt", "final.pt", "final.json"):  # as if killed after the last checkpoint
        (out / name).unlink()
    assert main(["evaluate", str(out)]) == 2
    assert "--resume" in error_output(capsys)
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    assert "best.pt was missing" in capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    assert info["selected_epoch"] == 2 and "best.pt was missing" in info["selection_note"]
    assert main(["evaluate", str(out)]) == 0


# -- 13. one line each -------------------------------------------------------------------------------------
def test_a_download_without_a_network_is_one_line(tmp_path, capsys, monkeypatch):
    datasets = pytest.importorskip("torchvision.datasets")

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://...\n<urlopen error>")

    monkeypatch.setattr(datasets, "MNIST", offline)
    assert main(["train", "--dataset", "mnist", "--download", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"]) == 2
    err = error_output(capsys)
    assert err.count("\n") == 1 and "download failed" in err and "copy the standard IDX files" in err


@pytest.mark.parametrize("damage,words", [
    (lambda s: s.pop("model"), "lacks 'model'"), (lambda s: s.update(history="ten"), "'history' is a str"),
    (lambda s: s.update(epoch=-100), "epoch -100"),
    (lambda s: s["rng"].update(torch=torch.zeros(3, dtype=torch.uint8)), "no valid random state"),
    (lambda s: s.update(model={"nothing": torch.zeros(1)}), "does not hold this run's training state")])
def test_a_last_checkpoint_with_the_wrong_contents_is_one_line(tmp_path, capsys, damage, words):
    out = _stopped_run(tmp_path)
    state = load_checkpoint(out / "last.pt")
    damage(state)
    torch.save(state, out / "last.pt")
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    err = error_output(capsys)
    assert err.count("\n") == 1 and words in err


def test_ctrl_c_while_the_modules_load_is_one_line(monkeypatch, capsys):
    import pyro_sus.cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pyro_sus.cli, "build_parser", interrupted)
    assert main(["models"]) == 130
    assert "interrupted before the command started" in error_output(capsys)


def test_the_command_line_module_loads_without_torch():
    """The console script imports pyro_sus.cli before main() runs: kept light, a Ctrl-C while torch
    loads lands in main's handler."""
    code = "import sys, pyro_sus.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("seed", ["-1", str(2**40)])
def test_seeds_outside_the_generators_range_are_one_line(tmp_path, capsys, seed):
    assert main(["train", "--out", str(tmp_path / "run"), "--seed", seed] + TINY) == 2
    assert "seed must lie in 0..4294967295" in error_output(capsys)


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(run_copy, capsys, monkeypatch):
    import pyro_sus.io

    before = (run_copy / "results.json").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pyro_sus.io.os, "fsync", full)
    assert main(["evaluate", str(run_copy)]) == 2
    err = error_output(capsys)
    assert "no space left on the device while writing" in err and "[Errno" not in err
    assert (run_copy / "results.json").read_bytes() == before
    assert not [p for p in run_copy.iterdir() if p.name.endswith(".tmp")]


def test_active_run_files_that_are_wrong_are_one_line(tmp_path, capsys):
    from pyro_sus.active.loop import AnswerBook, read_round_labels

    out = tmp_path / "active"
    out.mkdir()
    for content, words in (("{broken", "not valid JSON"), ('{"config": {"colour": 1}}', "unknown options ['colour']"),
                           ('{"config": {"rounds": 0}}', "rounds")):
        (out / "active.json").write_text(content)
        assert main(["active", "--resume", "--out", str(out), "--no-progress"]) == 2
        assert words in error_output(capsys)
    np.savez(out / "labels.npz", weights=np.ones(3))
    with pytest.raises(RunFileError, match="lacks the array 'labels'"):
        read_round_labels(out / "labels.npz", 3)
    (out / "answers.json").write_text('{"answers": [{"node": "1"}]}')
    with pytest.raises(RunFileError, match="not a list of answers"):
        AnswerBook(out / "answers.json", 10)


# -- 14. cleanup never hides the real error -----------------------------------------------------------
def test_a_dangling_link_as_out_is_named(tmp_path, capsys):
    out = tmp_path / "run"
    out.symlink_to(tmp_path / "gone")
    assert main(["train", "--out", str(out)] + TINY) == 2
    err = error_output(capsys)
    assert "is a link to" in err and "No such file" not in err


def test_a_read_only_out_names_the_folder_and_the_reason(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro" / "run"
    real_mkdir = pathlib.Path.mkdir

    def read_only(self, *args, **kwargs):
        if self == out:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    assert main(["train", "--out", str(out)] + TINY) == 2
    err = error_output(capsys)
    assert f"cannot create the run folder {out}" in err and "Read-only file system" in err


# -- 15. the printed resume command can be pasted ------------------------------------------------------
def test_the_printed_resume_command_is_shell_quoted(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", "m2", "--out", "sp ace/run 1", "--stop-after", "1"] + TINY) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    command = printed.split("continue with: ", 1)[1]
    assert command == "pyro-sus train --resume --out 'sp ace/run 1'"
    assert main(["train", "--resume", "--out", "sp ace/run 1", "--no-progress"]) == 0


# -- 16. the right words ----------------------------------------------------------------------------------
def test_evaluate_with_a_missing_dataset_does_not_say_the_run_trained_on_it(trained_run, tmp_path, capsys):
    assert main(["evaluate", str(trained_run), "--dataset", str(tmp_path / "elsewhere.npz")]) == 2
    err = error_output(capsys)
    assert "given with --dataset" in err and "was trained on data set 'digits'" in err


def test_a_text_file_as_data_is_not_called_a_pickle(tmp_path, capsys):
    (tmp_path / "notes.npz").write_text("just some text\n")
    assert main(["train", "--dataset", str(tmp_path / "notes.npz"), "--out", str(tmp_path / "run")] + TINY) == 2
    err = error_output(capsys)
    assert "is not a NumPy .npz/.npy file" in err and "pickle" not in err.split(":", 2)[2].split("never")[0]


def test_unsigned_labels_are_shown_as_they_are(tmp_path, capsys):
    data = load_dataset("digits")
    y = data.y_train.astype(np.uint64)
    y[0] = np.uint64(2**64 - 1)
    np.savez(tmp_path / "u.npz", x=data.x_train, y=y)
    assert main(["train", "--dataset", str(tmp_path / "u.npz"), "--out", str(tmp_path / "run")] + TINY) == 2
    assert f"class id {2**64 - 1} (uint64)" in error_output(capsys)


def test_a_refused_checkpoint_gives_none_of_torchs_advice(run_copy, capsys):
    torch.save({"weights": eval}, run_copy / "final.pt", _use_new_zipfile_serialization=False)
    assert main(["evaluate", str(run_copy)]) == 2
    err = error_output(capsys)
    assert "not a pyro_sus checkpoint" in err and "add_safe_globals" not in err and "weights_only" not in err


# -- 18. reproduce checks its options before writing jobs --------------------------------------------
@pytest.mark.parametrize("flag", ["--seeds", "--epochs", "--jobs"])
def test_reproduce_refuses_counts_below_one(tmp_path, capsys, flag):
    assert main(["reproduce", "zoo-digits-sus", "--smoke", "--out", str(tmp_path), flag, "-1"]) == 2
    assert f"{flag.lstrip('-')} must be an integer >= 1" in error_output(capsys)
    assert not any(tmp_path.iterdir())


# -- 19. the minor ones ----------------------------------------------------------------------------------
def test_a_failed_run_removes_the_parents_it_made(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "run"
    assert main(["train", "--model", "m2", "--out", str(out), "--lr", "1e12"] + TINY) == 2
    assert not (tmp_path / "a").exists()


def test_a_mapping_to_a_class_the_run_never_saw_is_refused(run_copy, tmp_path, capsys):
    _edit_json(run_copy / "mapping.json", lambda m: m["slot_to_class"].__setitem__(-1, 999999))
    np.savez(tmp_path / "x.npz", x=load_dataset("digits").x_test[:3])
    assert main(["predict", str(run_copy), str(tmp_path / "x.npz")]) == 2
    assert "run's classes" in error_output(capsys)


def test_negative_extra_slots_in_run_json_are_refused(run_copy, capsys):
    _edit_json(run_copy / "run.json", lambda info: info["split"].update(extra_slots=-3))
    assert main(["evaluate", str(run_copy)]) == 2
    assert "extra_slots" in error_output(capsys)


def test_data_without_any_label_still_clusters():
    """Only one labelled class is refused: data with no label at all is clustering, which is allowed."""
    from pyro_sus.split import make_split

    split = make_split(np.full(50, -1), extra_slots=3, seed=0)
    assert split.regime == "unsupervised" and split.n_slots == 3 and len(split.unlabelled_idx) == 45

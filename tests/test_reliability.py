"""Bad inputs and interruptions (docs/RELIABILITY.md): nothing runs from a checkpoint, no file is
overwritten unasked, no run folder is left in a dead end, and each mistake is one line naming the fix."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pyro_sus import fit, load, load_dataset
from pyro_sus.cli import main
from pyro_sus.io import UnsafeCheckpointError, load_checkpoint

from conftest import TINY, error_output as _error


class _RunsCode:
    """A pickle payload that touches a marker file when unpickled (what a crafted checkpoint does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# -- 1. no code runs from a checkpoint --------------------------------------------------------
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_crafted_final_checkpoint_is_refused_and_runs_nothing(run_copy, tmp_path, capsys, command):
    marker = tmp_path / "ran"
    torch.save({"weights": _RunsCode(marker)}, run_copy / "final.pt")
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=load_dataset("digits").x_test[:3])
    args = [command, str(run_copy)] + ([str(inputs)] if command == "predict" else [])
    assert main(args) == 2
    assert "refused to load" in _error(capsys) and not marker.exists()


def test_a_crafted_last_checkpoint_is_refused_on_resume(tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "ran"
    assert main(["train", "--model", "m2", "--out", str(out), "--stop-after", "1"] + TINY) == 0
    state = load_checkpoint(out / "last.pt")
    state["history"] = _RunsCode(marker)
    torch.save(state, out / "last.pt")
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    assert "refused to load" in _error(capsys) and not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system|nt.system"):
        load_checkpoint(out / "last.pt")
    assert not marker.exists()


def test_a_checkpoint_holding_a_numpy_array_is_refused_before_it_is_unpickled(tmp_path, capsys):
    """pyro_sus writes tensors and plain data only; an ndarray would make numpy's reconstruction run."""
    stopped = tmp_path / "stopped"
    assert main(["train", "--model", "m2", "--out", str(stopped), "--stop-after", "1"] + TINY) == 0
    state = load_checkpoint(stopped / "last.pt")
    name, keys, position, has_gauss, cached = state["rng"]["numpy"]
    state["rng"]["numpy"] = (name, keys.numpy().astype(np.uint32), position, has_gauss, cached)
    torch.save(state, stopped / "last.pt")
    assert main(["train", "--resume", "--out", str(stopped), "--no-progress"]) == 2
    assert "refused to load" in _error(capsys)
    with pytest.raises(UnsafeCheckpointError, match="_reconstruct"):
        load_checkpoint(stopped / "last.pt")


# -- 2. predict never overwrites unasked, never its input -------------------------------------
def test_predict_refuses_to_overwrite_its_input_or_an_existing_file(trained_run, tmp_path, capsys):
    source = tmp_path / "data.npz"
    np.savez(source, x=load_dataset("digits").x_test[:5])
    before = source.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(["predict", str(trained_run), str(source), "--output", str(source)] + extra) == 2
        assert "is the input file" in _error(capsys)
    assert source.read_bytes() == before
    target = tmp_path / "out.csv"
    target.write_text("keep me\n")
    assert main(["predict", str(trained_run), str(source), "--output", str(target)]) == 2
    assert "--overwrite" in _error(capsys) and target.read_text() == "keep me\n"
    default = tmp_path / "data_predictions.csv"
    default.write_text("keep me too\n")
    assert main(["predict", str(trained_run), str(source)]) == 2  # the default name is checked the same way
    assert default.read_text() == "keep me too\n"
    assert main(["predict", str(trained_run), str(source), "--output", str(target), "--overwrite"]) == 0
    assert target.read_text().startswith("slot,predicted_class")


# -- 3. no dead-end run folders ---------------------------------------------------------------
@pytest.mark.parametrize("bad,message", [
    (["--lr", "nan"], "learning_rate"), (["--lr", "inf"], "learning_rate"),
    (["--stop-after", "0"], "stop_after"), (["--stop-after", "-1"], "stop_after"),
    (["--model-option", 'z_dim="big"'], "z_dim"), (["--validation-fraction", "1.5"], "validation_fraction"),
])
def test_bad_options_fail_before_anything_is_written(tmp_path, capsys, bad, message):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out)] + TINY + bad) == 2
    assert message in _error(capsys)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_fails_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out)] + TINY + ["--device", "cuda"]) == 2
    assert "no CUDA device" in _error(capsys) and not out.exists()


def test_inputs_outside_the_bernoulli_range_fail_before_anything_is_written(tmp_path, capsys):
    data = load_dataset("digits")
    source = tmp_path / "wide.npz"
    np.savez(source, x=data.x_train * 16, y=data.y_train)
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(source), "--out", str(out)] + TINY) == 2
    assert "needs inputs in [0, 1]" in _error(capsys) and not out.exists()


def test_a_run_that_diverges_before_its_first_checkpoint_leaves_the_folder_usable(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "m2", "--out", str(out), "--lr", "1e12"] + TINY) == 2
    err = _error(capsys)
    assert "non-finite" in err and "Nothing was kept" in err
    assert not out.exists()
    assert main(["train", "--model", "m2", "--out", str(out)] + TINY) == 0  # the corrected command, same folder


def test_an_existing_file_as_out_is_a_clear_error(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    assert main(["train", "--out", str(target)] + TINY) == 2
    assert "is a file" in _error(capsys) and target.read_text() == "mine\n"


def test_ctrl_c_in_the_first_epoch_says_how_to_continue_and_resume_starts_over(trained_run, tmp_path, capsys,
                                                                                 monkeypatch):
    from pyro_sus.train import TrainingLoop

    straight, out = trained_run, tmp_path / "run"
    real_run = TrainingLoop.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TrainingLoop, "run", interrupted)
    assert main(["train", "--model", "m2", "--out", str(out)] + TINY) == 130
    assert f"continue with `pyro-sus train --resume --out {out}`" in capsys.readouterr().err
    assert (out / "run.json").is_file() and not (out / "last.pt").exists()
    monkeypatch.setattr(TrainingLoop, "run", real_run)
    assert main(["train", "--model", "m2", "--out", str(out)] + TINY) == 2  # a fresh run says what to do
    assert "--resume" in _error(capsys)
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    for (key, p), q in zip(load(straight).model.state_dict().items(), load(out).model.state_dict().values()):
        assert torch.equal(p, q), key


def test_a_run_killed_in_its_first_epoch_restarts_on_resume(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--model", "m2", "--out", str(out), "--epochs", "500"] + TINY[:10] + TINY[12:]
    process = subprocess.Popen([sys.executable, "-m", "pyro_sus"] + args, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "run.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (out / "run.json").is_file(), "the run never wrote run.json"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    if (out / "last.pt").exists():  # the machine was faster than the kill: nothing to test here
        pytest.skip("the first checkpoint was written before the kill")
    assert main(["train", "--resume", "--out", str(out), "--stop-after", "1", "--no-progress"]) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 1


# -- 4. evaluate and resume check the data they are given -------------------------------------
def test_evaluate_refuses_data_that_changed_and_finds_data_that_moved(tmp_path, digits_npz, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.chdir(digits_npz.parent)
    assert main(["train", "--dataset", digits_npz.name, "--out", str(out)] + TINY) == 0  # a relative path
    assert json.loads((out / "run.json").read_text())["dataset"] == str(digits_npz)
    monkeypatch.chdir(tmp_path.parent)
    assert main(["evaluate", str(out)]) == 0  # from another directory
    capsys.readouterr()
    with np.load(digits_npz) as data:
        arrays = dict(data)
    order = np.random.default_rng(0).permutation(len(arrays["x"]))
    before = (out / "results.json").read_bytes()
    for changed in ({**arrays, "x": arrays["x"][order], "y": arrays["y"][order]},   # reordered
                    {**arrays, "x": arrays["x"][:300], "y": arrays["y"][:300]}):    # shrunk
        np.savez(digits_npz, **changed)
        assert main(["evaluate", str(out)]) == 2
        assert "not the data" in _error(capsys)
        assert (out / "results.json").read_bytes() == before
    moved = tmp_path / "moved.npz"
    np.savez(moved, **arrays)
    digits_npz.unlink()
    assert main(["evaluate", str(out)]) == 2
    assert "--dataset" in _error(capsys)
    assert main(["evaluate", str(out), "--dataset", str(moved)]) == 0


def test_resume_checks_the_data_and_follows_it_where_it_moved(tmp_path, digits_npz, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(digits_npz), "--out", str(out), "--stop-after", "1"] + TINY) == 0
    with np.load(digits_npz) as data:
        arrays = dict(data)
    moved = tmp_path / "moved.npz"
    np.savez(moved, **{**arrays, "y": np.where(arrays["y"] == 3, 4, arrays["y"])})  # relabelled
    assert main(["train", "--resume", "--out", str(out), "--dataset", str(moved), "--no-progress"]) == 2
    assert "not the data" in _error(capsys)
    np.savez(moved, **arrays)
    digits_npz.unlink()
    assert main(["train", "--resume", "--out", str(out), "--dataset", str(moved), "--no-progress"]) == 0
    assert json.loads((out / "run.json").read_text())["dataset"] == str(moved)


# -- 5. one line naming the file or option, never a traceback --------------------------------
def test_a_hand_edited_mapping_is_a_clear_error(run_copy, tmp_path, capsys):
    saved = json.loads((run_copy / "mapping.json").read_text())
    inputs = tmp_path / "x.npy"
    np.save(inputs, load_dataset("digits").x_test[:4])
    for broken in ({**saved, "slot_to_class": saved["slot_to_class"][:3]}, {"slot_to_class": "none"}, "[1, 2"):
        (run_copy / "mapping.json").write_text(broken if isinstance(broken, str) else json.dumps(broken))
        assert main(["predict", str(run_copy), str(inputs), "--output", str(tmp_path / "p.csv")]) == 2
        err = _error(capsys)
        assert "mapping.json" in err and ("pyro-sus evaluate" in err or "not valid JSON" in err)


@pytest.mark.parametrize("name,content", [("run.json", "{not json"), ("run.json", '{"model": "m2"}'),
                                          ("final.json", "[1, 2]"), ("split.npz", "garbage")])
def test_a_broken_run_file_is_named(run_copy, capsys, name, content):
    (run_copy / name).write_text(content)
    assert main(["evaluate", str(run_copy)]) == 2
    assert name in _error(capsys)


@pytest.mark.parametrize("content", ["{not json", '{"validation_quantiles": "high"}', "[0.1, 0.2]"])
def test_a_broken_open_set_file_is_named_by_predict(run_copy, tmp_path, capsys, content):
    inputs = tmp_path / "x.npy"
    np.save(inputs, load_dataset("digits").x_test[:4])
    (run_copy / "open_set.json").write_text(content)
    assert main(["predict", str(run_copy), str(inputs), "--output", str(tmp_path / "p.csv"), "--flag-unknown",
                 "0.05"]) == 2
    assert "open_set.json" in _error(capsys)
    assert not (tmp_path / "p.csv").exists()


def test_a_corrupt_best_checkpoint_is_named_when_the_run_ends(tmp_path, capsys):
    """best.pt (select best-validation) is read back when a run ends (here: resuming a finished run,
    which trains nothing more): a broken one is one line naming it."""
    out = tmp_path / "best"
    assert main(["train", "--model", "m2", "--out", str(out), "--select", "best-validation"] + TINY) == 0
    (out / "best.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out)]) == 2
    assert "best.pt" in _error(capsys)


def test_a_pickled_data_file_is_refused_without_numpys_advice(trained_run, tmp_path, capsys):
    source = tmp_path / "data.npz"
    source.write_bytes(pickle.dumps({"x": [1, 2, 3]}))
    assert main(["train", "--dataset", str(source), "--out", str(tmp_path / "run")] + TINY) == 2
    err = _error(capsys)
    assert "pickled" in err and "numpy.savez" in err and "allow_pickle" not in err
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([[1.0], "a"], dtype=object), y=np.zeros(2))
    assert main(["predict", str(trained_run), str(objects), "--output", str(tmp_path / "p.csv")]) == 2
    err = _error(capsys)
    assert "holds Python objects" in err and "allow_pickle" not in err


# -- 6. nothing silently accepted -------------------------------------------------------------
def test_a_label_outside_0_to_c_minus_1_warns_and_a_declared_class_list_is_enforced(tmp_path, digits_npz):
    with np.load(digits_npz) as data:
        arrays = dict(data)
    arrays["y"] = arrays["y"].copy()
    arrays["y"][0] = 99
    odd = tmp_path / "odd.npz"
    np.savez(odd, **arrays)
    with pytest.warns(UserWarning, match=r"0-9, 99 \(no point of 10-98\)"):
        load_dataset(str(odd))
    np.savez(odd, **arrays, classes=np.arange(10))
    with pytest.raises(ValueError, match=r"\[99\], which are not among the classes"):
        load_dataset(str(odd))


def test_one_slot_is_refused(tmp_path, capsys):
    args = ["train", "--hidden-classes", *map(str, range(1, 10)), "--extra-slots", "0", "--out", str(tmp_path / "r")]
    assert main(args + TINY[8:]) == 2
    assert "one slot" in _error(capsys) and not (tmp_path / "r").exists()


def test_resume_refuses_options_it_would_ignore(trained_run, capsys):
    before = (trained_run / "run.json").read_bytes()
    for extra in (["--epochs", "10"], ["--epochs", "100"], ["--lr", "1e-3"], ["--model", "gmdgm"]):
        assert main(["train", "--resume", "--out", str(trained_run)] + extra) == 2
        assert f"{extra[0]} would change them" in _error(capsys)
    assert (trained_run / "run.json").read_bytes() == before
    with pytest.raises(ValueError, match="cannot change them"):
        fit(run_dir=trained_run, resume=True, train_options={"epochs": 10})


def test_a_run_json_without_its_data_hash_is_refused_naming_what_it_lacks(tmp_path, digits_npz, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(digits_npz), "--out", str(out)] + TINY) == 0
    info = json.loads((out / "run.json").read_text())
    del info["data_sha256"]  # without it, no data could be checked to be the run's
    (out / "run.json").write_text(json.dumps(info))
    assert main(["evaluate", str(out)]) == 2
    assert "lacks ['data_sha256']" in _error(capsys)

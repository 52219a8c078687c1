"""Every test starts from a clean Pyro param store, with validation on and every RNG seeded."""

import os
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


@pytest.fixture(autouse=True)
def clean_pyro():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    np.random.seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def shared_data_dir():
    """The shared MNIST/Fashion-MNIST folder; tests that need it skip when it is absent."""
    path = os.environ.get("PYRO_SUS_DATA", SHARED_DATA)
    if not os.path.isdir(os.path.join(path, "mnist")):
        pytest.skip(f"no MNIST IDX files under {path}")
    return path


#: A run small enough for seconds on two cores: digits, classes 7-9 hidden, 2 epochs of 16 hidden units.
TINY = ["--hidden-classes", "7", "8", "9", "--labelled-fraction", "0.2", "--extra-slots", "4",
        "--epochs", "2", "--hidden-dims", "16", "--z-dim", "2", "--batch-size", "64",
        "--device", "cpu", "--no-progress"]


def error_output(capsys) -> str:
    """What a command printed on stderr, after checking it holds no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A finished TINY m2 run, trained once per session; copy it (``run_copy``) before changing it."""
    from pyro_sus.cli import main

    out = tmp_path_factory.mktemp("runs") / "base"
    assert main(["train", "--model", "m2", "--out", str(out)] + TINY) == 0
    return out


@pytest.fixture
def run_copy(trained_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    return copy


@pytest.fixture
def digits_npz(tmp_path):
    from pyro_sus import load_dataset

    data = load_dataset("digits")
    path = tmp_path / "digits.npz"
    np.savez(path, x=data.x_train, y=data.y_train, x_test=data.x_test, y_test=data.y_test)
    return path


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def write_har():
    """A writer of small copies of the UCI HAR layout: six activities (1-6) that differ in their mean."""

    def write(root, n_features=12, seed=0):
        rng = np.random.default_rng(seed)
        folder = Path(root) / "UCI HAR Dataset"
        for split, n in (("train", 300), ("test", 120)):
            (folder / split).mkdir(parents=True, exist_ok=True)
            y = np.arange(n) % 6 + 1
            x = np.clip(0.1 * rng.normal(size=(n, n_features)) + (y[:, None] - 3.5) / 5, -1, 1)
            np.savetxt(folder / split / f"X_{split}.txt", x, fmt="%.6e")
            np.savetxt(folder / split / f"y_{split}.txt", y, fmt="%d")
        return Path(root)

    return write

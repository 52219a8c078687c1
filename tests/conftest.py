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

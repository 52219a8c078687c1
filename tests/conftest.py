"""Every test starts from a clean Pyro param store, with validation on and every RNG seeded."""

import os

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

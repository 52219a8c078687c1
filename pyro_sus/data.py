"""Data sets behind one ``load_dataset`` (the split is :mod:`pyro_sus.split`'s, the input
preprocessing :mod:`pyro_sus.preprocess`'s).

Data sets: ``digits`` (scikit-learn's bundled 8x8 digits, the default, no files needed),
``mnist`` and ``fashion-mnist`` (standard IDX files in a data folder), and a user's ``.npz``
(``x``, ``y`` with -1 for unlabelled, optionally ``x_test``/``y_test``).
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


__all__ = [
    "DataError", "Dataset", "DATASETS", "load_dataset", "read_idx", "resolve_data_dir", "check_features",
    "check_labels", "read_arrays", "TRAIN_DEFAULTS", "train_defaults",
]

DATA_ENV = "PYRO_SUS_DATA"

#: Seeds (training and split) lie in 0..MAX_SEED, the range numpy's and torch's generators share.
MAX_SEED = 2**32 - 1

#: The largest class id a label may hold (2**31 - 1).
MAX_CLASS_ID = 2**31 - 1


class DataError(ValueError):
    """Input data is malformed: wrong shape, non-finite values, bad labels, truncated file."""


@dataclass
class Dataset:
    """Flattened features in [0, 1] (images) or real-valued, integer labels (-1 = unlabelled)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        self.x_train = check_features(self.x_train, f"{self.name} x_train")
        self.y_train = check_labels(self.y_train, len(self.x_train), f"{self.name} y_train")
        if (self.x_test is None) != (self.y_test is None):
            raise DataError(f"{self.name}: give both x_test and y_test or neither")
        if self.x_test is not None:
            self.x_test = check_features(self.x_test, f"{self.name} x_test")
            self.y_test = check_labels(self.y_test, len(self.x_test), f"{self.name} y_test")
            if self.x_test.shape[1] != self.x_train.shape[1]:
                raise DataError(f"{self.name}: x_test has {self.x_test.shape[1]} features, "
                                f"x_train has {self.x_train.shape[1]}")

    @property
    def classes(self) -> np.ndarray:
        """Sorted class ids seen in the training or test labels."""
        labels = [self.y_train] + ([self.y_test] if self.y_test is not None else [])
        every = np.concatenate(labels)
        return np.unique(every[every >= 0])


def check_features(x: np.ndarray, what: str = "x") -> np.ndarray:
    """Return ``x`` as float32 of shape (N, D), or raise DataError for empty or non-finite input."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{what} must have shape (N, ...) with N >= 1, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{what} must be real numbers, got dtype {x.dtype}")
    x = x.reshape(len(x), -1).astype(np.float32, copy=False)
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DataError(f"{what} holds NaN or inf in {len(rows)} rows (first: {rows[:5].tolist()})")
    return x


def check_labels(y: np.ndarray, n: int, what: str = "y") -> np.ndarray:
    """Return ``y`` as int64 of shape (n,), or raise DataError (-1 marks an unlabelled point)."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"{what} must have shape ({n},) to match the features, got {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError(f"{what} must hold integer class ids (-1 = unlabelled)")
    elif not np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_):
        raise DataError(f"{what} must hold integer class ids, got dtype {y.dtype}")
    # Checked before the cast: an unsigned 2**64 - 1 would otherwise turn into -1 (unlabelled), and
    # a class id of 10**12 would make every per-class table of the evaluation that large.
    if len(y) and (y.max() > MAX_CLASS_ID):
        raise DataError(f"{what} holds class id {int(y.max())} ({y.dtype}); class ids must lie in 0..{MAX_CLASS_ID} "
                        f"(-1 = unlabelled): renumber the classes")
    y = y.astype(np.int64)
    if (y < -1).any():
        raise DataError(f"{what} holds labels below -1 (-1 marks unlabelled): {np.unique(y[y < -1])[:5]}")
    return y


# -- IDX files --------------------------------------------------------------------------------
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or raw), checking its header and length against its contents."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        raise DataError(f"{path} is truncated or not a valid gzip file ({err}); delete it and fetch it again") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: header needs {header} bytes, file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path} is truncated or padded: header promises {shape} ({expected} bytes of data), "
                        f"file holds {len(raw) - header}; delete it and fetch it again")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The data folder: the argument, else ``$PYRO_SUS_DATA``, else None."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    return Path(chosen).expanduser() if chosen else None


_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_TORCHVISION = {"mnist": ("MNIST", "MNIST"), "fashion-mnist": ("FashionMNIST", "FashionMNIST")}


def _find_idx(folder_candidates: Sequence[Path], stem: str) -> Path | None:
    for folder in folder_candidates:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def _load_idx_dataset(name: str, data_dir: str | Path | None, download: bool) -> Dataset:
    root = resolve_data_dir(data_dir)
    tv_class, tv_folder = _TORCHVISION[name]
    if download:
        if root is None:
            raise DataError(f"download=True needs a data folder (data_dir or ${DATA_ENV})")
        try:
            import torchvision.datasets
        except ImportError:
            raise DataError("download=True needs torchvision: pip install 'pyro_sus[download]' (or copy the IDX "
                            f"files into {root / name})") from None
        for train in (True, False):
            try:
                getattr(torchvision.datasets, tv_class)(str(root / name), train=train, download=True)
            except Exception as err:  # no network, a proxy, a failed checksum: torchvision raises many types
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                raise DataError(f"{name}: the download failed ({type(err).__name__}: {reason}); without a network, "
                                f"copy the standard IDX files (train-images-idx3-ubyte.gz etc.) into {root / name} "
                                f"and run again without --download") from None
    if root is None:
        raise DataError(f"{name}: no data folder given. Pass data_dir (CLI: --data-dir) or set ${DATA_ENV} "
                        f"to a folder holding {name}/train-images-idx3-ubyte.gz etc.")
    # Our layout (root/name/), a folder holding the files itself, or torchvision's download layout.
    candidates = [root / name, root, root / name / tv_folder / "raw", root / tv_folder / "raw"]
    arrays = {}
    for split, stems in _IDX_FILES.items():
        for stem, key in zip(stems, ("x", "y")):
            path = _find_idx(candidates, stem)
            if path is None:
                raise FileNotFoundError(
                    f"{name}: cannot find {stem}.gz in {root / name} (also looked in {root}). "
                    f"Copy the standard IDX files there, or fetch them with torchvision: "
                    f"load_dataset({name!r}, data_dir=..., download=True) or `pyro-sus train --download`.")
            arrays[split + "_" + key] = read_idx(path)
    for split in _IDX_FILES:
        if len(arrays[split + "_x"]) != len(arrays[split + "_y"]):
            raise DataError(f"{name} {split}: {len(arrays[split + '_x'])} images but {len(arrays[split + '_y'])} labels")
    return Dataset(name, arrays["train_x"] / np.float32(255), arrays["train_y"],
                   arrays["test_x"] / np.float32(255), arrays["test_y"], image_shape=arrays["train_x"].shape[1:])


def _load_digits(data_dir: str | Path | None = None, download: bool = False) -> Dataset:
    """scikit-learn's 1,797 8x8 digits, scaled to [0, 1]; a fixed stratified 20% is the test set."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, bunch.target, test_size=0.2, stratify=bunch.target, random_state=0)
    return Dataset("digits", x_train, y_train, x_test, y_test, image_shape=(8, 8))


HAR_FOLDER = "UCI HAR Dataset"


def _read_har_table(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"har: {path} is missing")
    try:
        return np.loadtxt(path, dtype=np.float64, ndmin=2 if what == "x" else 1)
    except ValueError as err:
        raise DataError(f"har: {path} is not a whitespace-separated table of numbers ({err})") from err


def _load_har(data_dir: str | Path | None = None, download: bool = False) -> Dataset:
    """The public UCI HAR data set in its own layout (``UCI HAR Dataset/{train,test}/X_*.txt``,
    ``y_*.txt``: 561 features in [-1, 1], activities 1-6 stored here as 0-5). Not bundled, never
    downloaded; the HAR set of Willetts et al. (Stisen et al.'s) is a different one."""
    root = resolve_data_dir(data_dir)
    if download:
        raise DataError("har: no download; get 'UCI HAR Dataset' from the UCI repository and pass its parent folder")
    if root is None:
        raise DataError(f"har: no data folder given. Pass data_dir (CLI: --data-dir) or set ${DATA_ENV} to a "
                        f"folder holding '{HAR_FOLDER}/'")
    candidates = [root / "har" / HAR_FOLDER, root / HAR_FOLDER, root / "har", root]
    folder = next((c for c in candidates if (c / "train" / "X_train.txt").is_file()), None)
    if folder is None:
        raise FileNotFoundError(f"har: cannot find '{HAR_FOLDER}/train/X_train.txt' under {root} "
                                f"(looked in {', '.join(str(c) for c in candidates)})")
    arrays = {}
    for split in ("train", "test"):
        x = _read_har_table(folder / split / f"X_{split}.txt", "x")
        y = _read_har_table(folder / split / f"y_{split}.txt", "y")
        if len(x) != len(y):
            raise DataError(f"har {split}: {len(x)} rows of features but {len(y)} labels")
        if (y != np.round(y)).any() or (y < 1).any():
            raise DataError(f"har {split}: activity labels must be integers from 1")
        arrays[split] = (x.astype(np.float32), y.astype(np.int64) - 1)
    return Dataset("har", arrays["train"][0], arrays["train"][1], arrays["test"][0], arrays["test"][1])


def read_arrays(path: str | Path, what: str = "arrays") -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` (or the one of a ``.npy``, as ``"x"``), never unpickling anything."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    advice = (f"save {what} with numpy.savez({path.name!r}, x=..., y=...) or numpy.save; pyro-sus never "
              f"unpickles a data file, since unpickling can run code")
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if not (magic.startswith(b"PK\x03\x04") or magic.startswith(b"\x93NUMPY")):
        # numpy calls anything that is neither a pickle; only a pickle's opening byte says it is one.
        kind = "holds pickled Python objects" if magic[:1] == b"\x80" else "is not a NumPy .npz/.npy file"
        raise DataError(f"{path} {kind}: {advice}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises ValueError, OSError, EOFError, BadZipFile for foreign files
        kind = "holds pickled Python objects" if "pickle" in str(err) else "is not a NumPy .npz/.npy file"
        raise DataError(f"{path} {kind}: {advice}") from None
    if isinstance(loaded, np.ndarray):
        return {"x": loaded}
    with loaded:
        arrays = {}
        for name in loaded.files:
            try:
                arrays[name] = loaded[name]
            except Exception:  # object arrays, or a member truncated inside the zip
                raise DataError(f"{path}: array {name!r} holds Python objects or is truncated: {advice}") from None
    if not arrays:
        raise DataError(f"{path} holds no arrays: {advice}")
    return arrays


def _check_class_ids(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Labels outside the classes the file declares are an error; without a declaration, labels
    that are not 0..C-1 are a warning (label 99 among digits would silently make an 11th class)."""
    labels = [check_labels(arrays[k], len(np.asarray(arrays[k])), f"{path} {k}") for k in ("y", "y_test") if k in arrays]
    present = np.unique(np.concatenate([y[y >= 0] for y in labels]))
    if "classes" in arrays:
        declared = np.asarray(arrays["classes"]).reshape(-1)
        stray = np.setdiff1d(present, declared)
        if len(stray):
            raise DataError(f"{path} labels points with {stray[:10].tolist()}, which are not among the classes "
                            f"the file declares ('classes': {declared[:20].tolist()})")
    elif len(present) and present[-1] != len(present) - 1:
        warnings.warn(f"{path}: labels should be the class ids 0..C-1, but they are {_ranges(present)} "
                      f"(no point of {_gaps(present)}), so {len(present)} classes are trained. If a label is a "
                      f"typo, fix the file; if these are the classes, add an array 'classes' listing them.",
                      UserWarning, stacklevel=3)


def _gaps(present: np.ndarray) -> str:
    """The ids from 0 to ``present``'s largest that ``present`` (sorted, unique) lacks, as ranges;
    computed from the gaps between its values, never by listing every id up to the largest."""
    parts, previous = [], -1
    for value in present.tolist():
        if value > previous + 1:
            parts.append(f"{previous + 1}" if value == previous + 2 else f"{previous + 1}-{value - 1}")
        previous = value
    return ", ".join(parts[:8]) + (", ..." if len(parts) > 8 else "")


def _ranges(values: np.ndarray) -> str:
    """``[0, 1, 2, 5, 99]`` as ``"0-2, 5, 99"``."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts[:8]) + (", ..." if len(parts) > 8 else "")


def _load_npz(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    data = read_arrays(path, "the data")
    missing = {"x", "y"} - set(data)
    if missing:
        raise DataError(f"{path} lacks arrays {sorted(missing)}; it needs 'x' and 'y' (-1 = unlabelled)")
    _check_class_ids(path, data)
    image_shape = tuple(data["x"].shape[1:]) if data["x"].ndim > 2 else None
    return Dataset(path.stem, data["x"], data["y"], data.get("x_test"), data.get("y_test"), image_shape=image_shape)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": _load_digits,
    "har": _load_har,
    "mnist": lambda data_dir=None, download=False: _load_idx_dataset("mnist", data_dir, download),
    "fashion-mnist": lambda data_dir=None, download=False: _load_idx_dataset("fashion-mnist", data_dir, download),
}


#: Training options a named data set runs with where they are not given, when TrainConfig's defaults
#: (set for MNIST: about 540 steps an epoch at 100 + 100 points) do not fit its size. Digits has 12
#: steps an epoch: 100 epochs at 3e-4 (1,200 steps) leave GM-DGM at 61.9% on the README's split
#: (novel classes 27.8%), 200 at 1e-3 reach 85.8 +- 5.0 (docs/RESULTS.md).
TRAIN_DEFAULTS: dict[str, dict[str, int | float]] = {
    "digits": {"epochs": 200, "learning_rate": 1e-3},
}


def train_defaults(dataset: object, given: Mapping[str, object] | None = None) -> dict[str, int | float]:
    """The training options of :data:`TRAIN_DEFAULTS` for ``dataset`` (a name, a :class:`Dataset`, or
    None for digits) that ``given`` does not set."""
    name = "digits" if dataset is None else dataset.name if isinstance(dataset, Dataset) else str(dataset)
    return {key: value for key, value in TRAIN_DEFAULTS.get(name, {}).items() if key not in (given or {})}


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False) -> Dataset:
    """Load a named data set (``digits``, ``mnist``, ``fashion-mnist``, ``har``) or a user's ``.npz`` path."""
    if name in DATASETS:
        return DATASETS[name](data_dir=data_dir, download=download)
    if name.endswith(".npz") or Path(name).is_file():
        return _load_npz(name)
    raise DataError(f"unknown data set {name!r}: choose one of {sorted(DATASETS)} or give a path to a .npz")

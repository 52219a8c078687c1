"""Data loading, the SUS/SS/US split, preprocessing, and clear errors for bad input."""

import gzip
import struct

import numpy as np
import pytest

from pyro_sus.data import DataError, Dataset, load_dataset, read_idx
from pyro_sus.preprocess import Preprocessor
from pyro_sus.split import make_split


def labels_10_classes(per_class=50, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(10), per_class))


def write_idx(path, array, truncate=0):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    payload = header + body[: len(body) - truncate]
    with gzip.open(path, "wb") as handle:
        handle.write(payload)


# -- splits ------------------------------------------------------------------------------------
def test_sus_split_hidden_classes_carry_no_labels_and_counts_are_exact():
    y = labels_10_classes()
    split = make_split(y, hidden_classes=[5, 6, 7, 8, 9], labels_per_class=7, extra_slots=12, seed=3)
    assert split.known_classes == (0, 1, 2, 3, 4) and split.n_slots == 17
    assert split.regime == "semi-unsupervised"
    assert np.bincount(y[split.labelled_idx], minlength=10).tolist() == [7] * 5 + [0] * 5
    # hidden-class points are all unlabelled or validation
    hidden_train = np.flatnonzero(np.isin(y, [5, 6, 7, 8, 9]))
    assert set(hidden_train) <= set(split.unlabelled_idx) | set(split.validation_idx)


def test_split_partitions_training_points_and_validation_is_disjoint():
    y = labels_10_classes()
    split = make_split(y, hidden_classes=[8, 9], labelled_fraction=0.2, validation_fraction=0.1, seed=1)
    parts = [set(split.labelled_idx), set(split.unlabelled_idx), set(split.validation_idx)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set.union(*parts) == set(range(len(y)))
    assert len(split.validation_idx) == 50  # 10% of each class
    # 20% of each known class's 45 training points, rounded
    assert np.bincount(y[split.labelled_idx], minlength=10).tolist() == [9] * 8 + [0, 0]
    assert split.extra_slots == 4  # default: twice the hidden classes


def test_split_is_reproducible_from_its_seed():
    y = labels_10_classes()
    a = make_split(y, hidden_classes=[9], labels_per_class=3, seed=7)
    b = make_split(y, hidden_classes=[9], labels_per_class=3, seed=7)
    c = make_split(y, hidden_classes=[9], labels_per_class=3, seed=8)
    assert np.array_equal(a.labelled_idx, b.labelled_idx) and np.array_equal(a.validation_idx, b.validation_idx)
    assert not np.array_equal(a.labelled_idx, c.labelled_idx)


def test_unseen_classes_are_withheld_from_training_and_validation_and_the_rest_is_untouched():
    y = labels_10_classes()
    split = make_split(y, hidden_classes=[7, 8], unseen_classes=[9], labelled_fraction=0.2, seed=2)
    used = np.concatenate([split.labelled_idx, split.unlabelled_idx, split.validation_idx])
    assert not np.isin(y[used], [9]).any() and set(used) == set(np.flatnonzero(y != 9))
    assert split.known_classes == tuple(range(7)) and split.unseen_classes == (9,) and split.extra_slots == 4
    # Withholding a class changes nothing else: the other classes' points are split as before.
    assert len(split.validation_idx) == 45 and np.bincount(y[split.labelled_idx]).tolist() == [9] * 7
    from pyro_sus.split import Split
    assert Split.from_arrays(split.to_arrays()).unseen_classes == (9,)


def test_semi_supervised_and_unsupervised_limits():
    y = labels_10_classes()
    ss = make_split(y, labels_per_class=2)
    assert ss.regime == "semi-supervised" and ss.extra_slots == 0 and ss.n_slots == 10
    accidental = make_split(y, hidden_classes=[8, 9], labels_per_class=2, extra_slots=0)
    assert accidental.regime == "semi-supervised" and accidental.n_slots == 8
    us = make_split(y, hidden_classes=range(10), extra_slots=20)
    assert us.regime == "unsupervised" and len(us.labelled_idx) == 0 and us.n_slots == 20


def test_partially_labelled_user_data_keeps_every_given_label_by_default():
    y = labels_10_classes()
    y[::3] = -1
    split = make_split(y, validation_fraction=0.0)
    assert set(split.labelled_idx) == set(np.flatnonzero(y >= 0))
    assert set(split.unlabelled_idx) == set(np.flatnonzero(y < 0))


def test_a_given_validation_set_is_used_as_given_and_its_own_classes_are_hidden():
    # 400 training points: classes 0-4 labelled in part, 5-9 only unlabelled; then 100 validation
    # points whose labels name all ten classes.
    train = labels_10_classes(per_class=40)
    train[(train >= 5) | (np.arange(400) % 2 == 0)] = -1
    validation = labels_10_classes(per_class=10, seed=1)
    y = np.concatenate([train, validation])
    split = make_split(y, given_validation_points=100, validation_fraction=0.0, unseen_classes=[9])
    assert split.known_classes == (0, 1, 2, 3, 4) and split.hidden_classes == (5, 6, 7, 8)
    assert split.extra_slots == 8  # twice the hidden classes, as for a carved-out split
    # The validation points are the last 100 but class 9's, which is withheld; training keeps the rest.
    assert split.validation_idx.tolist() == [i for i in range(400, 500) if y[i] != 9]
    assert set(split.labelled_idx) == set(np.flatnonzero(train >= 0))
    assert set(split.unlabelled_idx) == set(np.flatnonzero(train < 0))
    with pytest.raises(DataError, match="replaces validation_fraction"):
        make_split(y, given_validation_points=100, validation_fraction=0.1)
    with pytest.raises(DataError, match="given_validation_points must lie in"):
        make_split(y, given_validation_points=500, validation_fraction=0.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"hidden_classes": range(10), "extra_slots": 0}, "nothing left to learn"),
    ({"hidden_classes": [11]}, "not in the data"),
    ({"hidden_classes": [3, 3]}, "repeats"),
    ({"unseen_classes": [10]}, "unseen classes \\[10\\] are not in the data"),
    ({"hidden_classes": [8, 9], "unseen_classes": [9]}, "both hidden .* and unseen"),
    ({"hidden_classes": range(9), "unseen_classes": [9], "extra_slots": 0}, "nothing left to learn"),
    ({"labels_per_class": 100}, "fewer than"),
    ({"labels_per_class": 2, "labelled_fraction": 0.1}, "not both"),
    ({"labelled_fraction": 1.5}, "labelled_fraction"),
    ({"extra_slots": -1}, "extra_slots"),
])
def test_bad_split_options_raise_clear_errors(kwargs, message):
    with pytest.raises(DataError, match=message):
        make_split(labels_10_classes(), **kwargs)


def test_class_to_slot_rejects_labels_outside_the_known_classes():
    split = make_split(labels_10_classes(), hidden_classes=[9], labels_per_class=2)
    assert split.class_to_slot(np.array([0, 8, 3])).tolist() == [0, 8, 3]
    with pytest.raises(DataError, match="not a known class"):
        split.class_to_slot(np.array([9]))


# -- data sets and bad input ---------------------------------------------------------------------
def test_digits_is_embedded_and_scaled():
    data = load_dataset("digits")
    assert data.x_train.shape[1] == 64 and data.image_shape == (8, 8)
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.classes.tolist() == list(range(10))


@pytest.mark.parametrize("x, y, message", [
    (np.full((4, 3), np.nan), np.zeros(4), "NaN or inf"),
    (np.full((4, 3), np.inf), np.zeros(4), "NaN or inf"),
    (np.zeros((4, 3)), np.zeros(5), "shape"),
    (np.zeros(4), np.zeros(4), "shape"),
    (np.zeros((4, 3)), np.array([0, 1, -2, 1]), "below -1"),
    (np.zeros((4, 3)), np.array([0, 1.5, 1, 1]), "integer"),
])
def test_bad_arrays_raise_clear_errors(x, y, message):
    with pytest.raises(DataError, match=message):
        Dataset("bad", x, y)


def test_npz_round_trip_and_missing_arrays(tmp_path):
    path = tmp_path / "mine.npz"
    np.savez(path, x=np.random.rand(20, 2, 3), y=np.r_[np.zeros(10, int), -np.ones(10, int)])
    data = load_dataset(str(path))
    assert data.x_train.shape == (20, 6) and data.image_shape == (2, 3) and data.x_test is None
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((3, 2)))
    with pytest.raises(DataError, match="lacks arrays"):
        load_dataset(str(tmp_path / "nolabels.npz"))
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "absent.npz"))


def test_idx_reader_round_trip_and_truncated_file(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "ok.gz", images)
    assert np.array_equal(read_idx(tmp_path / "ok.gz"), images)
    write_idx(tmp_path / "short.gz", images, truncate=5)
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short.gz")
    # a gzip stream cut short (download interrupted)
    raw = (tmp_path / "ok.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "cut.gz")


def test_missing_idx_files_name_the_file_and_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*download=True"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_data_dir_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("PYRO_SUS_DATA", raising=False)
    with pytest.raises(DataError, match="PYRO_SUS_DATA"):
        load_dataset("fashion-mnist")


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown data set"):
        load_dataset("cifar")


def test_mnist_from_shared_idx_files(shared_data_dir):
    data = load_dataset("mnist", data_dir=shared_data_dir)
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert np.bincount(data.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert data.image_shape == (28, 28)


# -- preprocessing ----------------------------------------------------------------------------------
def test_preprocessor_keeps_high_variance_dims_and_inverts():
    x = np.zeros((100, 4), dtype=np.float32)
    x[:, 1] = np.random.rand(100)   # std ~0.29: kept
    x[:, 3] = 0.05 * np.random.rand(100) + 0.5  # std ~0.014: dropped
    pre = Preprocessor.fit(x, std_threshold=0.1)
    assert pre.keep.tolist() == [False, True, False, False]
    features = pre.transform(x)
    assert features.shape == (100, 1)
    restored = pre.inverse_transform(features)
    assert np.allclose(restored[:, 1], x[:, 1]) and np.allclose(restored[:, 3], x[:, 3].mean())
    with pytest.raises(DataError, match="trained on 4"):
        pre.transform(np.zeros((2, 5)))
    with pytest.raises(DataError, match="no input dimension"):
        Preprocessor.fit(np.zeros((10, 3)))


def test_sus_class_prior():
    from pyro_sus.priors import class_prior

    prior = class_prior(5, 10)
    assert prior[:5].tolist() == pytest.approx([0.1] * 5) and prior[5:].tolist() == pytest.approx([0.05] * 10)
    assert class_prior(5, 10, known_mass=0.8)[:5].sum().item() == pytest.approx(0.8)
    assert class_prior(5, 0).tolist() == pytest.approx([0.2] * 5)   # semi-supervised: uniform
    assert class_prior(0, 4).tolist() == pytest.approx([0.25] * 4)  # clustering: uniform
    assert class_prior(2, 2, kind="uniform").tolist() == pytest.approx([0.25] * 4)
    with pytest.raises(ValueError):
        class_prior(2, 2, kind="zipf")


def test_har_reads_the_uci_layout_and_shifts_activities_to_zero(tmp_path, write_har):
    root = write_har(tmp_path, n_features=7)
    data = load_dataset("har", root)
    assert data.x_train.shape == (300, 7) and data.x_test.shape == (120, 7)
    assert data.classes.tolist() == [0, 1, 2, 3, 4, 5] and data.image_shape is None
    expected = np.loadtxt(root / "UCI HAR Dataset" / "train" / "y_train.txt").astype(int) - 1
    assert (data.y_train == expected).all()
    assert load_dataset("har", root / "UCI HAR Dataset").x_train.shape == (300, 7)  # the folder itself works too


def test_har_errors_name_the_missing_file_or_the_bad_label(tmp_path, write_har):
    with pytest.raises(FileNotFoundError, match="UCI HAR Dataset/train/X_train.txt"):
        load_dataset("har", tmp_path)
    root = write_har(tmp_path)
    (root / "UCI HAR Dataset" / "test" / "y_test.txt").write_text("0\n" * 120)
    with pytest.raises(DataError, match="integers from 1"):
        load_dataset("har", root)
    (root / "UCI HAR Dataset" / "test" / "y_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="y_test.txt"):
        load_dataset("har", root)

"""The scikit-learn estimator: scikit-learn's own estimator checks, and what semi-unsupervised use needs."""

import gc
import json
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from pyro_sus.estimator import SemiUnsupervisedClassifier
from pyro_sus.metrics import score as protocol_score

#: Networks of 16 units and z of 2 dimensions: fits of a second or two.
TINY = {"model_options": {"hidden_dims": [16], "z_dim": 2}, "device": "cpu", "verbose": 0}

#: The checks of scikit-learn that cannot apply, each with why.
CANNOT_APPLY = {
    "check_classifiers_classes": "-1 marks an unlabelled point (scikit-learn's semi-supervised convention), so the "
                                 "check's labels {-1, 1} are one labelled class and unlabelled points",
    "check_methods_sample_order_invariance": "score_samples is a Monte-Carlo estimate of each point's bound on "
                                             "log p(x) (4 draws of z), whose draws depend on the batch",
    "check_methods_subset_invariance": "as check_methods_sample_order_invariance: score_samples draws z at random",
}


@parametrize_with_checks([SemiUnsupervisedClassifier(epochs=6, learning_rate=3e-2, **TINY)],
                         expected_failed_checks=lambda estimator: CANNOT_APPLY)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits_sus():
    """Digits scaled to [0, 1]: 20% of 0-4 labelled, 5-9 never; a labelled validation part and a test part."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order] / 16.0, y[order]
    train, val, test = slice(0, 1200), slice(1200, 1400), slice(1400, None)
    y_train = np.where((y[train] < 5) & (np.random.default_rng(1).random(1200) < 0.2), y[train], -1)
    return x[train], y_train, x[val], y[val], x[test], y[test]


@pytest.fixture(scope="module")
def fitted(digits_sus, tmp_path_factory):
    x, y, x_val, y_val, _, _ = digits_sus
    root = tmp_path_factory.mktemp("estimator-runs")
    clf = SemiUnsupervisedClassifier(epochs=8, learning_rate=3e-3, run_root=str(root), **{**TINY, "model_options": {
        "hidden_dims": [64], "z_dim": 4}})
    return clf.fit(x, y, x_val, y_val)


def test_known_classes_keep_their_labels_and_clusters_get_new_ids(fitted, digits_sus):
    # 5-9 appear only in y_val, so they are the hidden classes: 2 x 5 extra slots by default.
    assert fitted.n_slots_ == 15
    assert fitted.classes_.tolist() == [0, 1, 2, 3, 4, *range(10, 20)]
    assert sorted(fitted.discovered_) == list(range(10, 20))
    assert set(fitted.discovered_.values()) <= set(range(10)) | {None}
    predicted = fitted.predict(digits_sus[4])
    assert set(predicted.tolist()) <= set(fitted.classes_.tolist())
    proba = fitted.predict_proba(digits_sus[4])
    assert proba.shape == (len(predicted), 15) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert (fitted.classes_[proba.argmax(1)] == predicted).all()


def test_score_is_the_honest_accuracy_with_clusters_mapped_on_validation(fitted, digits_sus):
    x_test, y_test = digits_sus[4], digits_sus[5]
    slots = fitted.predict_proba(x_test).argmax(1)
    # Digits' labels 0-9 are their own codes, so the run's slot -> class mapping reads directly.
    expected = protocol_score(slots, y_test, fitted.run_.mapping, fitted.run_.split.known_classes, 15)["accuracy"]
    assert fitted.score(x_test, y_test) == pytest.approx(expected)
    assert fitted.score(x_test, y_test) > 0.3  # 10 classes: chance is 0.1; 8 short epochs reach about 0.5
    # The same from the public attributes: a cluster counts as the class discovered_ names, never as its id.
    as_class = [fitted.discovered_.get(label, label) for label in fitted.predict(x_test).tolist()]
    assert fitted.score(x_test, y_test) == pytest.approx(np.mean([c == t for c, t in zip(as_class, y_test)]))


def test_without_validation_labels_discovered_clusters_count_as_wrong(digits_sus):
    x, y, _, _, x_test, y_test = digits_sus
    clf = SemiUnsupervisedClassifier(epochs=2, extra_slots=4, **TINY).fit(x, y)
    assert set(clf.discovered_.values()) == {None}
    in_cluster = clf.predict_proba(x_test).argmax(1) >= 5
    known_right = (clf.predict(x_test) == y_test) & ~in_cluster
    assert clf.score(x_test, y_test) == pytest.approx(known_right.mean())


def test_the_fit_is_an_ordinary_run_folder_with_its_history(fitted):
    folder = fitted.run_dir_
    assert folder.parent.name.startswith("estimator-runs")
    for name in ("run.json", "final.pt", "metrics.jsonl", "results.json", "report.md", "mapping.json"):
        assert (folder / name).is_file(), name
    run = json.loads((folder / "run.json").read_text())
    assert run["split"]["given_validation_points"] == 200 and run["split"]["validation_fraction"] == 0
    assert [r["epoch"] for r in fitted.history_] == list(range(1, 9))
    assert all(np.isfinite(r["loss"]) for r in fitted.history_)


def test_transform_and_score_samples(fitted, digits_sus):
    x_test = digits_sus[4][:50]
    assert fitted.transform(x_test).shape == (50, 4)
    scores = fitted.score_samples(x_test)
    assert scores.shape == (50,) and np.isfinite(scores).all()
    # Noise fits the model worse than digits do.
    noise = np.random.default_rng(0).random((50, 64))
    assert np.median(fitted.score_samples(noise)) < np.median(scores)


def test_a_temporary_run_folder_goes_with_the_estimator_and_on_refit(digits_sus):
    x, y = digits_sus[0][:300], digits_sus[1][:300]
    clf = SemiUnsupervisedClassifier(epochs=1, extra_slots=2, **TINY).fit(x, y)
    first = clf.run_dir_
    clf.fit(x, y)
    assert not first.exists() and clf.run_dir_.is_dir()
    copy = pickle.loads(pickle.dumps(clf))
    second = clf.run_dir_
    del clf
    gc.collect()
    assert not second.exists()
    assert copy.predict(x[:5]).shape == (5,)  # a pickled copy predicts from memory


def test_clone_pipeline_and_grid_search(digits_sus):
    x, y = digits_sus[0][:400], digits_sus[1][:400]
    clf = SemiUnsupervisedClassifier(epochs=2, extra_slots=2, **TINY)
    assert clone(clf).get_params() == clf.get_params()
    # After a scaler the features are no longer in [0, 1]: "auto" picks the Gaussian likelihood.
    pipe = make_pipeline(StandardScaler(), clf).fit(x, y)
    model = pipe[-1].run_.model
    assert model.config.likelihood == "gaussian"
    labelled = y >= 0
    search = GridSearchCV(clf, {"learning_rate": [1e-3, 1e-2]}, cv=2).fit(x[labelled], y[labelled])
    assert search.best_params_["learning_rate"] in (1e-3, 1e-2) and len(search.cv_results_["params"]) == 2


def test_progress_shows_unless_verbose_is_0(digits_sus, capsys):
    x, y = digits_sus[0][:200], digits_sus[1][:200]
    SemiUnsupervisedClassifier(epochs=1, extra_slots=2, **TINY).fit(x, y)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    SemiUnsupervisedClassifier(epochs=1, extra_slots=2, **{**TINY, "verbose": 1}).fit(x, y)
    assert "epoch" in capsys.readouterr().err.lower()


@pytest.mark.parametrize("call, message", [
    (lambda clf, x, y: clf.fit(x, np.full(len(y), -1)), "give extra_slots"),
    (lambda clf, x, y: clf.fit(x, y, x[:10]), "both X_val and y_val"),
    (lambda clf, x, y: clf.fit(x, y, x[:10, :5], y[:10]), "features"),
    (lambda clf, x, y: SemiUnsupervisedClassifier(extra_slots=-1, **TINY).fit(x, y), "extra_slots"),
    (lambda clf, x, y: SemiUnsupervisedClassifier(model="classifier", likelihood="gaussian", **TINY).fit(x, y),
     "no likelihood"),
])
def test_bad_input_is_refused_with_its_reason(digits_sus, call, message):
    x, y = digits_sus[0][:100], digits_sus[1][:100]
    with pytest.raises(ValueError, match=message):
        call(SemiUnsupervisedClassifier(epochs=1, **TINY), x, y)


def test_n_extra_default(digits_sus):
    x, y = digits_sus[0][:300], digits_sus[1][:300]
    # Some points unlabelled and no validation labels: twice the labelled classes.
    assert SemiUnsupervisedClassifier(epochs=1, **TINY).fit(x, y).n_slots_ == 5 + 10
    # Every point labelled: plain supervised training, no extra slot.
    labelled = y >= 0
    assert SemiUnsupervisedClassifier(epochs=1, **TINY).fit(x[labelled], y[labelled]).n_slots_ == 5

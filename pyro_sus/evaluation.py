"""Scoring a trained run, in sections: what the run predicts on each part of its data is computed
once (:func:`predict_parts`), and each section turns it into a plain record of ``results.json``.

Extra slots are mapped on the validation split only (:func:`pyro_sus.metrics.honest_mapping`); the
test set is scored once with that mapping, and the paper-protocol number (mapping on the test set
itself) sits beside it. :func:`pyro_sus.run.evaluate` calls the sections and writes their records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from .data import Dataset
from .split import Split
from .metrics import UNMAPPED, gcd_accuracy, gcd_assignment, honest_mapping, score
from .report import class_recall, discovery_summary, slot_table
from .spec import RunRecord, RunSpec

__all__ = ["OPEN_SET_GRID", "Predictions", "predict_parts", "slot_mapping", "header", "validation_section",
           "gcd_section", "test_section", "open_set_section", "discovery_section"]

#: Quantiles of the validation fit scores kept in open_set.json (0, 0.001, ..., 1).
OPEN_SET_GRID = 1001


@dataclass
class Predictions:
    """A run's slots on the parts of its data that carry labels (``None`` for a part the data lacks)."""

    split: Split
    #: Validation points with a label: their slots, labels and fit scores.
    val_slots: np.ndarray
    val_labels: np.ndarray
    val_scores: np.ndarray | None
    #: Unlabelled training points whose true label the data holds (the GCD protocol's points).
    gcd_slots: np.ndarray
    gcd_labels: np.ndarray
    #: Test points of the classes training saw: q(y|x), labels, the images (for the discovered-slot figure).
    test_probs: np.ndarray | None
    test_labels: np.ndarray | None
    test_x: np.ndarray | None
    test_bound: float | None
    #: Test classes training never saw, their points' slots and labels; every labelled test point's
    #: fit score, and which of them are of those classes.
    unseen: np.ndarray
    unseen_slots: np.ndarray
    unseen_labels: np.ndarray
    test_scores: np.ndarray | None
    test_is_unseen: np.ndarray | None

    @property
    def test_slots(self) -> np.ndarray | None:
        return None if self.test_probs is None else self.test_probs.argmax(-1)

    @property
    def has_validation(self) -> bool:
        return len(self.val_labels) > 0


def predict_parts(run: Any, data: Dataset) -> Predictions:
    """Run ``run`` (a :class:`pyro_sus.run.Run`) over its data's validation, unlabelled and test points."""
    split = run.split
    val_x, val_y = data.x_train[split.validation_idx], data.y_train[split.validation_idx]
    labelled = val_y >= 0
    val_slots = run.predict_proba(val_x).argmax(-1) if len(val_x) else np.zeros(0, dtype=np.int64)
    val_scores = run.fit_scores(val_x[labelled]) if labelled.any() else None
    unlabelled_y = data.y_train[split.unlabelled_idx]
    gcd_points = split.unlabelled_idx[unlabelled_y >= 0]
    gcd_slots = (run.predict_proba(data.x_train[gcd_points]).argmax(-1) if len(gcd_points)
                 else np.zeros(0, dtype=np.int64))
    empty = np.zeros(0, dtype=np.int64)
    if data.x_test is None:
        return Predictions(split, val_slots[labelled], val_y[labelled], val_scores, gcd_slots,
                           data.y_train[gcd_points], None, None, None, None, empty, empty, empty, None, None)
    # Test classes training never saw (withheld by the split, or absent from the data's training
    # set) have no slot to land in: the test scores cover the seen classes, the open-set check the rest.
    absent = np.setdiff1d(data.y_test[data.y_test >= 0], data.y_train[data.y_train >= 0])
    unseen = np.union1d(np.asarray(split.unseen_classes, dtype=np.int64), absent).astype(np.int64)
    seen = (data.y_test >= 0) & ~np.isin(data.y_test, unseen)
    test_probs = run.predict_proba(data.x_test[seen])
    unseen_slots, unseen_labels, test_scores, is_unseen = empty, empty, None, None
    if len(unseen) and labelled.any():
        labelled_test = data.y_test >= 0
        test_scores = run.fit_scores(data.x_test[labelled_test])
        is_unseen = np.isin(data.y_test[labelled_test], unseen)
        points = labelled_test & np.isin(data.y_test, unseen)
        unseen_labels = data.y_test[points]
        unseen_slots = run.predict_proba(data.x_test[points]).argmax(-1)
    return Predictions(split, val_slots[labelled], val_y[labelled], val_scores, gcd_slots, data.y_train[gcd_points],
                       test_probs, data.y_test[seen], data.x_test[seen], run.unlabelled_bound(data.x_test[seen]),
                       unseen, unseen_slots, unseen_labels, test_scores, is_unseen)


def slot_mapping(p: Predictions) -> np.ndarray:
    """Slot -> class: known slots keep their class, extra slots take their validation majority (-1: none)."""
    return honest_mapping(p.split.known_classes, p.split.n_slots, p.val_slots, p.val_labels)


def header(spec: RunSpec, split: Split, run: RunRecord) -> dict[str, Any]:
    """What was scored: the model, data, split sizes, budget and the epoch the scored model is from."""
    record: dict[str, Any] = {
        "model": spec.model, "model_options": spec.model_options, "dataset": spec.data.dataset,
        "regime": split.regime, "known_classes": list(split.known_classes),
        "hidden_classes": list(split.hidden_classes), "unseen_classes": list(split.unseen_classes),
        "n_slots": split.n_slots, "n_labelled": int(len(split.labelled_idx)),
        "n_unlabelled": int(len(split.unlabelled_idx)), "epochs": spec.train.epochs,
        "seed": spec.train.seed, "train_wall_seconds": run.train_wall_seconds,
        "select": spec.train.select, "hardware": run.hardware,
    }
    snapshot = run.snapshot  # stopped at this epoch of its schedule, to be continued
    record["selected_epoch"] = (run.selected_epoch if run.selected_epoch is not None
                                else snapshot["epoch"] if snapshot else spec.train.epochs)
    if snapshot:
        record["snapshot"] = snapshot
    return record


def validation_section(p: Predictions, mapping: np.ndarray) -> dict[str, Any] | None:
    """The validation split's scores under the honest mapping (None without labelled validation points)."""
    if not p.has_validation:
        return None
    return score(p.val_slots, p.val_labels, mapping, p.split.known_classes, p.split.n_slots)


def test_section(p: Predictions, mapping: np.ndarray) -> dict[str, Any] | None:
    """The test set's scores (seen classes) under the validation mapping, with the mean unlabelled
    bound per test point (None without a test set)."""
    if p.test_probs is None:
        return None
    record = score(p.test_slots, p.test_labels, mapping, p.split.known_classes, p.split.n_slots)
    # The bound each model maximises on unlabelled data, per test point: compares guides and priors
    # of one model (e.g. a flow posterior against the diagonal Normal); across models it compares
    # bounds of different generative models, which is only loosely meaningful.
    record["unlabelled_bound"] = p.test_bound
    return record


def gcd_section(p: Predictions) -> dict[str, Any] | None:
    """The GCD protocol: one Hungarian assignment over all classes, made on the unlabelled training
    points, and All / Old / New accuracy under it there and on the test set (None without such points)."""
    if not len(p.gcd_labels):
        return None
    assignment = gcd_assignment(p.gcd_slots, p.gcd_labels, p.split.n_slots)
    record = {"protocol": "Hungarian assignment over all classes on the unlabelled training points "
                          "(transductive, GCD v2); All / Old / New accuracy under it",
              "slot_to_class": assignment.tolist(),
              "unlabelled_train": gcd_accuracy(p.gcd_slots, p.gcd_labels, assignment, p.split.known_classes)}
    if p.test_probs is not None:
        record["test"] = gcd_accuracy(p.test_slots, p.test_labels, assignment, p.split.known_classes)
    return record


def open_set_section(p: Predictions, mapping: np.ndarray, score_kind: str
                     ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Points that fit no slot: the record for ``results.json`` (with the classes training never saw,
    how well the fit score separates them, and where they landed) and the validation quantiles that
    ``open_set.json`` keeps for ``predict``'s flag. None without labelled validation points."""
    if p.val_scores is None:
        return None
    quantiles = {"score": score_kind,
                 "validation_quantiles": np.quantile(p.val_scores, np.linspace(0, 1, OPEN_SET_GRID)).tolist()}
    record: dict[str, Any] = {"score": score_kind, "unseen_test_classes": p.unseen.tolist()}
    if p.test_scores is not None:
        scores, is_unseen = p.test_scores, p.test_is_unseen
        record["n_unseen_test_points"] = int(is_unseen.sum())
        record["auroc_unseen"] = float(roc_auc_score(is_unseen, -scores))
        threshold = np.quantile(p.val_scores, 0.05)
        record["flagged_at_validation_5pct"] = {"unseen": float((scores[is_unseen] < threshold).mean()),
                                                "seen": float((scores[~is_unseen] < threshold).mean())}
        # Where the classes training never saw land: their test points' slots, as mapped.
        predicted = mapping[p.unseen_slots]
        record["predicted_as"] = {
            str(int(c)): {("unmapped" if k == UNMAPPED else str(int(k))): int(((p.unseen_labels == c)
                                                                               & (predicted == k)).sum())
                          for k in np.unique(predicted[p.unseen_labels == c])} for c in p.unseen}
    return record, quantiles


def discovery_section(p: Predictions, mapping: np.ndarray, prior_sd: np.ndarray | None
                      ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]] | None:
    """What the run discovered: the slot table (per slot, on validation and test), which hidden
    classes it found with each class's recall; returned as (record, table, recall). None without
    labelled validation points."""
    if not p.has_validation:
        return None
    table = slot_table(p.val_slots, p.val_labels, p.test_slots, p.test_labels, p.split.n_known, p.split.n_slots,
                       None if prior_sd is None else prior_sd.tolist())
    record = discovery_summary(table, p.split.hidden_classes, p.val_slots, p.val_labels)
    seen_classes = list(p.split.known_classes) + list(p.split.hidden_classes)
    recall = {"validation": class_recall(p.val_slots, p.val_labels, mapping, seen_classes)}
    if p.test_probs is not None:
        recall["test"] = class_recall(p.test_slots, p.test_labels, mapping, seen_classes)
    record["recall"] = recall
    return record, table, recall

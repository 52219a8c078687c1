"""The evaluation protocol (the README's "Honest evaluation"): honest, paper-protocol and Hungarian
accuracy, NMI, ARI, and the generalized-category-discovery protocol.

Predictions are slots (argmax q(y|x)). Known slots keep their class; each extra slot is mapped to
the majority true class of the *validation* points it receives (honest), or of the scored points
themselves (paper protocol, as Willetts et al. report).

GCD protocol (Vaze et al. 2022, their "v2" accuracy, which SimGCD and later work report): one
Hungarian (one-to-one) assignment of slots to classes over *all* classes, computed on the
unlabelled part of the training set (transductively: its labels are used only to score), then
accuracy on all / old (known) / new (hidden) classes under that one assignment. The same assignment
applied to the test set gives its All / Old / New too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, confusion_matrix, normalized_mutual_info_score

__all__ = ["UNMAPPED", "majority_class", "majority_mapping", "honest_mapping", "hungarian_accuracy", "gcd_assignment",
           "gcd_accuracy", "score"]

UNMAPPED = -1  # an extra slot that received no labelled validation point: its predictions count as wrong


def majority_class(labels: np.ndarray) -> tuple[int, int]:
    """The most common value of a non-empty ``labels`` and its count (ties: the smallest).

    Counted over the values present, never over ``range(max + 1)``: a class id of 10**12 costs
    nothing more than a class id of 9."""
    values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    best = int(counts.argmax())  # the first of equal counts: the smallest value
    return int(values[best]), int(counts[best])


def _slot_class_counts(slots: np.ndarray, labels: np.ndarray, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_slots, classes present) counts and the class id of each column."""
    classes, columns = np.unique(labels, return_inverse=True)
    counts = np.zeros((n_slots, len(classes)), dtype=np.int64)
    np.add.at(counts, (slots, columns.reshape(-1)), 1)
    return counts, classes


def majority_mapping(slots: np.ndarray, labels: np.ndarray, n_slots: int) -> np.ndarray:
    """slot -> most common true label among the points predicted into it (UNMAPPED if none).

    Points whose true label is unknown (-1) are ignored; ties go to the smallest class id.
    """
    mapping = np.full(n_slots, UNMAPPED, dtype=np.int64)
    for slot in range(n_slots):
        members = labels[(slots == slot) & (labels >= 0)]
        if len(members):
            mapping[slot] = majority_class(members)[0]
    return mapping


def honest_mapping(known_classes: Sequence[int], n_slots: int,
                   val_slots: np.ndarray, val_labels: np.ndarray) -> np.ndarray:
    """Known slots keep their class; extra slots take their validation-set majority class."""
    mapping = majority_mapping(val_slots, val_labels, n_slots)
    mapping[: len(known_classes)] = known_classes
    return mapping


def hungarian_accuracy(slots: np.ndarray, labels: np.ndarray, n_slots: int) -> float:
    """Best one-to-one assignment of slots to classes (unassigned slots count as wrong)."""
    counts, _ = _slot_class_counts(np.asarray(slots, dtype=np.int64), np.asarray(labels, dtype=np.int64), n_slots)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def gcd_assignment(slots: np.ndarray, labels: np.ndarray, n_slots: int) -> np.ndarray:
    """slot -> class of the one-to-one assignment that maximises the matches over all classes
    (UNMAPPED for the slots it leaves out: with more slots than classes, some always are)."""
    slots, labels = np.asarray(slots, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if len(labels) == 0 or (labels < 0).any() or slots.shape != labels.shape:
        raise ValueError("the GCD assignment needs one slot and one true label (>= 0) per point")
    counts, classes = _slot_class_counts(slots, labels, n_slots)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    mapping = np.full(n_slots, UNMAPPED, dtype=np.int64)
    mapping[rows] = classes[cols]
    return mapping


def gcd_accuracy(slots: np.ndarray, labels: np.ndarray, assignment: np.ndarray,
                 known_classes: Sequence[int]) -> dict[str, float | None]:
    """All / Old / New accuracy of slot predictions under a GCD ``assignment`` (Old: points of the
    known classes, New: of the others; None where a part has no point)."""
    slots, labels = np.asarray(slots, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    correct = assignment[slots] == labels
    old = np.isin(labels, np.asarray(known_classes, dtype=np.int64))
    return {"all": float(correct.mean()) if len(correct) else None,
            "old": float(correct[old].mean()) if old.any() else None,
            "new": float(correct[~old].mean()) if (~old).any() else None}


def _accuracy(predicted: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> float | None:
    return float((predicted[mask] == labels[mask]).mean()) if mask.any() else None


def score(slots: np.ndarray, labels: np.ndarray, mapping: np.ndarray,
          known_classes: Sequence[int], n_slots: int) -> dict:
    """All metrics for slot predictions ``slots`` against true ``labels`` under ``mapping``.

    ``known`` and ``novel`` accuracies are over points whose true class is / is not a known class.
    """
    slots, labels = np.asarray(slots, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if slots.shape != labels.shape:
        raise ValueError(f"slots {slots.shape} and labels {labels.shape} differ in shape")
    if len(labels) == 0 or (labels < 0).any():
        raise ValueError("scoring needs at least one point and a true label (>= 0) for every point")
    predicted = mapping[slots]
    is_known = np.isin(labels, np.asarray(known_classes, dtype=np.int64))
    paper_mapping = majority_mapping(slots, labels, n_slots)
    classes = np.unique(np.concatenate([labels, predicted[predicted >= 0]]))
    return {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "known_accuracy": _accuracy(predicted, labels, is_known),
        "novel_accuracy": _accuracy(predicted, labels, ~is_known),
        "paper_protocol_accuracy": float((paper_mapping[slots] == labels).mean()),
        "hungarian_accuracy": hungarian_accuracy(slots, labels, n_slots),
        "nmi": float(normalized_mutual_info_score(labels, slots)),
        "ari": float(adjusted_rand_score(labels, slots)),
        "unmapped_fraction": float((predicted == UNMAPPED).mean()),
        "slots_used": int(len(np.unique(slots))),  # how many slots receive any point: collapse shows here
        "confusion_classes": classes.tolist(),
        # rows: true class, columns: mapped prediction (same class order); unmapped points are
        # left out of the matrix but counted in ``unmapped_fraction``.
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }

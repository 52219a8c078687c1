"""The evaluation protocol on hand-made cases."""

import numpy as np
import pytest

from pyro_sus.metrics import UNMAPPED, honest_mapping, hungarian_accuracy, majority_mapping, score

KNOWN = (0, 1)  # slots 0, 1 are classes 0, 1; slots 2, 3, 4 are extra


def test_majority_mapping_ignores_unlabelled_and_marks_empty_slots():
    slots = np.array([2, 2, 2, 3, 3])
    labels = np.array([5, 5, 6, -1, 7])
    assert majority_mapping(slots, labels, 5).tolist() == [UNMAPPED, UNMAPPED, 5, 7, UNMAPPED]


def test_honest_mapping_keeps_known_slots_and_can_map_a_cluster_to_a_known_class():
    val_slots = np.array([0, 1, 2, 2, 3, 3, 3])
    val_labels = np.array([1, 1, 0, 0, 2, 2, 3])  # known slot 0 mostly gets class 1: it still keeps class 0
    mapping = honest_mapping(KNOWN, 5, val_slots, val_labels)
    assert mapping.tolist() == [0, 1, 0, 2, UNMAPPED]  # extra slot 2 mapped to known class 0


def test_score_hand_made_case():
    mapping = np.array([0, 1, 0, 2, UNMAPPED])
    slots = np.array([0, 0, 1, 2, 3, 3, 4, 1])
    labels = np.array([0, 1, 1, 0, 2, 3, 3, 2])
    result = score(slots, labels, mapping, KNOWN, 5)
    # mapped predictions: 0 0 1 0 2 2 -1 1 -> correct at 0, 2, 3, 4
    assert result["accuracy"] == pytest.approx(4 / 8)
    assert result["known_accuracy"] == pytest.approx(3 / 4)   # true classes 0/1: points 0-3
    assert result["novel_accuracy"] == pytest.approx(1 / 4)   # true classes 2/3: points 4-7
    # paper protocol maps every slot on these points: 0->0 (tie 0/1 -> 0), 1->1 (tie), 2->0, 3->2 (tie), 4->3
    assert result["paper_protocol_accuracy"] == pytest.approx(5 / 8)
    assert result["unmapped_fraction"] == pytest.approx(1 / 8)
    assert result["slots_used"] == 5
    matrix = np.array(result["confusion_matrix"])
    assert result["confusion_classes"] == [0, 1, 2, 3]
    assert matrix.sum() == 7  # the unmapped point is left out
    assert matrix[0, 0] == 2 and matrix[1, 0] == 1 and matrix[3, 2] == 1


def test_hungarian_is_one_to_one():
    # two slots both full of class 0: only one may take it
    slots = np.array([0, 0, 1, 1, 2])
    labels = np.array([0, 0, 0, 0, 1])
    assert hungarian_accuracy(slots, labels, 3) == pytest.approx(3 / 5)


def test_perfect_clustering_under_relabelling_has_nmi_and_ari_one():
    labels = np.repeat(np.arange(4), 5)
    slots = (labels + 2) % 4
    result = score(slots, labels, majority_mapping(slots, labels, 4), (), 4)
    assert result["nmi"] == pytest.approx(1.0) and result["ari"] == pytest.approx(1.0)
    assert result["accuracy"] == result["hungarian_accuracy"] == 1.0
    assert result["known_accuracy"] is None and result["novel_accuracy"] == 1.0


def test_score_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        score(np.zeros(3, int), np.zeros(4, int), np.zeros(2, int), KNOWN, 2)
    with pytest.raises(ValueError, match="true label"):
        score(np.zeros(2, int), np.array([0, -1]), np.zeros(2, int), KNOWN, 2)


def test_gcd_protocol_on_hand_made_predictions():
    """Classes 0, 1 known, 2, 3 new; 5 slots. The one-to-one assignment over all classes that
    maximises matches is slot 0 -> 0, 1 -> 1, 3 -> 2, 4 -> 3 (slot 2 left out: its points count wrong)."""
    from pyro_sus.metrics import gcd_accuracy, gcd_assignment

    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    slots = np.array([0, 0, 1, 1, 1, 3, 3, 2, 4, 4, 2, 0])
    assignment = gcd_assignment(slots, labels, n_slots=5)
    assert assignment.tolist() == [0, 1, UNMAPPED, 2, 3]
    result = gcd_accuracy(slots, labels, assignment, known_classes=[0, 1])
    assert result == pytest.approx({"all": 8 / 12, "old": 4 / 5, "new": 4 / 7})
    # The same assignment scores other points (the test set) without being recomputed.
    assert gcd_accuracy(np.array([2, 3]), np.array([2, 2]), assignment, [0, 1]) == {"all": 0.5, "old": None, "new": 0.5}
    with pytest.raises(ValueError, match="true label"):
        gcd_assignment(slots, np.where(labels == 3, -1, labels), n_slots=5)

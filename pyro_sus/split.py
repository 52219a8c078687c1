"""How a run divides its training data: which points are labelled, unlabelled and held out for
validation, which classes are hidden (no label) or unseen (withheld), and how classes map to the
model's slots: the semi-unsupervised, semi-supervised and unsupervised regimes of Willetts et al.

:class:`SplitSpec` holds the options (run.json's ``split``), :func:`make_split` draws the split
from a data set's labels, :class:`Split` is the result (a run's ``split.npz``).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._fields import check_field_types
from .data import MAX_SEED, DataError, check_labels

__all__ = ["Split", "SplitSpec", "make_split"]


@dataclass
class Split:
    """Which training points are labelled, unlabelled and held out, and how classes map to slots.

    Slots ``0..n_known-1`` are the known classes in sorted order; slots ``n_known..n_slots-1`` are
    extra slots for classes the model must discover.
    """

    known_classes: tuple[int, ...]
    hidden_classes: tuple[int, ...]
    extra_slots: int
    labelled_idx: np.ndarray
    unlabelled_idx: np.ndarray
    validation_idx: np.ndarray
    seed: int
    #: Classes withheld from training altogether (no point labelled, unlabelled or in validation);
    #: they remain in the test set, where they measure how well a model flags what it never saw.
    unseen_classes: tuple[int, ...] = ()
    #: A split given with its labels (``SplitSpec.given``), e.g. an oracle's answers propagated by the
    #: active loop: the class of each ``labelled_idx`` point (-1: none, with weight 0) instead of the
    #: data's own, and each label's weight in [0, 1] (None: 1 each; for models that take weights).
    labels: np.ndarray | None = None
    label_weights: np.ndarray | None = None

    @property
    def n_known(self) -> int:
        return len(self.known_classes)

    @property
    def n_slots(self) -> int:
        return self.n_known + self.extra_slots

    @property
    def regime(self) -> str:
        """The model's set-up: 'unsupervised' (no known class), 'semi-unsupervised' (known classes
        plus extra slots for discovery) or 'semi-supervised' (known classes only; with hidden
        classes this is Willetts' "accidental" SUS)."""
        if self.n_known == 0:
            return "unsupervised"
        return "semi-unsupervised" if self.extra_slots else "semi-supervised"

    def labelled_slots(self, y_train: np.ndarray) -> np.ndarray:
        """The slot of each labelled point: its given label's, else its class's in ``y_train`` (a given
        label of -1, which carries weight 0, takes slot 0)."""
        if self.labels is None:
            return self.class_to_slot(y_train[self.labelled_idx])
        slots = np.zeros(len(self.labels), dtype=np.int64)
        answered = self.labels >= 0
        slots[answered] = self.class_to_slot(self.labels[answered])
        return slots

    def check_given_labels(self) -> None:
        """Refuse given labels that do not fit the labelled points (DataError naming what is wrong)."""
        if self.labels is None:
            if self.label_weights is not None:
                raise DataError("a split's label weights need the labels they weigh (labels=)")
            return
        n, weights = len(self.labelled_idx), self.label_weights
        if self.labels.shape != (n,) or (weights is not None and weights.shape != (n,)):
            raise DataError(f"the split gives {self.labels.shape} labels and "
                            f"{None if weights is None else weights.shape} weights for {n} labelled points; need one "
                            f"of each per point")
        if weights is not None and (not np.isfinite(weights).all() or ((weights < 0) | (weights > 1)).any()):
            raise DataError("a split's label weights must lie in [0, 1]")
        if (self.labels < 0).any() and (weights is None or (weights[self.labels < 0] > 0).any()):
            raise DataError("a point given no label (-1) must have weight 0 (label_weights=)")
        unknown = np.setdiff1d(self.labels[self.labels >= 0], self.known_classes)
        if len(unknown):
            raise DataError(f"the split gives labels {unknown.tolist()}, which are not its known classes "
                            f"{list(self.known_classes)}")

    def class_to_slot(self, labels: np.ndarray) -> np.ndarray:
        """Map known class ids to their slots (raises DataError for any other label)."""
        lookup = {c: s for s, c in enumerate(self.known_classes)}
        try:
            return np.array([lookup[int(c)] for c in labels], dtype=np.int64)
        except KeyError as err:
            raise DataError(f"label {err.args[0]} is not a known class {self.known_classes}") from None

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"labelled_idx": self.labelled_idx, "unlabelled_idx": self.unlabelled_idx,
                "validation_idx": self.validation_idx, "known_classes": np.array(self.known_classes, dtype=np.int64),
                "hidden_classes": np.array(self.hidden_classes, dtype=np.int64),
                "extra_slots": np.array(self.extra_slots), "seed": np.array(self.seed),
                "unseen_classes": np.array(self.unseen_classes, dtype=np.int64),
                **{key: value for key, value in (("labels", self.labels), ("label_weights", self.label_weights))
                   if value is not None}}

    @classmethod
    def from_arrays(cls, arrays) -> "Split":
        unseen = tuple(int(c) for c in arrays["unseen_classes"])
        given = [np.asarray(arrays[key], dtype=dtype) if key in arrays else None
                 for key, dtype in (("labels", np.int64), ("label_weights", np.float64))]
        return cls(tuple(int(c) for c in arrays["known_classes"]), tuple(int(c) for c in arrays["hidden_classes"]),
                   int(arrays["extra_slots"]), np.asarray(arrays["labelled_idx"]), np.asarray(arrays["unlabelled_idx"]),
                   np.asarray(arrays["validation_idx"]), int(arrays["seed"]), unseen, *given)


@dataclass(frozen=True)
class SplitSpec:
    """The options of :func:`make_split` (``seed`` None: the training seed)."""

    hidden_classes: tuple[int, ...] = ()
    unseen_classes: tuple[int, ...] = ()
    labels_per_class: int | None = None
    labelled_fraction: float | None = None
    extra_slots: int | None = None
    validation_fraction: float = 0.1
    seed: int | None = None
    #: > 0: the last this many training points are a validation set given with the data (their labels
    #: may name classes no training point is labelled with), used instead of a carved-out fraction.
    given_validation_points: int = 0
    #: True: the split was handed to ``fit`` whole (``fit(..., split=...)``; the active loop's rounds,
    #: whose labels an oracle gave) and lives in the run's split.npz, which the other fields describe;
    #: it cannot be drawn again from them.
    given: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)  # 7.9 as a class, 2.7 extra slots or "0.2" as a fraction fail here, named
        if self.extra_slots is not None and self.extra_slots < 0:
            raise ValueError(f"extra_slots must be >= 0, got {self.extra_slots}")
        if self.labels_per_class is not None and self.labels_per_class < 1:
            raise ValueError(f"labels_per_class must be >= 1, got {self.labels_per_class}")
        if self.labelled_fraction is not None and not 0 < self.labelled_fraction <= 1:
            raise ValueError(f"labelled_fraction must lie in (0, 1], got {self.labelled_fraction}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in [0, 1), got {self.validation_fraction}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"the split's seed must lie in 0..{MAX_SEED}, got {self.seed}")
        if self.given_validation_points < 0:
            raise ValueError(f"given_validation_points must be >= 0, got {self.given_validation_points}")
        if self.given_validation_points and self.validation_fraction:
            raise ValueError(f"a given validation set ({self.given_validation_points} points) replaces the carved-out "
                             f"validation_fraction ({self.validation_fraction}); set it to 0")

    def make(self, y: np.ndarray) -> "Split":
        """The split of training labels ``y`` (``seed`` must be set)."""
        if self.seed is None:
            raise ValueError("the split's seed is not set (RunSpec sets it to the training seed)")
        if self.given:
            raise ValueError("this split was given whole (split.npz holds it): it cannot be drawn from its options")
        return make_split(y, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "given"})

    @classmethod
    def describing(cls, split: "Split") -> "SplitSpec":
        """The options that describe a split given whole (``given=True``)."""
        return cls(hidden_classes=split.hidden_classes, unseen_classes=split.unseen_classes,
                   extra_slots=split.extra_slots, validation_fraction=0.0, seed=split.seed, given=True)


def make_split(
    y: np.ndarray,
    hidden_classes: Sequence[int] = (),
    labels_per_class: int | None = None,
    labelled_fraction: float | None = None,
    extra_slots: int | None = None,
    validation_fraction: float = SplitSpec.validation_fraction,
    seed: int = 0,
    unseen_classes: Sequence[int] = (),
    given_validation_points: int = 0,
) -> Split:
    """Split training labels ``y`` (-1 = unlabelled) into labelled / unlabelled / validation points.

    ``hidden_classes`` keep no labels at all. Each other class keeps ``labels_per_class`` labels,
    or ``labelled_fraction`` of its training points, or (neither given) every label it has.
    ``extra_slots`` extra slots (default: twice the number of hidden classes) are left for discovery.
    The validation points (``validation_fraction`` of each class, drawn first) are disjoint from
    training and keep their true labels for the honest mapping of extra slots.
    ``unseen_classes`` are withheld from training and validation altogether (an open-set check:
    only the test set has them).

    ``given_validation_points=N`` (> 0, with ``validation_fraction=0``): the last N points of ``y``
    are a validation set given with the data instead of a carved-out one; classes that only its
    labels name (no training point is labelled with them) count as hidden classes.
    """
    y = check_labels(y, len(np.asarray(y)), "labels")
    for name, value in (("labels_per_class", labels_per_class), ("extra_slots", extra_slots), ("seed", seed),
                        ("given_validation_points", given_validation_points)):
        if value is not None and not _is_integer(value):
            raise DataError(f"{name} must be an integer, got {value!r}")
    for name, value in (("labelled_fraction", labelled_fraction), ("validation_fraction", validation_fraction)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise DataError(f"{name} must be a number, got {value!r}")
    rng = np.random.default_rng(seed)
    present = np.unique(y[y >= 0])
    hidden = _class_list(hidden_classes, "hidden", present)
    unseen = _class_list(unseen_classes, "unseen", present)
    n_train = len(y) - given_validation_points
    if given_validation_points:
        if given_validation_points < 0 or n_train < 1:
            raise DataError(f"given_validation_points must lie in 1..{len(y) - 1} (the last points of the data), "
                            f"got {given_validation_points}")
        if validation_fraction:
            raise DataError("a given validation set replaces validation_fraction: set it to 0")
        # Classes only the given validation labels name were never labelled in training: hidden ones.
        trained = y[:n_train]
        hidden = tuple(sorted(set(hidden) | set(np.setdiff1d(present, [*trained[trained >= 0], *unseen]).tolist())))
    if set(hidden) & set(unseen):
        raise DataError(f"classes {sorted(set(hidden) & set(unseen))} are both hidden (unlabelled in training) and "
                        f"unseen (withheld from training): choose one")
    if len(present) and not len(np.setdiff1d(present, unseen)):
        raise DataError(f"every class of the data ({present.tolist()}) is unseen (withheld from training): nothing is "
                        f"left to train on; withhold fewer classes")
    present = np.setdiff1d(present, unseen)
    if len(present) == 1:  # (none at all is clustering of unlabelled data: nothing is scored, nothing trivial)
        raise DataError(f"the training data has 1 class {present.tolist()}: every labelled point belongs to it and "
                        f"every score would be 1.0 by construction. Semi-unsupervised learning needs at least two "
                        f"classes in the data.")
    if labels_per_class is not None and labelled_fraction is not None:
        raise DataError("give labels_per_class or labelled_fraction, not both")
    if labels_per_class is not None and labels_per_class < 1:
        raise DataError(f"labels_per_class must be >= 1, got {labels_per_class}")
    if labelled_fraction is not None and not 0 < labelled_fraction <= 1:
        raise DataError(f"labelled_fraction must lie in (0, 1], got {labelled_fraction}")
    if not 0 <= validation_fraction < 1:
        raise DataError(f"validation_fraction must lie in [0, 1), got {validation_fraction}")
    known = tuple(int(c) for c in present if c not in hidden)
    extra_slots = 2 * len(hidden) if extra_slots is None else int(extra_slots)
    if extra_slots < 0:
        raise DataError(f"extra_slots must be >= 0, got {extra_slots}")
    if not known and extra_slots == 0:
        raise DataError("every class is hidden and there are no extra slots: nothing left to learn. "
                        "Unhide a class for (semi-)supervised learning or set extra_slots > 0 to cluster.")
    if len(known) + extra_slots < 2:
        raise DataError(f"{len(known)} known class and {extra_slots} extra slots make one slot: every point would get "
                        f"it and accuracy would be 1.0 by construction. Label a second class, or add extra slots "
                        f"(--extra-slots) to discover the unlabelled classes.")

    if given_validation_points:
        points = np.arange(len(y))
        kept = ~np.isin(y, unseen)
        validation_idx, train_idx = points[n_train:][kept[n_train:]], points[:n_train][kept[:n_train]]
    else:
        validation, train = [], []
        for value in np.setdiff1d(np.unique(y), unseen):  # stratified, -1 included as its own stratum
            members = rng.permutation(np.flatnonzero(y == value))
            n_val = int(round(validation_fraction * len(members)))
            validation.append(members[:n_val])
            train.append(members[n_val:])
        validation_idx, train_idx = np.sort(np.concatenate(validation)), np.concatenate(train)

    labelled = []
    for c in known:
        members = rng.permutation(train_idx[y[train_idx] == c])
        if labels_per_class is not None:
            if labels_per_class > len(members):
                raise DataError(f"class {c} has {len(members)} training points, fewer than "
                                f"labels_per_class={labels_per_class}")
            count = labels_per_class
        elif labelled_fraction is not None:
            count = max(1, int(round(labelled_fraction * len(members))))
        else:
            count = len(members)
        labelled.append(members[:count])
    labelled_idx = np.sort(np.concatenate(labelled)) if labelled else np.zeros(0, dtype=np.int64)
    unlabelled_idx = np.setdiff1d(train_idx, labelled_idx)
    return Split(known, hidden, extra_slots, labelled_idx, unlabelled_idx, validation_idx, seed, unseen)


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _class_list(classes: Sequence[int], what: str, present: np.ndarray) -> tuple[int, ...]:
    """``classes`` sorted, after checking each is one of the data's classes and none repeats."""
    if isinstance(classes, (str, bytes)) or not all(_is_integer(c) for c in classes):
        raise DataError(f"{what}_classes must be integer class ids, got {classes!r}")
    chosen = tuple(sorted(int(c) for c in classes))
    if len(set(chosen)) != len(chosen):
        raise DataError(f"{what}_classes repeats a class: {list(classes)}")
    missing = [c for c in chosen if c not in set(present.tolist())]
    if missing:
        raise DataError(f"{what} classes {missing} are not in the data's classes {present.tolist()}")
    return chosen

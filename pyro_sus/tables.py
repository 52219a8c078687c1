"""A paper's table as data: an :class:`Experiment` of :class:`Row` s, the paper's settings beside ours
(:class:`Setting`), and the registry every table enters with :func:`register_experiment`.

The built-in tables are in :mod:`pyro_sus.experiments` (one module per paper); the runner that
plans and runs their jobs is :mod:`pyro_sus.sweep`, the deviation lists computed from the settings
:mod:`pyro_sus.fidelity`, and ``pyro-sus reproduce`` (:mod:`pyro_sus.reproduce`) ties them together.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Setting", "SOURCES", "Row", "Experiment", "EXPERIMENTS", "register_experiment", "get_experiment",
           "defined_in", "candidate_text", "SMOKE"]

# --smoke: a few batches of a small subset (the same for every seed), one epoch (unless epochs are
# given), one seed (unless seeds are given), at most 5 labels per class (tests and a quick check of a setup).
SMOKE = {"max_train": 400, "max_test": 200, "epochs": 1, "labels_per_class": 5}

Source = Literal["paper", "released code", "ours"]
SOURCES: dict[str, str] = {"paper": "the paper's", "released code": "from the authors' released code",
                           "ours": "our choice"}
#: Marks a setting that no run option holds (initialisation, a layer the networks lack): declared, not checked.
NO_OPTION = None


@dataclass(frozen=True)
class Setting:
    """One setting of a paper's experiment: the paper's value and ours, in words, and where ours comes from.

    ``option`` is the run option holding ours (``"train.clip_value"``, ``"model.activation"``,
    ``"split.validation_fraction"``, ``"preprocess.std_threshold"``, ``"prior.kind"``) and ``value``
    its value in every row named by ``rows`` (empty: every row); None where no option holds it.
    ``where`` says in words which rows those are. A setting is a deviation unless ours is the paper's."""

    name: str
    paper: str
    ours: str
    source: Source
    option: str | None = NO_OPTION
    value: Any = None
    rows: tuple[str, ...] = ()
    where: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {sorted(SOURCES)}, got {self.source!r}")
        if self.option is not None and self.option.split(".")[0] not in ("train", "model", "split", "preprocess",
                                                                           "prior"):
            raise ValueError(f"option must start with train., model., split., preprocess. or prior., "
                             f"got {self.option!r}")

    @property
    def deviates(self) -> bool:
        return self.source != "paper"

    def text(self) -> str:
        """The setting as a line of a deviation list."""
        where = self.where or (", ".join(repr(r) for r in self.rows) if len(self.rows) <= 3 else
                               f"{len(self.rows)} rows")
        return (f"{self.name}" + (f" ({where})" if self.rows else "")
                + f": the paper {self.paper}; ours {self.ours} ({SOURCES[self.source]}).")


@dataclass(frozen=True)
class Row:
    """One line of a paper's table: a model with its options, and the paper's numbers for it.

    ``fit`` holds keyword arguments of :func:`pyro_sus.fit` (split, prior, ``model_options``);
    ``paper`` maps a test metric of :func:`pyro_sus.metrics.score` to the paper's (mean %, sd % or None),
    or to None where no paper gives it (a benchmark setting: the metric is reported, nothing compared);
    ``data`` may restrict classes: ``{"keep_classes": [...]}`` (everywhere) or ``{"test_classes": [...]}``;
    ``train`` overrides the experiment's training options for this row. ``choose_on_validation`` maps
    training options to values to try: each seed trains every combination, and the run with the best
    validation accuracy is the one whose test numbers count (model selection as the papers do it).
    """

    label: str
    model: str
    fit: dict[str, Any]
    paper: dict[str, tuple[float, float | None] | None]
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    choose_on_validation: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def candidates(self) -> list[dict[str, Any]]:
        """Every combination of the ``choose_on_validation`` values, in the order given ([{}] if none)."""
        names = list(self.choose_on_validation)
        return [dict(zip(names, values)) for values in itertools.product(*self.choose_on_validation.values())]


def candidate_text(candidate: dict[str, Any]) -> str:
    """A choice of training options in words (``learning_rate=0.001, batch_size=4``), as run folders are named."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in candidate.items())


@dataclass(frozen=True)
class Experiment:
    """A table of a paper: its data set, training options (the paper's), rows, the paper's settings
    beside ours (:class:`Setting`; the deviation list is computed from them: :mod:`pyro_sus.fidelity`), and
    ``deviations``: notes that no single setting states."""

    name: str
    paper: str
    table: str
    dataset: str
    train: dict[str, Any]
    rows: tuple[Row, ...]
    seeds: int
    deviations: tuple[str, ...] = ()
    data_note: str | None = None
    settings: tuple[Setting, ...] = ()

    @property
    def epochs(self) -> int:
        return int(self.train["epochs"])

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise ValueError(f"{self.name} has no row {label!r}; rows: {[r.label for r in self.rows]}")


EXPERIMENTS: dict[str, Experiment] = {}
#: The module that registered each experiment: a job process imports it to find its experiment.
_DEFINED_IN: dict[str, str] = {}


def register_experiment(experiment: Experiment, replace: bool = False, module: str | None = None) -> Experiment:
    """Add an experiment to the registry; a different one under a taken name needs ``replace=True``.
    ``module`` (pass ``__name__``) is the module that registers it, which each job process of the
    experiment imports; without it a job imports only the ``plugins`` it is planned with."""
    old = EXPERIMENTS.get(experiment.name)
    if old is not None and old != experiment and not replace:
        raise ValueError(f"experiment {experiment.name!r} is already registered (pass replace=True)")
    EXPERIMENTS[experiment.name] = experiment
    _DEFINED_IN[experiment.name] = module or "__main__"
    return experiment


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)} (the built-in tables "
                         f"register on `import pyro_sus.experiments`)")
    return EXPERIMENTS[name]


def defined_in(name: str) -> str:
    """The module that registered experiment ``name`` (``"__main__"``: a script's own, or not given)."""
    return _DEFINED_IN.get(name, "__main__")

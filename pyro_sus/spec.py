"""What a run does, as typed dataclasses with one JSON form: the ``run.json`` of a run folder.

``RunSpec`` gathers the data, the split, the preprocessing, the class prior, the model and its
options, and the training options (:class:`pyro_sus.train.TrainConfig`). ``fit`` writes it,
``evaluate``, ``predict``, ``--resume``, the plots and the reproduction runner read it, and the
CLI takes its defaults from these fields (the split's and preprocessing's live in
:mod:`pyro_sus.data`, beside ``make_split``), so each default lives in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ._fields import check_field_types
from .data import PreprocessSpec, SplitSpec
from .train import TrainConfig

__all__ = ["DataSpec", "SplitSpec", "PreprocessSpec", "PriorSpec", "RunSpec", "PRIOR_KINDS"]

PRIOR_KINDS = ("sus", "uniform", "given")


@dataclass(frozen=True)
class DataSpec:
    """Where the data is and what it holds: a name or a resolved path, its folder, its content hash."""

    dataset: str = "digits"
    data_dir: str | None = None
    sha256: str | None = None
    n_train: int | None = None
    image_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PriorSpec:
    """The class prior p(y): ``sus`` (``known_mass`` on the known classes), ``uniform``, or ``given`` ``probs``."""

    kind: str = "sus"
    known_mass: float = 0.5
    probs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.kind not in PRIOR_KINDS:
            raise ValueError(f"prior kind must be one of {PRIOR_KINDS}, got {self.kind!r}")
        if (self.kind == "given") != (self.probs is not None):
            raise ValueError("a given prior needs its probs, and only a given prior has them")


# run.json keys of the data, flat at its top level (the layout runs have always been written in).
_DATA_KEYS = {"dataset": "dataset", "data_dir": "data_dir", "sha256": "data_sha256", "n_train": "n_train",
              "image_shape": "image_shape"}


@dataclass(frozen=True)
class RunSpec:
    """Everything a run does, as ``fit`` writes it to run.json and every reader reads it back."""

    model: str
    data: DataSpec = field(default_factory=DataSpec)
    split: SplitSpec = field(default_factory=SplitSpec)
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    prior: PriorSpec = field(default_factory=PriorSpec)
    model_options: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.split.seed is None:  # the split follows the training seed unless given its own
            object.__setattr__(self, "split", dataclasses.replace(self.split, seed=self.train.seed))

    def to_json(self) -> dict[str, Any]:
        """The run.json form: data keys at the top level, then one object per part."""
        out: dict[str, Any] = {"model": self.model}
        for name, key in _DATA_KEYS.items():
            value = getattr(self.data, name)
            out[key] = list(value) if isinstance(value, tuple) else value
        for part in ("split", "preprocess", "prior"):
            out[part] = {k: list(v) if isinstance(v, tuple) else v
                         for k, v in dataclasses.asdict(getattr(self, part)).items()}
        out["model_options"] = dict(self.model_options)
        out["train"] = dataclasses.asdict(self.train)
        return out

    @classmethod
    def from_json(cls, info: dict[str, Any]) -> "RunSpec":
        """Read run.json's form back; parts an older pyro_sus did not write take their defaults.
        Raises ValueError naming what is wrong."""
        if not isinstance(info, dict):
            raise ValueError("run.json must hold an object")
        missing = [key for key in ("model", "dataset", "split", "prior", "model_options", "train") if key not in info]
        if missing:
            raise ValueError(f"it lacks {missing}")
        data = DataSpec(**{name: _tuple(info.get(key)) if name == "image_shape" else info.get(key)
                           for name, key in _DATA_KEYS.items()})
        return cls(info["model"], data, _part(SplitSpec, info["split"], "split"),
                   _part(PreprocessSpec, info.get("preprocess", {}), "preprocess"),
                   _part(PriorSpec, info["prior"], "prior"), dict(_object(info["model_options"], "model_options")),
                   _part(TrainConfig, info["train"], "train"))


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object, got {type(value).__name__}")
    return value


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _part(cls: type, values: Any, what: str) -> Any:
    """A part's dataclass from its JSON object: lists become tuples; an unknown key is an error."""
    values = _object(values, what)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{what} has unknown options {unknown}")
    try:
        return cls(**{k: _tuple(v) if cls is not TrainConfig else v for k, v in values.items()})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: {err}") from None

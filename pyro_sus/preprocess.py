"""Input preprocessing: keep the input dimensions whose training std exceeds a threshold
(Willetts et al.: pixel std > 0.1), chosen on a run's training points and saved as its
``preprocess.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._fields import check_field_types
from .data import DataError, check_features

__all__ = ["PreprocessSpec", "Preprocessor"]


@dataclass(frozen=True)
class PreprocessSpec:
    """Input preprocessing: keep the dimensions whose training std exceeds ``std_threshold`` (None: all)."""

    std_threshold: float | None = 0.1

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.std_threshold is not None and self.std_threshold < 0:
            raise ValueError(f"std_threshold must be >= 0 or None, got {self.std_threshold}")


@dataclass
class Preprocessor:
    """Keeps the input dimensions chosen on the training data (Willetts: pixel std > 0.1).

    ``fill`` holds the training mean of every dimension, so a model's output can be put back into
    the full input layout (dropped dimensions at their mean) for plotting.
    """

    keep: np.ndarray
    fill: np.ndarray

    @classmethod
    def fit(cls, x_train: np.ndarray, std_threshold: float | None = PreprocessSpec.std_threshold) -> "Preprocessor":
        """Keep dimensions whose training std exceeds ``std_threshold`` (None keeps all)."""
        x_train = check_features(x_train, "x_train")
        fill = x_train.mean(axis=0)
        if std_threshold is None:
            return cls(np.ones(x_train.shape[1], dtype=bool), fill)
        keep = x_train.std(axis=0) > std_threshold
        if not keep.any():
            raise DataError(f"no input dimension has training std > {std_threshold}")
        return cls(keep, fill)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of ``preprocess.npz`` (what every run folder saves)."""
        return {"keep": self.keep, "fill": self.fill}

    @classmethod
    def from_arrays(cls, arrays) -> "Preprocessor":
        """Read back :meth:`to_arrays`' output (a KeyError names a missing array)."""
        return cls(np.asarray(arrays["keep"]).astype(bool), np.asarray(arrays["fill"]))

    @property
    def input_dim(self) -> int:
        return len(self.keep)

    @property
    def output_dim(self) -> int:
        return int(self.keep.sum())

    def transform(self, x: np.ndarray, what: str = "x") -> np.ndarray:
        """Flatten, check, and keep the chosen dimensions of ``x``."""
        x = check_features(x, what)
        if x.shape[1] != self.input_dim:
            raise DataError(f"{what} has {x.shape[1]} features per point; this model was trained on "
                            f"{self.input_dim}")
        return np.ascontiguousarray(x[:, self.keep])

    def inverse_transform(self, features: np.ndarray) -> np.ndarray:
        """Put kept features back into the full layout; dropped dimensions take their training mean."""
        full = np.tile(self.fill, (len(features), 1))
        full[:, self.keep] = features
        return full

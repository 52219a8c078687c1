"""Oracles answer for one decoded cluster centre: a class label and a confidence p_c in [0, 1], or
``NO_LABEL`` when the centre is not a valid class (Vengalil & Sinha, seed 003, Sec. 3.3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from ..io import atomic_savefig
from .clustering import NO_LABEL

__all__ = ["Oracle", "OracleStopped", "SimulatedOracle", "InteractiveOracle", "parse_answer"]


class Oracle(Protocol):
    """Anything with ``answer(image) -> (label, confidence)``; ``image`` is in the data's raw layout."""

    def answer(self, image: np.ndarray) -> tuple[int, float]: ...


class OracleStopped(RuntimeError):
    """The person answering asked to stop; the answers given so far are saved in the run folder."""


class SimulatedOracle:
    """Answers for a decoded centre with the true label of the nearest real training point.

    It answers "invalid" (``NO_LABEL``) when that point's neighbourhood is mixed: fewer than
    ``purity`` of its ``neighbours`` nearest points share its label. Every valid answer comes with
    the stated ``confidence``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, confidence: float = 1.0, neighbours: int = 10,
                 purity: float = 0.6) -> None:
        # float32 halves the memory of a 60,000-image pool; nearest-neighbour ranks do not need more.
        self.x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        self.y = np.asarray(y, dtype=np.int64)
        if len(self.x) != len(self.y) or not len(self.y):
            raise ValueError("the oracle needs as many labels as inputs, and at least one")
        if (self.y < 0).any():
            raise ValueError("the simulated oracle needs a true label for every point of its pool")
        if not 0 <= confidence <= 1 or not 0 <= purity <= 1 or neighbours < 1:
            raise ValueError("confidence and purity must lie in [0, 1], neighbours >= 1")
        self.stated_confidence, self.neighbours, self.purity = confidence, neighbours, purity
        self._squared_norms = np.einsum("ij,ij->i", self.x, self.x)

    def answer(self, image: np.ndarray) -> tuple[int, float]:
        """(label, confidence) for one decoded centre; (NO_LABEL, 0.0) when its neighbourhood is mixed."""
        query = np.asarray(image, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.x.shape[1]:
            raise ValueError(f"the image has {query.shape[0]} values; the oracle's pool has {self.x.shape[1]}")
        # ||x - q||^2 up to the constant ||q||^2: one matrix-vector product over the pool.
        distances = self._squared_norms - 2.0 * (self.x @ query)
        nearest = np.argsort(distances, kind="stable")[: self.neighbours]
        label = int(self.y[nearest[0]])
        if (self.y[nearest] == label).mean() < self.purity:
            return NO_LABEL, 0.0
        return label, self.stated_confidence


def parse_answer(text: str, n_classes: int) -> tuple[int, float] | None:
    """``"7"`` → (7, 1.0); ``"7 0.8"`` → (7, 0.8); ``"x"`` → invalid; anything else → None (ask again)."""
    parts = text.strip().lower().split()
    if parts in (["x"], ["invalid"], ["-1"]):
        return NO_LABEL, 0.0
    if not 1 <= len(parts) <= 2:
        return None
    try:
        label = int(parts[0])
        confidence = float(parts[1]) if len(parts) == 2 else 1.0
    except ValueError:
        return None
    if not 0 <= label < n_classes or not 0 <= confidence <= 1:
        return None
    return label, confidence


class InteractiveOracle:
    """Shows each decoded centre (saved as ``query.png`` in ``folder``, and in a window when
    matplotlib has one) and reads the answer from the terminal: a class id, optionally followed by
    a confidence in [0, 1] (default 1); ``x`` when the image is not a valid class; ``q`` to stop."""

    def __init__(self, n_classes: int, image_shape: tuple[int, ...] | None, folder: str | Path,
                 ask: Callable[[str], str] = input, show: bool = True) -> None:
        self.n_classes, self.image_shape = n_classes, tuple(image_shape) if image_shape else None
        self.folder, self.ask, self.show = Path(folder), ask, show
        self.asked = 0

    def _draw(self, image: np.ndarray) -> Path:
        import matplotlib.pyplot as plt

        path = self.folder / "query.png"
        self.folder.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(2.5, 2.5))
        if self.image_shape and len(self.image_shape) == 2:
            ax.imshow(np.asarray(image).reshape(self.image_shape), cmap="gray", vmin=0, vmax=1)
        else:  # not an image: show the feature vector as a bar chart
            ax.bar(range(np.asarray(image).size), np.asarray(image).reshape(-1))
        ax.set_title(f"query {self.asked + 1}")
        ax.axis("off")
        atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
        if self.show and plt.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
            plt.show(block=False)
            plt.pause(0.1)
        plt.close(fig)
        return path

    def answer(self, image: np.ndarray) -> tuple[int, float]:
        """Ask until the reply parses; ``q`` raises :class:`OracleStopped`."""
        path = self._draw(image)
        prompt = (f"[{path}] class 0-{self.n_classes - 1} (optionally a confidence, e.g. '7 0.8'), "
                  f"'x' = not a valid class, 'q' = stop: ")
        while True:
            text = self.ask(prompt)
            if text.strip().lower() in ("q", "quit"):
                raise OracleStopped("stopped by the user; run again with --resume to continue where you left off")
            parsed = parse_answer(text, self.n_classes)
            if parsed is not None:
                self.asked += 1
                return parsed
            print(f"could not read {text!r}: give a class id in 0-{self.n_classes - 1}, 'x' or 'q'")

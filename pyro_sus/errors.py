"""The errors a user can act on, each printed by the command line as one line (no torch needed to
name them, so that ``pyro-sus --help`` and ``pyro-sus models`` load none)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CheckpointError", "RunFileError", "RunBusyError", "TrainingDiverged"]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not one of ours."""


class RunFileError(ValueError):
    """A file of a run folder (run.json, mapping.json, ...) is malformed, e.g. after a hand edit."""


class RunBusyError(RuntimeError):
    """Another process holds the run folder (it is training or evaluating it)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good parameters were saved (when there is a run folder)."""

    def __init__(self, message: str, loss: float | None = None, epoch: int | None = None, step: int | None = None):
        super().__init__(message)
        self.loss, self.epoch, self.step = loss, epoch, step

    @classmethod
    def at(cls, loss: float, epoch: int, step: int, saved_to: Path | None) -> "TrainingDiverged":
        """The error for a non-finite loss or gradient at 1-based ``epoch`` and ``step``."""
        error = cls("", loss, epoch, step)
        error.args = (error.describe(saved_to),)
        return error

    def describe(self, saved_to: Path | None) -> str:
        """The message, saying where the parameters before the bad step went (``saved_to``), if anywhere."""
        where = f"; parameters before this step saved to {saved_to}" if saved_to is not None else ""
        return (f"loss or gradients became non-finite (loss {self.loss}) at epoch {self.epoch}, step {self.step}"
                f"{where}. Try a lower learning rate, and check the data for NaN and its scale against the "
                f"likelihood.")

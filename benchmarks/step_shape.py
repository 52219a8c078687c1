"""The shape of the Table II MNIST SUS step, as the speed benchmarks take it on the command line."""

from __future__ import annotations

import argparse

__all__ = ["add_step_shape_arguments"]


def add_step_shape_arguments(parser: argparse.ArgumentParser, steps: int) -> None:
    """``--device``, ``--x-dim`` (MNIST after the std filter: 444), ``--slots`` (Table II's 5 known
    classes + 40 extra slots), ``--hidden``, ``--batch`` and ``--steps`` (timed steps, default ``steps``)."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--x-dim", type=int, default=444)
    parser.add_argument("--slots", type=int, default=45)
    parser.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=steps)

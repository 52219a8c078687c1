"""Figures a run writes: the confusion matrix, and samples of p(x|y) per slot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# No backend is forced: matplotlib falls back to Agg without a display (CI, servers), and
# notebooks keep their inline backend so the returned figures show up.
import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["plot_confusion", "plot_class_samples"]


def plot_confusion(scored: dict[str, Any], path: str | Path | None = None, title: str = "",
                   ax: plt.Axes | None = None) -> plt.Figure:
    """Row-normalised confusion matrix (true class x mapped prediction) from :func:`metrics.score`."""
    matrix = np.asarray(scored["confusion_matrix"], dtype=float)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    classes = scored["confusion_classes"]
    fig = ax.figure if ax is not None else plt.figure(figsize=(5, 4.5))
    ax = ax if ax is not None else fig.add_subplot()
    image = ax.imshow(rows, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class (after mapping)")
    ax.set_ylabel("true class")
    accuracy = f"accuracy {scored['accuracy']:.3f}"
    ax.set_title(f"{title}\n{accuracy}" if title else accuracy)
    fig.colorbar(image, ax=ax, fraction=0.046)
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return fig


@torch.no_grad()
def plot_class_samples(run, slots: list[int] | None = None, n_samples: int = 6, seed: int = 0,
                       path: str | Path | None = None) -> plt.Figure:
    """Mean of p(x|z, y) for ``n_samples`` draws z ~ p(z|y) (rows) and each slot y (columns)."""
    model, pre = run.model, run.preprocessor
    shape = run.info.get("image_shape")
    if not shape:
        raise ValueError("this run's data has no image shape; samples cannot be drawn as images")
    slots = list(range(model.config.n_slots)) if slots is None else slots
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    y = torch.tensor(slots, device=device).repeat_interleave(n_samples)
    z = model.latent_prior(y).sample()
    mean = model.likelihood(z, y).base_dist.mean.cpu().numpy()
    images = pre.inverse_transform(mean).reshape(len(slots), n_samples, *shape)
    fig, axes = plt.subplots(n_samples, len(slots), figsize=(0.8 * len(slots), 0.8 * n_samples), squeeze=False)
    for col, slot in enumerate(slots):
        for row in range(n_samples):
            axes[row, col].imshow(images[col, row], cmap="gray", vmin=0, vmax=1)
            axes[row, col].axis("off")
        label = run.mapping[slot] if run.mapping is not None else -1
        axes[0, col].set_title(f"y={slot}" + (f"\n({label})" if label >= 0 else ""), fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return fig

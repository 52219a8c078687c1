"""Figures a run writes: the confusion matrix, counts by slot and the images of each discovered
slot (the discovery report's, :mod:`pyro_sus.report`), samples of p(x|y) per slot, per-epoch
curves, and the active loop's decoded centres and per-round accuracy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# No backend is forced: matplotlib falls back to Agg without a display (CI, servers), and
# notebooks keep their inline backend so the returned figures show up.
import matplotlib.pyplot as plt
import numpy as np
import torch

from .io import atomic_savefig

__all__ = ["plot_confusion", "plot_slot_counts", "plot_discovered_slots", "slot_order", "plot_class_samples", "plot_curves", "plot_learning_curves", "plot_centres",
           "plot_active_rounds", "CURVE_KEYS", "CURVE_TITLES"]


def plot_confusion(scored: dict[str, Any], path: str | Path | None = None, title: str = "",
                   ax: plt.Axes | None = None, unseen: Mapping[str, Mapping[str, int]] | None = None) -> plt.Figure:
    """Confusion matrix (true class x mapped prediction) from :func:`metrics.score`: colour the share
    of each row, the count written in every non-empty cell. ``unseen`` (``results.json``'s
    ``open_set.predicted_as``: per class training never saw, its test points' counts by mapped
    prediction) adds a row per such class below a line."""
    matrix = np.asarray(scored["confusion_matrix"], dtype=int)
    classes = [str(c) for c in scored["confusion_classes"]]
    labels = list(classes)
    if unseen:
        extra = np.array([[counts.get(c, 0) for c in classes] for counts in unseen.values()], dtype=int)
        totals = np.array([sum(counts.values()) for counts in unseen.values()])  # unmapped slots included
        matrix = np.vstack([matrix, extra])
        labels += [f"{c} (unseen)" for c in unseen]
    else:
        totals = np.zeros(0, dtype=int)
    row_totals = np.concatenate([matrix[: len(classes)].sum(axis=1), totals])
    rows = matrix / np.maximum(row_totals[:, None], 1)
    size = 0.45 * max(len(classes), len(labels)) + 2
    fig = ax.figure if ax is not None else plt.figure(figsize=(size + 1, size))
    ax = ax if ax is not None else fig.add_subplot()
    image = ax.imshow(rows, vmin=0, vmax=1, cmap="viridis")
    fontsize = 8 if len(classes) <= 15 else 6
    for i, j in zip(*np.nonzero(matrix)):
        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=fontsize,
                color="black" if rows[i, j] > 0.6 else "white")
    if unseen:
        ax.axhline(len(classes) - 0.5, color="white", lw=2)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted class (slot mapped on validation)")
    ax.set_ylabel("true class" + (" (classes training never saw below the line)" if unseen else ""))
    accuracy = f"accuracy {scored['accuracy']:.3f} (colour: share of the row; numbers: counts)"
    ax.set_title(f"{title}\n{accuracy}" if title else accuracy, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    if path is not None:
        atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return fig


def slot_order(table: Sequence[dict[str, Any]], mapping: np.ndarray) -> list[int]:
    """Known slots first, then discovered slots by the class they map to, unmapped and empty ones last."""
    known = [r["slot"] for r in table if r["kind"] == "known"]
    discovered = [r["slot"] for r in table if r["kind"] == "discovered"]
    return known + sorted(discovered, key=lambda s: (mapping[s] < 0, mapping[s], s))


def plot_slot_counts(slots: np.ndarray, labels: np.ndarray, table: Sequence[dict[str, Any]], mapping: np.ndarray,
                     known_classes: Sequence[int], hidden_classes: Sequence[int], path: str | Path,
                     title: str = "", unseen_slots: np.ndarray | None = None,
                     unseen_labels: np.ndarray | None = None) -> None:
    """Counts of true class (rows: known, hidden, then the classes training never saw, given as
    ``unseen_slots`` / ``unseen_labels``) by slot (columns: known, then discovered in mapping
    order), with lines between those groups, the count written in every non-empty cell."""
    slots, labels = np.asarray(slots), np.asarray(labels)
    unseen_slots = np.zeros(0, dtype=np.int64) if unseen_slots is None else np.asarray(unseen_slots)
    unseen_labels = np.zeros(0, dtype=np.int64) if unseen_labels is None else np.asarray(unseen_labels)
    every_slot = np.concatenate([slots, unseen_slots])
    order = [s for s in slot_order(table, mapping) if (every_slot == s).any()]
    unseen_classes = [int(c) for c in np.unique(unseen_labels)]
    classes = list(known_classes) + list(hidden_classes)
    counts = np.array([[int(((labels == c) & (slots == s)).sum()) for s in order] for c in classes]
                      + [[int(((unseen_labels == c) & (unseen_slots == s)).sum()) for s in order]
                         for c in unseen_classes])
    row_names = [str(c) for c in classes] + [f"{c} (unseen)" for c in unseen_classes]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(order) + 2.5), 0.5 * len(row_names) + 2.2))
    ax.imshow(np.log1p(counts), aspect="auto", cmap="viridis")
    for i, j in zip(*np.nonzero(counts)):
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9 if len(order) <= 25 else 7,
                color="white" if np.log1p(counts[i, j]) < np.log1p(counts.max()) / 2 else "black")
    n_known_slots = sum(1 for s in order if s < len(known_classes))
    ax.axhline(len(known_classes) - 0.5, color="red", lw=1.5)
    if unseen_classes:
        ax.axhline(len(classes) - 0.5, color="white", lw=2)
    ax.axvline(n_known_slots - 0.5, color="red", lw=1.5)
    ax.set_yticks(range(len(row_names)), row_names, fontsize=9)
    ax.set_xticks(range(len(order)), [f"{s}\n→{mapping[s]}" if mapping[s] >= 0 else f"{s}\n–" for s in order],
                  fontsize=8 if len(order) <= 25 else 6)
    ax.set_ylabel("true class: labelled above the red line, hidden below"
                  + (", never seen in training below the white one" if unseen_classes else ""), fontsize=9)
    ax.set_xlabel("slot, and the class it maps to on validation (–: none); known slots left of the red line",
                  fontsize=9)
    ax.set_title(f"{title} (colour: log count)" if title else "counts (colour: log count)", fontsize=10)
    atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_discovered_slots(images: np.ndarray, probs: np.ndarray, table: Sequence[dict[str, Any]],
                          image_shape: Sequence[int], path: str | Path, per_slot: int = 8) -> None:
    """For each discovered slot in use, the ``per_slot`` images it is most sure of (highest q(y=slot|x)),
    under a caption naming the class it maps to and that class's share of its validation points."""
    slots = probs.argmax(-1)
    rows = [r for r in table if r["kind"] == "discovered" and (slots == r["slot"]).any()]
    if not rows:
        return
    fig, axes = plt.subplots(len(rows), per_slot, figsize=(1.0 * per_slot, 1.45 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, row in enumerate(rows):
        members = np.flatnonzero(slots == row["slot"])
        best = members[np.argsort(-probs[members, row["slot"]])[:per_slot]]
        for j, index in enumerate(best):
            axes[i, j].imshow(images[index].reshape(image_shape), cmap="gray")
        label = ": no validation point" if row["validation_majority"] is None else (
            f" → class {row['validation_majority']} (validation purity {100 * row['validation_purity']:.0f}%, "
            f"{row['validation_size']} point{'' if row['validation_size'] == 1 else 's'})")
        axes[i, 0].set_title(f"slot {row['slot']}{label}", fontsize=8, loc="left", pad=4)
    fig.suptitle("Discovered slots: the test images each is surest of", fontsize=10)
    fig.subplots_adjust(hspace=0.55, top=1 - 0.45 / (1.45 * len(rows)))
    atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)


@torch.no_grad()
def plot_class_samples(run, slots: list[int] | None = None, n_samples: int = 6, seed: int = 0,
                       path: str | Path | None = None) -> plt.Figure:
    """Mean of p(x|z, y) for ``n_samples`` draws z ~ p(z|y) (rows) and each slot y (columns)."""
    model, pre = run.model, run.preprocessor
    shape = run.spec.data.image_shape
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
        atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return fig


def plot_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], keys: Sequence[str],
                path: str | Path | None = None, title: str = "", columns: int = 4,
                titles: Mapping[str, str] | None = None) -> plt.Figure:
    """One panel per record key (e.g. ``val_novel_accuracy``) against epoch, one line per run.

    ``histories`` maps a run's label to its per-epoch records (``metrics.jsonl``); epochs where a
    run has no value for a key are left out of that line. Panels fill rows of ``columns``, each
    titled by ``titles`` (default :data:`CURVE_TITLES`, else the key).
    """
    if not keys:
        raise ValueError("plot_curves needs at least one record key")
    titles = CURVE_TITLES if titles is None else titles
    columns = min(columns, len(keys))
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    # One colour per run in every panel, also where an earlier run has no value for the key.
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, keys):
        for index, (label, history) in enumerate(histories.items()):
            points = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker=".", label=label, color=cycle[index % len(cycle)])
        ax.set_xlabel("epoch")
        ax.set_title(titles.get(key, key), fontsize=9)
    if len(histories) > 1:
        axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return fig


#: What a run's learning curves show, besides every ``loss_<term>`` its records carry.
CURVE_KEYS = ("loss", "lr", "val_accuracy", "val_cluster_accuracy", "val_known_accuracy", "val_novel_accuracy",
              "val_extra_slots_used", "prior_z_sd_known", "prior_z_sd_extra")

#: A panel's title per record key (the loss terms as :meth:`ZooModel.loss_terms` names them).
CURVE_TITLES = {
    "loss": "loss (per point, training batches)", "lr": "learning rate",
    "loss_reconstruction": "reconstruction: -log p(x | ...)", "loss_kl_z": "KL(q(z | ...) || p(z | ...))",
    "loss_kl_y": "KL(q(y | x) || p(y)), unlabelled", "loss_nll_y": "-log p(y), labelled",
    "loss_classifier_loss": "classifier loss: alpha x cross-entropy", "loss_kl_a": "KL of the auxiliary a",
    "loss_assignment": "assignment loss (categorical VAE)", "loss_feature": "feature loss (categorical VAE)",
    "val_accuracy": "validation accuracy (honest)", "val_cluster_accuracy": "validation cluster accuracy (Hungarian)",
    "val_known_accuracy": "validation accuracy, labelled classes",
    "val_novel_accuracy": "validation accuracy, hidden classes",
    "val_extra_slots_used": "extra slots holding validation points", "prior_z_sd_known": "sd of p(z | y), known slots",
    "prior_z_sd_extra": "sd of p(z | y), extra slots",
}


def plot_learning_curves(history: Sequence[Mapping[str, Any]], path: str | Path | None = None,
                         title: str = "") -> plt.Figure:
    """A run's per-epoch curves: the loss and its named terms, the learning rate, and the validation
    accuracies, the extra slots in use and the spread of a learned p(z|y) (whichever its records have).
    A quantity that never changed gets no panel; the title names it with its value."""
    present = {key for record in history for key in record}
    terms = sorted(key for key in present if key.startswith("loss_"))
    keys = [key for key in CURVE_KEYS[:1] if key in present] + terms + [k for k in CURVE_KEYS[1:] if k in present]
    constant = {}
    for key in keys:
        values = [r[key] for r in history if r.get(key) is not None]
        if len(history) > 1 and len(values) == len(history) and max(values) - min(values) <= 1e-9 * max(
                1.0, abs(values[0])):
            constant[key] = values[0]
    shown = [key for key in keys if key not in constant] or keys[:1]
    if constant:
        text = "; ".join(f"{CURVE_TITLES.get(key, key)} = {value:.4g}" for key, value in constant.items())
        note = f"constant throughout, not drawn: {text}"
        title = f"{title}\n{note}" if title else note
    return plot_curves({"run": history}, shown, path, title=title)


def plot_centres(images: np.ndarray, titles: list[str], image_shape: tuple[int, ...] | None,
                 path: str | Path | None = None, title: str = "", columns: int = 10) -> plt.Figure:
    """A grid of decoded cluster centres (raw data layout), each with its title (e.g. the answer)."""
    images = np.asarray(images)
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, titles):
        if image_shape is not None and len(image_shape) == 2:
            ax.imshow(image.reshape(image_shape), cmap="gray", vmin=0, vmax=1)
        else:  # not an image: the feature vector as a bar chart
            ax.bar(range(image.size), image.reshape(-1))
        ax.set_title(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    if path is not None:
        atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return fig


def plot_active_rounds(records: list[dict[str, Any]], path: str | Path | None = None) -> plt.Figure:
    """Test accuracy and labelled coverage per round of the active loop, with answers spent."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    scored = [r for r in records if r.get("test_accuracy") is not None]
    ax.plot([r["round"] for r in scored], [r["test_accuracy"] for r in scored], "o-", label="test accuracy")
    ax.plot([r["round"] for r in records], [r["coverage"] for r in records], "s--", label="labelled coverage")
    for r in scored:
        ax.annotate(f"{r['answers_total']}", (r["round"], r["test_accuracy"]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xlabel("round (numbers: answers spent so far)")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    if path is not None:
        atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return fig

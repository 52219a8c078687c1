"""The simple thing to beat: PCA, then k-means with one cluster per slot (issue 41).

The generalized-category-discovery papers print a k-means row beside every deep model; this is that
row on our splits. Inputs are projected on their first ``pca_dim`` principal components (fitted on
the run's training points, labelled and unlabelled), then clustered into ``n_slots`` clusters by
Lloyd's algorithm. The known slots start at the labelled points' class means (seeded k-means, Basu et
al. 2002), so each keeps its class's id; the extra slots start by k-means++ from the points, given
the known centres; the best of ``n_init`` starts (lowest inertia) is kept. No label is used after
the start. Prediction is the nearest centre; every score comes through the same evaluation as the
Pyro models'.

It is no Pyro model: nothing is trained by gradient (``trained_by_gradient = False``); the run path
calls :meth:`KMeansBaseline.fit_data` once (:class:`pyro_sus.train.ClosedFormFit`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Batch, ModelConfig, ZooModel
from .registry import register_model

__all__ = ["KMeansConfig", "KMeansBaseline"]


@dataclass
class KMeansConfig(ModelConfig):
    """``pca_dim``: principal components kept (at most ``x_dim``); ``n_init``: starts, the best kept;
    ``max_iter``: Lloyd iterations per start. (``hidden_dims`` and ``activation`` are unused.)"""

    pca_dim: int = 50
    n_init: int = 3
    max_iter: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pca_dim < 1 or self.n_init < 1 or self.max_iter < 1:
            raise ValueError(f"pca_dim, n_init and max_iter must be >= 1: {self}")

    @property
    def components(self) -> int:
        return min(self.pca_dim, self.x_dim)


@register_model("kmeans")
class KMeansBaseline(ZooModel):
    """PCA + seeded k-means with one cluster per slot; q(y|x) puts its mass on the nearest centre."""

    config_class = KMeansConfig
    trained_by_gradient = False
    enumerates_unlabelled = False
    loss_is_the_bounds = False
    fit_score_kind = "negative_distance"

    def __init__(self, config: KMeansConfig) -> None:
        super().__init__(config)
        p = config.components
        self.register_buffer("mean", torch.zeros(config.x_dim))
        self.register_buffer("pca", torch.zeros(p, config.x_dim))
        self.register_buffer("centres", torch.zeros(config.n_slots, p))

    def stacking_refusal(self) -> str | None:
        return "k-means is fitted in closed form, not by gradient steps"

    @property
    def device(self) -> torch.device:
        return self.centres.device

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the principal components."""
        return (x - self.mean) @ self.pca.T

    @torch.no_grad()
    def latent_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The points' coordinates on the principal components (what the clusters live in)."""
        return self.project(x)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Squared distance of each row of ``x`` to each centre, in the principal components."""
        return torch.cdist(self.project(x), self.centres).square()

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        """Minus the squared distances: the nearest centre has the largest logit."""
        return -self.distances(x)

    @torch.no_grad()
    def fit_scores(self, x: torch.Tensor, n_samples: int = 4, batch_size: int = 1024) -> torch.Tensor:
        """Minus the squared distance to the nearest centre (higher fits better)."""
        return torch.cat([-self.distances(chunk).min(-1).values for chunk in x.split(batch_size)])

    @torch.no_grad()
    def unlabelled_bound(self, x: torch.Tensor, n_samples: int = 4, batch_size: int = 1024) -> float | None:
        return None

    def loss(self, batch: Batch) -> torch.Tensor:
        raise TypeError("k-means has no gradient objective: it is fitted in closed form (fit_data)")

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise TypeError("k-means has no gradient objective: it is fitted in closed form (fit_data)")

    @torch.no_grad()
    def fit_data(self, x_labelled: torch.Tensor, y_labelled: torch.Tensor, x_unlabelled: torch.Tensor,
                 seed: int) -> dict[str, float]:
        """Fit the components and the centres on the training points (labels: slots of the labelled
        ones, which seed their slots' centres); returns the fit's record (inertia per point, iterations)."""
        x = torch.cat([x_labelled, x_unlabelled]).to(self.centres.device, torch.float64)
        if len(x) < self.config.n_slots:
            raise ValueError(f"k-means needs at least one point per slot: {len(x)} points, {self.config.n_slots} slots")
        mean = x.mean(0)
        # Principal components of the centred points (the right singular vectors), signs fixed so a
        # refit gives the same projection.
        _, _, vt = torch.linalg.svd(x - mean, full_matrices=False)
        pca = vt[: self.config.components]
        signs = torch.sign(pca.gather(1, pca.abs().argmax(1, keepdim=True)))
        pca = pca * torch.where(signs == 0, 1.0, signs)
        points = (x - mean) @ pca.T
        labelled = points[: len(x_labelled)]
        slots = y_labelled.to(self.centres.device)
        known = torch.unique(slots)
        generator = torch.Generator().manual_seed(seed)
        best = None
        for _ in range(self.config.n_init):
            centres = self._start(points, labelled, slots, known, generator)
            centres, inertia, iterations = _lloyd(points, centres, self.config.max_iter)
            if best is None or inertia < best[1]:
                best = (centres, inertia, iterations)
        centres, inertia, iterations = best
        self.mean.copy_(mean.float())
        self.pca.copy_(pca.float())
        self.centres.copy_(centres.float())
        return {"inertia_per_point": float(inertia) / len(x), "iterations": int(iterations),
                "known_slots_seeded": int(len(known))}

    def _start(self, points: torch.Tensor, labelled: torch.Tensor, slots: torch.Tensor, known: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
        """Known slots at their labelled points' mean; the other slots by k-means++ given those."""
        centres = torch.empty(self.config.n_slots, points.shape[1], dtype=points.dtype, device=points.device)
        placed = torch.zeros(self.config.n_slots, dtype=torch.bool, device=points.device)
        for slot in known.tolist():
            centres[slot] = labelled[slots == slot].mean(0)
            placed[slot] = True
        for slot in range(self.config.n_slots):
            if placed[slot]:
                continue
            if placed.any():
                nearest = torch.cdist(points, centres[placed]).square().min(1).values
                weights = nearest / nearest.sum() if nearest.sum() > 0 else torch.full_like(nearest, 1 / len(points))
            else:
                weights = torch.full((len(points),), 1 / len(points), dtype=points.dtype, device=points.device)
            centres[slot] = points[torch.multinomial(weights.cpu(), 1, generator=generator).item()]
            placed[slot] = True
        return centres


def _lloyd(points: torch.Tensor, centres: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, float, int]:
    """Lloyd's iterations from ``centres`` until the assignment stops changing; an emptied cluster
    keeps its centre. Returns (centres, inertia, iterations)."""
    assignment = None
    for iteration in range(1, max_iter + 1):
        new = torch.cdist(points, centres).argmin(1)
        if assignment is not None and torch.equal(new, assignment):
            break
        assignment = new
        counts = torch.bincount(assignment, minlength=len(centres)).unsqueeze(1)
        sums = torch.zeros_like(centres).index_add_(0, assignment, points)
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    inertia = torch.cdist(points, centres).square().min(1).values.sum()
    return centres, float(inertia), iteration

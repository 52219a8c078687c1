"""Latent clustering, confidence functions and label propagation (Vengalil & Sinha, seed 003):
every member of a cluster takes its centre's label with a confidence w_n = p_c f(d_n) (Eqs. 2-3;
for a Gaussian mixture, p_c times the member's posterior probability)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CONFIDENCE_FUNCTIONS", "CLUSTER_METHODS", "METRICS", "NO_LABEL", "confidence", "Clustering",
           "cluster_latents", "propagate_labels", "mahalanobis"]

CONFIDENCE_FUNCTIONS = ("exponential", "gaussian")
CLUSTER_METHODS = ("kmeans", "gmm")
METRICS = ("euclidean", "mahalanobis")
NO_LABEL = -1
COVARIANCE_RIDGE = 1e-6  # keeps a cluster's covariance invertible when its members are degenerate


def confidence(distances: np.ndarray, kind: str = "gaussian", rate: float = 1 / 3) -> np.ndarray:
    """f(d) in (0, 1], decreasing in d: ``exp(-rate d)`` (Eq. 2) or ``exp(-rate d^2)`` (Eq. 3).

    The default rate 1/3 is the authors' code (exp(-d/3), exp(-d^2/3))."""
    distances = np.asarray(distances, dtype=np.float64)
    if kind not in CONFIDENCE_FUNCTIONS:
        raise ValueError(f"confidence kind must be one of {CONFIDENCE_FUNCTIONS}, got {kind!r}")
    if rate <= 0 or (distances < 0).any():
        raise ValueError("the rate must be > 0 and distances >= 0")
    return np.exp(-rate * (distances if kind == "exponential" else distances ** 2))


@dataclass
class Clustering:
    """Centres, each point's cluster, its distance to that centre, and (GMM) its posterior probability."""

    centres: np.ndarray
    assignments: np.ndarray
    distances: np.ndarray
    posterior: np.ndarray | None
    method: str
    metric: str


def mahalanobis(z: np.ndarray, centre: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Each row of ``z``'s Mahalanobis distance to ``centre`` under ``covariance`` (with a small ridge)."""
    precision = np.linalg.inv(covariance + COVARIANCE_RIDGE * np.eye(len(centre)))
    diff = z - centre
    return np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", diff, precision, diff), 0.0))


def cluster_latents(z: np.ndarray, n_clusters: int, method: str = "kmeans", metric: str = "euclidean",
                    seed: int = 0) -> Clustering:
    """Cluster latent means ``z`` (N, D) with scikit-learn's k-means or a full-covariance Gaussian
    mixture; distances to the assigned centre are Euclidean or Mahalanobis (with the cluster's own
    covariance: its members' for k-means, the component's for the mixture)."""
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    z = np.asarray(z, dtype=np.float64)
    if method not in CLUSTER_METHODS or metric not in METRICS:
        raise ValueError(f"method must be one of {CLUSTER_METHODS} and metric one of {METRICS}")
    if z.ndim != 2 or not np.isfinite(z).all():
        raise ValueError(f"latents must be a finite (N, D) array, got shape {z.shape}")
    if not 1 <= n_clusters <= len(z):
        raise ValueError(f"need 1 <= n_clusters <= {len(z)} points, got {n_clusters}")
    posterior = None
    if method == "kmeans":
        fitted = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(z)
        centres, assignments = fitted.cluster_centers_, fitted.labels_
        covariances = [np.cov(z[assignments == k].T, bias=True).reshape(z.shape[1], z.shape[1])
                       if (assignments == k).sum() > 1 else np.eye(z.shape[1]) for k in range(n_clusters)]
    else:
        fitted = GaussianMixture(n_components=n_clusters, covariance_type="full", random_state=seed).fit(z)
        centres, covariances = fitted.means_, list(fitted.covariances_)
        responsibilities = fitted.predict_proba(z)
        assignments = responsibilities.argmax(1)
        posterior = responsibilities[np.arange(len(z)), assignments]
    distances = np.empty(len(z))
    for k in range(n_clusters):
        members = assignments == k
        if metric == "euclidean":
            distances[members] = np.linalg.norm(z[members] - centres[k], axis=1)
        else:
            distances[members] = mahalanobis(z[members], centres[k], covariances[k])
    return Clustering(centres, assignments.astype(np.int64), distances, posterior, method, metric)


def propagate_labels(clustering: Clustering, centre_labels: np.ndarray, centre_confidence: np.ndarray,
                     kind: str = "gaussian", rate: float = 1 / 3) -> tuple[np.ndarray, np.ndarray]:
    """Every member takes its centre's label with weight p_c f(d_n) (k-means) or p_c times its
    posterior probability (mixture). A centre labelled ``NO_LABEL`` (invalid) gives label -1, weight 0."""
    centre_labels = np.asarray(centre_labels, dtype=np.int64)
    centre_confidence = np.asarray(centre_confidence, dtype=np.float64)
    n_centres = len(clustering.centres)
    if centre_labels.shape != (n_centres,) or centre_confidence.shape != (n_centres,):
        raise ValueError(f"need one label and one confidence per centre ({n_centres})")
    if ((centre_confidence < 0) | (centre_confidence > 1)).any():
        raise ValueError("centre confidences must lie in [0, 1]")
    labels = centre_labels[clustering.assignments]
    closeness = clustering.posterior if clustering.posterior is not None else confidence(clustering.distances, kind, rate)
    weights = centre_confidence[clustering.assignments] * closeness
    weights[labels == NO_LABEL] = 0.0
    return labels, weights

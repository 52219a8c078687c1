"""Clustering, confidence, label propagation and the simulated oracle of the active-labelling loop."""

import numpy as np
import pytest

from pyro_sus.active import NO_LABEL, SimulatedOracle, cluster_latents, confidence, propagate_labels


@pytest.mark.parametrize("kind", ["exponential", "gaussian"])
def test_confidence_is_one_at_the_centre_and_decreases(kind):
    d = np.linspace(0, 10, 101)
    f = confidence(d, kind, rate=0.5)
    assert f[0] == 1.0 and (np.diff(f) < 0).all() and (f > 0).all()
    expected = np.exp(-0.5 * d) if kind == "exponential" else np.exp(-0.5 * d ** 2)
    np.testing.assert_allclose(f, expected)


def test_gaussian_confidence_decays_slower_near_the_centre_and_faster_far_away():
    near, far = np.array([0.5]), np.array([3.0])
    assert confidence(near, "gaussian", 1 / 3) > confidence(near, "exponential", 1 / 3)
    assert confidence(far, "gaussian", 1 / 3) < confidence(far, "exponential", 1 / 3)
    with pytest.raises(ValueError):
        confidence(near, "linear")


def elongated_clusters(seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(400, 2)) * [3.0, 0.3] + [0.0, 0.0]    # long along x
    b = rng.normal(size=(400, 2)) * [3.0, 0.3] + [0.0, 10.0]
    return np.vstack([a, b])


def test_mahalanobis_uses_the_clusters_own_covariance():
    z = elongated_clusters()
    euclid = cluster_latents(z, 2, "kmeans", "euclidean")
    mahal = cluster_latents(z, 2, "kmeans", "mahalanobis")
    assert (euclid.assignments == mahal.assignments).all()
    k = mahal.assignments[0]
    members = z[mahal.assignments == k]
    cov = np.cov(members.T, bias=True) + 1e-6 * np.eye(2)
    diff = z[0] - mahal.centres[k]
    assert mahal.distances[0] == pytest.approx(np.sqrt(diff @ np.linalg.inv(cov) @ diff))
    # A point 3 units along the long axis is as typical as one 0.3 units along the short one:
    # Euclidean calls the first far, Mahalanobis calls them equal.
    along, across = members.mean(0) + [3.0, 0.0], members.mean(0) + [0.0, 0.3]
    assert np.linalg.norm(along - mahal.centres[k]) > 5 * np.linalg.norm(across - mahal.centres[k])
    from pyro_sus.active import _mahalanobis
    d = _mahalanobis(np.vstack([along, across]), members.mean(0), np.cov(members.T, bias=True))
    assert d[0] == pytest.approx(d[1], rel=0.15)


def test_propagation_gives_every_member_its_centres_label_and_weight():
    z = elongated_clusters()
    clustering = cluster_latents(z, 2, "kmeans", "euclidean")
    labels, weights = propagate_labels(clustering, np.array([7, 3]), np.array([0.9, 0.5]), "exponential", 0.5)
    assert (labels == np.array([7, 3])[clustering.assignments]).all()
    np.testing.assert_allclose(weights, np.array([0.9, 0.5])[clustering.assignments]
                               * np.exp(-0.5 * clustering.distances))
    labels, weights = propagate_labels(clustering, np.array([7, NO_LABEL]), np.array([0.9, 0.0]))
    assert (labels[clustering.assignments == 1] == NO_LABEL).all()
    assert (weights[clustering.assignments == 1] == 0).all()


def test_gmm_weight_is_centre_confidence_times_posterior():
    z = elongated_clusters()
    clustering = cluster_latents(z, 2, "gmm", "mahalanobis")
    assert clustering.posterior is not None and ((clustering.posterior > 0.5) & (clustering.posterior <= 1)).all()
    _, weights = propagate_labels(clustering, np.array([1, 2]), np.array([0.8, 0.8]))
    np.testing.assert_allclose(weights, 0.8 * clustering.posterior)


def test_simulated_oracle_answers_with_the_nearest_points_label_or_invalid():
    x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]])
    y = np.array([1, 1, 1, 2, 4, 6])
    oracle = SimulatedOracle(x, y, confidence=0.9, neighbours=3, purity=0.6)
    assert oracle.answer(np.array([0.05, 0.02])) == (1, 0.9)            # three 1s around it
    assert oracle.answer(np.array([5.0, 5.0])) == (NO_LABEL, 0.0)       # nearest is a 2, but 2, 4, 6 around it
    assert SimulatedOracle(x, y, neighbours=1).answer(np.array([5.0, 5.0])) == (2, 1.0)
    with pytest.raises(ValueError):
        SimulatedOracle(x, y[:3])


def test_clustering_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        cluster_latents(np.array([[0.0, np.nan]]), 1)
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_latents(np.zeros((3, 2)), 5)

"""Clustering / integration / label-transfer scores (scib definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import (
    adjusted_rand_score,
    balanced_accuracy_score,
    f1_score,
    normalized_mutual_info_score,
)
from sklearn.metrics import silhouette_samples as sk_silhouette_samples

from cellweave.errors import InputError
from cellweave.metrics import (
    ari,
    clisi,
    foscttm,
    graph_connectivity,
    ilisi,
    integration_scores,
    isolated_label_score,
    knn_graph,
    label_transfer_scores,
    lisi,
    nmi,
    silhouette_batch,
    silhouette_label,
    silhouette_samples,
)
from cellweave.metrics.lisi import lisi_from_knn as _lisi_from_knn
from cellweave.metrics.lisi import neighbor_probabilities as _neighbor_probabilities


def blobs(rng, n_per, centers, scale=1.0):
    """Gaussian blobs around ``centers``; returns points and blob index."""
    centers = np.asarray(centers, dtype=float)
    x = np.concatenate([c + scale * rng.normal(size=(n_per, centers.shape[1])) for c in centers])
    return x, np.repeat(np.arange(len(centers)), n_per)


# ----------------------------------------------------------------------------- ARI / NMI


def test_ari_nmi_hand_computed():
    t, p = ["a", "a", "b", "b"], [0, 0, 0, 1]
    # contingency [[2, 0], [1, 1]]: sum C(n_ij,2) = 1, rows 2, cols 3, C(4,2) = 6
    # expected = 2 * 3 / 6 = 1, max = 2.5 -> ARI = (1 - 1) / (2.5 - 1) = 0
    assert ari(t, p) == pytest.approx(0.0)
    mi = 0.5 * math.log(0.5 / 0.375) + 0.25 * math.log(0.25 / 0.375) + 0.25 * math.log(2)
    h_t = math.log(2)
    h_p = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert nmi(t, p) == pytest.approx(mi / ((h_t + h_p) / 2))
    # identical partitions under renaming
    assert ari([1, 1, 2, 3], ["x", "x", "y", "z"]) == pytest.approx(1.0)
    assert nmi([1, 1, 2, 3], ["x", "x", "y", "z"]) == pytest.approx(1.0)


def test_ari_nmi_match_sklearn():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    assert ari(t, p) == pytest.approx(adjusted_rand_score(t, p))
    assert nmi(t, p) == pytest.approx(normalized_mutual_info_score(t, p))
    with pytest.raises(InputError, match="entries"):
        ari([0, 1], [0, 1, 1])


# ----------------------------------------------------------------------------- silhouettes


def test_silhouette_hand_computed():
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    s = silhouette_samples(x, ["a", "a", "b", "b"])
    expected = [9.5 / 10.5, 8.5 / 9.5, 8.5 / 9.5, 9.5 / 10.5]
    np.testing.assert_allclose(s, expected)
    asw = np.mean(expected)
    assert silhouette_label(x, ["a", "a", "b", "b"], rescale=False) == pytest.approx(asw)
    assert silhouette_label(x, ["a", "a", "b", "b"]) == pytest.approx((asw + 1) / 2)


def test_silhouette_matches_sklearn_including_singletons():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6))
    labels = rng.integers(0, 4, 300).astype(str)
    labels[7] = "solo"  # singleton cluster: silhouette 0
    np.testing.assert_allclose(
        silhouette_samples(x, labels), sk_silhouette_samples(x, labels), atol=1e-10
    )


def test_silhouette_label_separated_blobs_near_one():
    rng = np.random.default_rng(2)
    x, lab = blobs(rng, 100, [[0, 0], [50, 50]])
    assert silhouette_label(x, lab) > 0.97
    with pytest.raises(InputError, match="single value"):
        silhouette_label(x, np.zeros(len(x)))


def test_silhouette_batch_mixed_vs_separated():
    rng = np.random.default_rng(3)
    x, lab = blobs(rng, 150, [[0, 0], [40, 0]])
    batch = rng.integers(0, 2, len(x))
    mixed = silhouette_batch(x, lab, batch)
    shifted = x + np.where(batch[:, None] == 1, [0.0, 25.0], [0.0, 0.0])
    separated = silhouette_batch(shifted, lab, batch)
    assert mixed > 0.9
    assert separated < 0.15
    # a label seen in one batch only is skipped; if none qualifies the score is NaN
    assert math.isnan(silhouette_batch(x, lab, lab))


def test_silhouette_batch_matches_scib_definition():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 3))
    lab = rng.integers(0, 3, 200)
    batch = rng.integers(0, 2, 200)
    per_label = []
    for g in range(3):
        m = lab == g
        per_label.append(np.mean(1 - np.abs(sk_silhouette_samples(x[m], batch[m]))))
    assert silhouette_batch(x, lab, batch) == pytest.approx(np.mean(per_label))
    assert silhouette_batch(x, lab, batch, rescale=False) == pytest.approx(1 - np.mean(per_label))


def test_isolated_label_score():
    rng = np.random.default_rng(5)
    x, lab = blobs(rng, 60, [[0, 0], [10, 0], [0, 10]])
    batch = rng.integers(0, 2, len(x))
    batch[lab == 2] = 0  # label 2 is seen in one batch only: isolated
    sil = (sk_silhouette_samples(x, lab) + 1) / 2
    assert isolated_label_score(x, lab, batch) == pytest.approx(sil[lab == 2].mean())
    # every label in every batch -> all labels count as isolated (scib behaviour)
    batch_all = rng.integers(0, 2, len(x))
    expected = np.mean([sil[lab == g].mean() for g in range(3)])
    assert isolated_label_score(x, lab, batch_all) == pytest.approx(expected)


# ----------------------------------------------------------------------------- graph


def test_graph_connectivity_connected_and_split():
    rng = np.random.default_rng(6)
    x, blob = blobs(rng, 50, [[0, 0], [100, 0], [0, 100]], scale=0.5)
    # label 0 = blobs 0 and 1 (far apart, split in two halves), label 1 = blob 2
    lab = np.where(blob == 2, 1, 0)
    assert graph_connectivity(x, blob, n_neighbors=10) == pytest.approx(1.0)
    assert graph_connectivity(x, lab, n_neighbors=10) == pytest.approx((0.5 + 1.0) / 2)


def test_graph_connectivity_precomputed_graph():
    # path 0-1-2  3-4 (no edge 2-3): label "a" = {0,1,2,3}: largest component 3 of 4
    edges = [(0, 1), (1, 2), (3, 4)]
    g = sparse.lil_matrix((5, 5))
    for i, j in edges:
        g[i, j] = g[j, i] = 1
    labels = ["a", "a", "a", "a", "b"]
    assert graph_connectivity(g.tocsr(), labels) == pytest.approx((3 / 4 + 1) / 2)
    with pytest.raises(InputError, match="square"):
        graph_connectivity(sparse.csr_matrix((3, 4)), ["a", "b", "c"])


def test_knn_graph_is_symmetric_without_self_loops():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 4))
    x[1] = x[0]  # a duplicated point must not break self-exclusion
    g = knn_graph(x, n_neighbors=5)
    assert (g != g.T).nnz == 0
    assert g.diagonal().sum() == 0
    assert np.all(np.asarray(g.sum(axis=1)).ravel() >= 5)


# ----------------------------------------------------------------------------- LISI


def _naive_lisi(x, labels, k, perplexity):
    """Per-cell loop of the Harmony / scib-metrics algorithm (Euclidean kNN, self excluded)."""
    d_all = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    out = []
    for i in range(len(x)):
        order = np.argsort(d_all[i], kind="stable")
        nb = order[order != i][:k]
        d = d_all[i, nb]
        beta, lo, hi = 1.0, -np.inf, np.inf

        def hbeta(b, d=d):
            w = np.exp(-d * b)
            return np.log(w.sum()) + b * (d * w).sum() / w.sum(), w / w.sum()

        h, p = hbeta(beta)
        for _ in range(50):
            diff = h - np.log(perplexity)
            if abs(diff) <= 1e-5:
                break
            if diff > 0:
                lo = beta
                beta = beta * 2 if np.isinf(hi) else (beta + hi) / 2
            else:
                hi = beta
                beta = beta / 2 if np.isinf(lo) else (beta + lo) / 2
            h, p = hbeta(beta)
        sums = np.bincount(labels[nb], weights=p, minlength=labels.max() + 1)
        out.append(1 / np.sum(sums**2))
    return np.array(out)


def test_lisi_matches_naive_algorithm():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(120, 3))
    labels = rng.integers(0, 3, 120)
    np.testing.assert_allclose(lisi(x, labels, n_neighbors=30), _naive_lisi(x, labels, 30, 10))


def test_lisi_uniform_weights_hand_computed():
    # equidistant neighbours -> uniform weights; neighbour labels (0, 0, 1, 1) -> 1/(.25+.25) = 2
    dist = np.ones((1, 4))
    idx = np.array([[1, 2, 3, 4]])
    codes = np.array([0, 0, 0, 1, 1])
    assert _lisi_from_knn(dist, idx, codes, 2, 2.0)[0] == pytest.approx(2.0)
    p = _neighbor_probabilities(np.array([[0.0, 1.0, 2.0, 3.0]]), perplexity=2.0)
    entropy = -(p * np.log(p)).sum()
    assert entropy == pytest.approx(math.log(2.0), abs=1e-4)


def test_ilisi_clisi_mixed_vs_separated():
    rng = np.random.default_rng(9)
    x, lab = blobs(rng, 150, [[0, 0], [30, 0]])
    batch = rng.integers(0, 2, len(x))
    assert ilisi(x, batch, n_neighbors=45) > 0.8
    assert clisi(x, lab, n_neighbors=45) == pytest.approx(1.0, abs=1e-6)
    shifted = x + np.where(batch[:, None] == 1, [0.0, 30.0], [0.0, 0.0])
    assert ilisi(shifted, batch, n_neighbors=45) < 0.05
    # labels randomly spread over the space: cLISI falls
    assert clisi(x, batch, n_neighbors=45) < 0.2
    with pytest.raises(InputError, match="single value"):
        ilisi(x, np.zeros(len(x)))


# ----------------------------------------------------------------------------- FOSCTTM


def test_foscttm_identical_random_and_hand_computed():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(400, 5))
    assert foscttm(x, x) == 0.0
    assert foscttm(x, rng.normal(size=(400, 5))) == pytest.approx(0.5, abs=0.04)
    # x = (0, 1, 2), y = (0, 2, 1): per cell (0, 1/2, 1/2) in both directions
    a, b = np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [2.0], [1.0]])
    np.testing.assert_allclose(foscttm(a, b, per_sample=True), [0.0, 0.5, 0.5])
    assert foscttm(a, b) == pytest.approx(1 / 3)
    with pytest.raises(InputError, match="paired"):
        foscttm(x, x[:10])


# ----------------------------------------------------------------------------- label transfer


def test_label_transfer_scores_hand_computed():
    true = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "c"]
    out = label_transfer_scores(true, pred)
    assert out["accuracy"] == pytest.approx(4 / 5)
    assert out["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    # F1: a = 2/3 (P 1, R 1/2), b = 0.8 (P 2/3, R 1), c = 1
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    assert out["macro_f1"] == pytest.approx(f1_score(true, pred, average="macro"))
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(true, pred))


def test_label_transfer_scores_unassigned_and_types():
    out = label_transfer_scores([1, 1, 2, 2], ["1", "unassigned", "2", "2"])
    assert out["accuracy"] == pytest.approx(3 / 4)
    assert out["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    # macro F1 over the true classes only: class 1 = 2/3, class 2 = 1
    assert out["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)


# ----------------------------------------------------------------------------- bundle


def test_integration_scores_good_vs_bad_embedding():
    rng = np.random.default_rng(11)
    x, lab = blobs(rng, 200, [[0, 0, 0], [20, 0, 0], [0, 20, 0]])
    batch = rng.integers(0, 2, len(x))
    good = integration_scores(x, lab, batch, random_state=0)
    bad = integration_scores(
        x + np.where(batch[:, None] == 1, 40.0, 0.0), lab, batch, random_state=0
    )
    expected_keys = [
        "NMI",
        "ARI",
        "silhouette_label",
        "cLISI",
        "isolated_label",
        "silhouette_batch",
        "iLISI",
        "graph_connectivity",
        "bio_conservation",
        "batch_correction",
        "overall",
    ]
    assert list(good.index) == expected_keys
    assert good["NMI"] == pytest.approx(1.0) and good["ARI"] == pytest.approx(1.0)
    assert good["batch_correction"] > 0.9
    assert bad["batch_correction"] < 0.3
    assert good["overall"] > bad["overall"]
    bio = good[["NMI", "ARI", "silhouette_label", "cLISI", "isolated_label"]].mean()
    batch_score = good[["silhouette_batch", "iLISI", "graph_connectivity"]].mean()
    assert good["overall"] == pytest.approx(0.6 * bio + 0.4 * batch_score)
    # standalone functions agree with the bundle
    assert good["silhouette_label"] == pytest.approx(silhouette_label(x, lab))
    assert good["iLISI"] == pytest.approx(ilisi(x, batch))
    assert good["graph_connectivity"] == pytest.approx(graph_connectivity(x, lab))
    pd_again = integration_scores(x, lab, batch, random_state=0)
    np.testing.assert_array_equal(pd_again.to_numpy(), good.to_numpy())


def test_integration_scores_needs_two_batches():
    x = np.random.default_rng(12).normal(size=(30, 2))
    with pytest.raises(InputError, match="batches"):
        integration_scores(x, np.arange(30) % 3, np.zeros(30))

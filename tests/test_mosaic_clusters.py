"""The mosaic model's mixture prior clusters the cells (issue 19): the prior fitted to the
latent, the closed-form marginal, the cluster-count criterion and the outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from cellweave.metrics import ari
from cellweave.mosaic import MosaicModel, integrate
from cellweave.mosaic.clusters import (
    choose_k,
    fit_components,
    gap_statistic,
    semi_supervised_em,
)
from cellweave.mosaic.modules import MixturePrior
from cellweave.mosaic.vae import _batch_mmd
from cellweave.sim import simulate_mosaic

BATCHES = {"cite": ("rna", "protein"), "multiome": ("rna", "atac"), "asap": ("atac", "protein")}


def _blobs(k: int, n: int = 600, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (k, d))
    truth = rng.integers(0, k, n)
    return centres[truth] + rng.normal(0, 0.1, (n, d)), truth


def _types_found(truth: np.ndarray, clusters: np.ndarray) -> int:
    return int(np.unique(pd.crosstab(clusters, truth).idxmax(axis=1)).size)


@pytest.fixture(scope="module")
def sim():
    return simulate_mosaic(
        n_cells=800,
        batches=BATCHES,
        n_genes=200,
        n_peaks=500,
        n_proteins=20,
        n_cell_types=5,
        random_state=0,
    )


def test_batch_mmd_cannot_be_lowered_by_shrinking_the_latent():
    # the cause of the collapse: with a detached bandwidth the MMD fell as the latent shrank,
    # so the batch term drove the latent below the posterior noise
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(60, 5)), dtype=torch.float32)
    x[:30] += 1.0
    batch = torch.tensor([0] * 30 + [1] * 30)
    scale = torch.tensor(1.0, requires_grad=True)
    value = _batch_mmd(x * scale, batch, 2)
    value.backward()
    value = value.detach()
    assert float(value) > 0.05
    assert abs(float(scale.grad)) < 1e-4 * float(value)
    np.testing.assert_allclose(float(_batch_mmd(0.01 * x, batch, 2)), float(value), rtol=1e-4)


def test_marginal_prior_is_the_exact_mixture_density():
    torch.manual_seed(0)
    prior = MixturePrior(4, 3, 2, mode="marginal")
    z = torch.randn(5, 4)
    got = torch.logsumexp(prior.log_joint(z), -1).detach().numpy()
    pi = torch.softmax(prior.log_pi, -1).detach().numpy()
    want = np.zeros(5)
    for c in range(3):
        w = prior.loadings[c].detach().numpy()
        cov = w @ w.T + np.diag(np.exp(prior.log_var[c].detach().numpy()))
        mean = prior.means[c].detach().numpy()
        want += pi[c] * stats.multivariate_normal(mean, cov).pdf(z.numpy())
    np.testing.assert_allclose(got, np.log(want), rtol=1e-4)
    # a labelled cell's KL uses its class's component only
    log_qz = torch.zeros(5)
    labels = torch.tensor([1, -1, -1, -1, -1])
    kl, logits = prior.kl(z, log_qz, labels)
    kl, logits = kl.detach(), logits.detach()
    np.testing.assert_allclose(float(kl[0]), -float(logits[0, 1]), rtol=1e-5)
    np.testing.assert_allclose(kl[1:].numpy(), -got[1:], rtol=1e-4)


def test_fit_components_prunes_the_slots_above_k_and_starts_classes_at_their_means():
    x, truth = _blobs(3)
    means, variances, weights = fit_components(x, np.full(8, 0.01), 3, n_slots=6, labels=truth)
    assert means.shape == variances.shape == (6, 8)
    assert (weights[3:] == 0).all() and np.isclose(weights[:3].sum(), 1.0)
    for c in range(3):  # component c is class c (labels fix the identities)
        np.testing.assert_allclose(means[c], x[truth == c].mean(0), atol=0.05)
    assert (variances[:3] > 0.01).all() and (variances[:3] < 0.05).all()


def test_semi_supervised_em_keeps_labelled_cells_in_their_class():
    x, truth = _blobs(4, n=800, seed=1)
    # every cell labelled: the fit is the classes' own means, variances and shares
    means, variances, weights = semi_supervised_em(x, truth, 4)
    for c in range(4):
        np.testing.assert_allclose(means[c], x[truth == c].mean(0), atol=1e-8)
        np.testing.assert_allclose(variances[c], x[truth == c].var(0) + 1e-6, rtol=1e-6)
        assert np.isclose(weights[c], (truth == c).mean())
    # labels the blobs contradict still hold: 40 cells of blob 1 labelled class 0 stay in
    # component 0 (plain EM would hand them to blob 1's component), pulling it towards blob 1
    labels = np.full(truth.size, -1)
    labels[np.flatnonzero(truth == 0)[:40]] = 0
    labels[np.flatnonzero(truth == 1)[:40]] = 0
    means, _, _ = semi_supervised_em(x, labels, 4)
    centre0, centre1 = x[truth == 0].mean(0), x[truth == 1].mean(0)
    assert np.linalg.norm(means[0] - centre1) < 0.9 * np.linalg.norm(centre0 - centre1)


@pytest.mark.parametrize("k", [3, 6])
def test_choose_k_finds_the_number_of_blobs(k):
    x, _ = _blobs(k, seed=k)
    assert choose_k(x, 12) == k


def test_the_mixture_starts_from_the_k_means_the_gap_statistic_fitted(monkeypatch):
    """choose_k keeps the k-means centres of the latent it fitted; fit_components started
    from the chosen k's fits no k-means again and gives what its own fit gives."""
    from sklearn.cluster import KMeans

    from cellweave.mosaic import clusters

    x, _ = _blobs(4, seed=2)
    centres: dict[int, np.ndarray] = {}
    k = choose_k(x, 12, random_state=3, centres=centres)
    assert k == 4 and set(centres) == set(range(2, k + 2))  # every k scored, k + 1 included
    own = KMeans(n_clusters=k, n_init=clusters.KMEANS_INIT, random_state=3).fit(x)
    np.testing.assert_array_equal(centres[k], own.cluster_centers_)
    refit = fit_components(x, np.full(8, 0.01), k, n_slots=6, random_state=3)
    fits = []
    monkeypatch.setattr(clusters, "_kmeans", lambda *a: fits.append(a))  # must not run
    shared = fit_components(x, np.full(8, 0.01), k, n_slots=6, random_state=3, centres=centres[k])
    assert not fits
    for a, b in zip(shared, refit, strict=True):
        np.testing.assert_array_equal(a, b)


def test_gap_statistic_finds_small_clusters_beside_large_ones():
    # seven blobs of 700 down to 15 points (MOp's types range from 1,143 to 6 cells)
    sizes = [700, 300, 120, 60, 40, 25, 15]
    for seed in range(4):
        rng = np.random.default_rng(seed)
        truth = np.repeat(np.arange(len(sizes)), sizes)
        x = rng.normal(0, 1.0, (len(sizes), 8))[truth] + rng.normal(0, 0.15, (truth.size, 8))
        assert abs(choose_k(x, 15) - len(sizes)) <= 1
    gap, s = gap_statistic(x, 7, [rng.uniform(-1, 1, x.shape) for _ in range(3)])
    assert gap > 1.0 and 0 <= s < 0.1
    # one Gaussian blob: no k has a gap beyond the next one's error, the smallest k wins
    assert choose_k(rng.normal(size=(400, 5)), 10) == 2


def test_mixture_clusters_the_simulator(sim, fast_mosaic):
    data = sim.copy()
    truth = data.obs["cell_type"].astype(str).to_numpy()
    model = integrate(
        data, batch_key="batch", n_clusters=5, max_epochs=40, random_state=0, mixture="marginal",
        return_model=True, **fast_mosaic,
    )  # fmt: skip
    cluster = data.obs["cellweave_cluster"]
    assert isinstance(cluster.dtype, pd.CategoricalDtype)
    probs = data.obsm["cellweave_clusters"]
    assert list(probs.columns) == [f"cluster_{k}" for k in range(5)]
    np.testing.assert_allclose(probs.to_numpy().sum(1), 1.0, rtol=1e-5)
    assert (np.asarray(probs.columns)[probs.to_numpy().argmax(1)] == cluster.to_numpy()).all()
    assert ari(truth, cluster.to_numpy()) >= 0.8
    assert _types_found(truth, cluster.to_numpy()) == 5
    params = data.uns["cellweave"]["params"]["train"]
    assert params["n_clusters"] == 5 and params["n_clusters_criterion"] == "given"
    assert model.get_cluster_probabilities().shape == (data.n_obs, 5)


def test_cluster_count_criterion_finds_the_true_number(sim, fast_mosaic):
    # the defaults without labels: the marginal mixture, k by the gap statistic
    data = sim.copy()
    integrate(data, batch_key="batch", max_epochs=40, random_state=0, **fast_mosaic)
    params = data.uns["cellweave"]["params"]["train"]
    assert params["mixture"] == "marginal"
    assert params["n_clusters_criterion"] == "gap_statistic"
    assert params["n_clusters"] == 5
    assert data.obsm["cellweave_clusters"].shape == (data.n_obs, 5)
    assert data.obs["cellweave_cluster"].cat.categories.size == 5
    truth = data.obs["cell_type"].astype(str).to_numpy()
    assert ari(truth, data.obs["cellweave_cluster"].to_numpy()) >= 0.8


def test_auto_mixture_is_marginal_without_labels_and_exact_with_them(sim, fast_mosaic):
    data = sim.copy()
    assert MosaicModel(data, batch_key="batch", **fast_mosaic).config.mixture == "marginal"
    data.obs["some"] = data.obs["cell_type"].astype(str).where(data.obs_names.str.endswith("1"))
    labelled = MosaicModel(data, batch_key="batch", label_key="some", **fast_mosaic)
    assert labelled.config.mixture == "exact" and labelled.config.n_clusters == 5
    given = MosaicModel(
        data, batch_key="batch", label_key="some", mixture="marginal", **fast_mosaic
    )
    assert given.config.mixture == "marginal"
    assert not MosaicModel(
        data, batch_key="batch", mixture="exact", **fast_mosaic
    ).module.fit_mixture


def test_marginal_mixture_predicts_labels_from_few_labelled_cells(sim, fast_mosaic):
    data = sim.copy()
    truth = data.obs["cell_type"].astype(str).to_numpy()
    keep = np.random.default_rng(0).random(data.n_obs) < 0.05
    data.obs["some"] = pd.Series(truth).where(keep, None).to_numpy()
    integrate(
        data, batch_key="batch", label_key="some", mixture="marginal", max_epochs=40,
        random_state=0, **fast_mosaic,
    )  # fmt: skip
    predicted = data.obs["cellweave_label"].astype(str).to_numpy()
    probs = data.obsm["cellweave_label_probabilities"].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert (predicted[~keep] == truth[~keep]).mean() > 0.85
    # label class k is cluster k: the clusters are the labels
    assert (data.obs["cellweave_cluster"].cat.codes == probs.argmax(1)).mean() > 0.99

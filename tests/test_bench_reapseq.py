"""The REAP-seq scoring of benchmarks/bench_mosaic.py and the pieces of
benchmarks/bench_reapseq_diagnose.py (per-protein Pearson, E[log1p] under a NB, ensembles,
ridge ceilings)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.stats import poisson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_mosaic as bm
import bench_reapseq_diagnose as diag


@pytest.fixture
def proteins():
    rng = np.random.default_rng(0)
    names = pd.Index(["CD3_A", "Mouse_IgG1_B", "Blank", "CD4_C", "CD8_D"])
    truth = rng.poisson(rng.gamma(2.0, 3.0, size=(200, 5))).astype(float)
    truth[:, 4] = 0.0  # never detected (as CD45_TCTCGACT in sample2): no correlation
    imputed = truth + rng.gamma(2.0, 2.0, size=truth.shape)
    return imputed, truth, names


def test_per_protein_pearson_skips_controls_and_constant_proteins(proteins):
    imputed, truth, names = proteins
    per = bm.per_protein_pearson(imputed, truth, names)
    assert list(per.index) == ["CD3_A", "CD4_C"]
    expected = np.corrcoef(np.log1p(imputed[:, 3]), np.log1p(truth[:, 3]))[0, 1]
    assert per["CD4_C"] == pytest.approx(expected)
    scores = bm.protein_scores(imputed, truth, names)
    assert scores["pearson_median"] == pytest.approx(float(np.median(per)))
    assert scores["n_proteins"] == 2


def test_nb_expected_log1p_matches_the_exact_poisson_sum_and_jensen():
    mu = np.full((400, 2), 3.0)
    got = diag.nb_expected_log1p(mu, np.array([1e8, 0.5]), n_draws=50).mean(0)
    y = np.arange(60)
    exact = float((poisson.pmf(y, 3.0) * np.log1p(y)).sum())
    assert got[0] == pytest.approx(exact, abs=0.01)  # theta -> inf: Poisson
    # over-dispersion lowers E[log1p x] further below log1p(E x) (Jensen)
    assert got[1] < got[0] < np.log1p(3.0)


def test_log_ensemble_averages_on_the_log1p_scale():
    a, b = np.array([[0.0, 3.0]]), np.array([[8.0, 3.0]])
    np.testing.assert_allclose(diag.log_ensemble([a, a]), a)
    np.testing.assert_allclose(diag.log_ensemble([a, b]), [[2.0, 3.0]])


def test_neighbour_mean_with_one_neighbour_is_the_cell_itself():
    rng = np.random.default_rng(1)
    latent, values = rng.normal(size=(30, 3)), rng.gamma(2.0, 2.0, size=(30, 4))
    rows = np.array([0, 5, 7])
    np.testing.assert_allclose(diag.neighbour_mean(latent, values, rows, 1), values[rows])
    smooth = diag.neighbour_mean(latent, values, rows, 30)  # every cell: one shared row
    np.testing.assert_allclose(smooth, np.repeat(smooth[:1], 3, 0))


def test_ridge_ceilings_recover_a_protein_that_rna_predicts():
    rng = np.random.default_rng(2)
    n = 300
    state = rng.normal(size=(n, 3))
    rna = rng.poisson(np.exp(1.0 + state @ rng.normal(size=(3, 120)) * 0.7)).astype(np.float32)
    protein = rng.poisson(np.exp(1.5 + state[:, :1] @ np.ones((1, 4)))).astype(float)
    hidden = np.arange(n) % 3 == 0
    names = pd.Index(["P1", "P2", "P3", "P4"])
    out = diag.ridge_ceilings(sparse.csr_matrix(rna), protein, hidden, names, seed=0)
    assert set(out) == {"ridge, measured sample -> hidden", "ridge, 5-fold within hidden"}
    assert min(out.values()) > 0.6
    noise = rng.permutation(protein)  # a protein RNA does not predict
    assert max(diag.ridge_ceilings(sparse.csr_matrix(rna), noise, hidden, names, 0).values()) < 0.3

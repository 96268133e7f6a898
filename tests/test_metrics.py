"""Gene-level (SpatialBenchmarking), masked-entry, fraction and JS scores."""

from __future__ import annotations

import math
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse, stats
from scipy.spatial.distance import jensenshannon

from cellweave.errors import EmptyDataError, InputError, MissingKeyError, NonFiniteError
from cellweave.metrics import (
    accuracy_score,
    fraction_scores,
    gene_scores,
    js,
    js_divergence,
    masked_entry_scores,
    pcc,
    rmse,
    ssim,
)

C1, C2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
C3 = C2 / 2
LN2 = math.log(2.0)


def col(*values: float) -> np.ndarray:
    """A single-gene (n_spots, 1) matrix."""
    return np.asarray(values, dtype=float)[:, None]


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ----------------------------------------------------------------------------- PCC


def test_pcc_perfect_anti_and_hand_computed():
    t = np.array([1.0, 2.0, 3.0, 5.0])
    assert pcc(t[:, None], (2 * t + 1)[:, None])[0] == pytest.approx(1.0)
    assert pcc(t[:, None], (-3 * t + 7)[:, None])[0] == pytest.approx(-1.0)
    # centred true (-1, 0, 1), centred pred (-1, 1, 0): r = 1 / sqrt(2 * 2) = 0.5
    assert pcc(col(1, 2, 3), col(1, 3, 2))[0] == pytest.approx(0.5)


def test_pcc_matches_scipy_per_gene():
    rng = np.random.default_rng(0)
    t = rng.gamma(2.0, size=(50, 7))
    p = t + rng.normal(0, 1, size=t.shape)
    expected = [stats.pearsonr(t[:, j], p[:, j])[0] for j in range(t.shape[1])]
    np.testing.assert_allclose(pcc(t, p), expected, atol=1e-12)


def test_constant_genes_are_defined_without_warnings(no_warnings):
    t = np.column_stack([np.full(4, 3.0), [1.0, 2, 3, 4], [0.0, 0, 0, 0], [1.0, 2, 3, 4]])
    p = np.column_stack([[1.0, 2, 3, 4], np.full(4, 2.0), [0.0, 1, 0, 1], np.zeros(4)])
    scores = gene_scores(t, p)
    # constant truth: PCC undefined -> NaN; constant prediction only: PCC 0
    assert np.isnan(scores["PCC"].iloc[0])
    assert scores["PCC"].iloc[1] == 0.0
    assert np.isnan(scores["PCC"].iloc[2])
    assert scores["PCC"].iloc[3] == 0.0
    # the other three scores stay finite
    assert np.isfinite(scores[["SSIM", "RMSE", "JS"]].to_numpy()).all()
    # z-score of a constant vector is 0, so RMSE vs a varying truth is the truth's z RMS = 1
    assert scores["RMSE"].iloc[1] == pytest.approx(1.0)
    assert scores["RMSE"].iloc[3] == pytest.approx(1.0)
    # all-zero prediction is the uniform distribution for JS
    assert scores["JS"].iloc[3] == pytest.approx(js_divergence([1, 2, 3, 4], [1, 1, 1, 1]))


# ----------------------------------------------------------------------------- SSIM


def test_ssim_identical_is_one():
    rng = np.random.default_rng(1)
    t = rng.poisson(3, size=(30, 5)).astype(float) + 1
    np.testing.assert_allclose(ssim(t, t), 1.0)
    # scale_max makes SSIM invariant to a positive rescaling of either vector
    np.testing.assert_allclose(ssim(t, 7.5 * t), 1.0)


def test_ssim_hand_computed_reversed():
    # scaled: (1/3, 2/3, 1) and (1, 2/3, 1/3): equal means and variances 2/27, cov -2/27
    expected = (C3 - 2 / 27) / (C3 + 2 / 27)
    assert ssim(col(1, 2, 3), col(3, 2, 1))[0] == pytest.approx(expected)


def test_ssim_hand_computed_flat_prediction():
    # true (0, 2) -> (0, 1): mean 0.5, sd 0.5; pred (1, 1) -> (1, 1): mean 1, sd 0
    luminance = (2 * 0.5 * 1 + C1) / (0.25 + 1 + C1)
    contrast = C2 / (0.25 + C2)
    assert ssim(col(0, 2), col(1, 1))[0] == pytest.approx(luminance * contrast)


# ----------------------------------------------------------------------------- RMSE


def test_rmse_hand_computed_and_identity():
    # z(1,2,3) = (-a, 0, a) with a = sqrt(3/2); reversed prediction: RMSE = sqrt((4a^2*2)/3) = 2
    assert rmse(col(1, 2, 3), col(3, 2, 1))[0] == pytest.approx(2.0)
    assert rmse(col(1, 2, 3), col(10, 20, 30))[0] == pytest.approx(0.0, abs=1e-12)


def test_rmse_equals_zscore_rmse_and_pcc_identity():
    rng = np.random.default_rng(2)
    t = rng.gamma(1.5, size=(40, 6))
    p = rng.gamma(1.5, size=(40, 6)) + t
    zt, zp = stats.zscore(t, axis=0), stats.zscore(p, axis=0)
    np.testing.assert_allclose(rmse(t, p), np.sqrt(((zt - zp) ** 2).mean(axis=0)))
    np.testing.assert_allclose(rmse(t, p), np.sqrt(2 - 2 * pcc(t, p)))


# ----------------------------------------------------------------------------- JS


def test_js_identical_disjoint_and_hand_computed():
    assert js(col(1, 2, 3), col(2, 4, 6))[0] == pytest.approx(0.0, abs=1e-15)
    assert js(col(1, 0), col(0, 5))[0] == pytest.approx(LN2)
    # P = (1/2, 1/2), Q = (1, 0), M = (3/4, 1/4)
    kl_p = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_q = math.log(1 / 0.75)
    assert js(col(1, 1), col(1, 0))[0] == pytest.approx(0.5 * kl_p + 0.5 * kl_q)


def test_js_divergence_rows_bits_and_scipy():
    rng = np.random.default_rng(3)
    p, q = rng.random((20, 5)), rng.random((20, 5))
    expected = jensenshannon(p, q, axis=1) ** 2  # scipy returns the distance sqrt(JS), nats
    np.testing.assert_allclose(js_divergence(p, q), expected, atol=1e-12)
    np.testing.assert_allclose(js_divergence(p.T, q.T, axis=0), expected, atol=1e-12)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(LN2)
    assert js_divergence([1, 0], [0, 1], base=2) == pytest.approx(1.0)
    assert js_divergence([3, 1], [3, 1]) == pytest.approx(0.0, abs=1e-15)


def test_js_divergence_rejects_bad_input():
    with pytest.raises(InputError, match="negative"):
        js_divergence([1, -1], [1, 1])
    with pytest.raises(InputError, match="same shape"):
        js_divergence(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(NonFiniteError):
        js_divergence([1, np.nan], [1, 1])


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, (3, 4), elements=st.floats(0, 100)),
    arrays(np.float64, (3, 4), elements=st.floats(0, 100)),
)
def test_js_divergence_properties(p, q):
    d = js_divergence(p, q)
    assert np.all(d >= 0) and np.all(d <= LN2 + 1e-12)
    np.testing.assert_allclose(d, js_divergence(q, p), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, (6, 3), elements=st.floats(0, 50)),
    arrays(np.float64, (6, 3), elements=st.floats(0, 50)),
)
def test_gene_scores_bounded_and_warning_free(t, p):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = gene_scores(t, p)
    r = s["PCC"].to_numpy()
    assert np.all(np.isnan(r) | ((r >= -1) & (r <= 1)))
    assert np.all((s["JS"] >= 0) & (s["JS"] <= LN2 + 1e-12))
    assert np.all((s["RMSE"] >= 0) & (s["RMSE"] <= 2 + 1e-9))
    assert np.isfinite(s[["SSIM", "RMSE", "JS"]].to_numpy()).all()


# ----------------------------------------------------------------------------- gene_scores


def _reference_gene_scores(t: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """The protocol written with scipy primitives, one gene at a time."""
    rows = []
    for j in range(t.shape[1]):
        a, b = t[:, j], p[:, j]
        sa, sb = a / a.max(), b / b.max()
        mu_a, mu_b, sd_a, sd_b = sa.mean(), sb.mean(), sa.std(), sb.std()
        cov = np.mean((sa - mu_a) * (sb - mu_b))
        s = (
            (2 * mu_a * mu_b + C1)
            / (mu_a**2 + mu_b**2 + C1)
            * (2 * sd_a * sd_b + C2)
            / (sd_a**2 + sd_b**2 + C2)
            * (cov + C3)
            / (sd_a * sd_b + C3)
        )
        pa, pb = a / a.sum(), b / b.sum()
        m = (pa + pb) / 2
        rows.append(
            {
                "PCC": stats.pearsonr(a, b)[0],
                "SSIM": s,
                "RMSE": np.sqrt(np.mean((stats.zscore(a) - stats.zscore(b)) ** 2)),
                "JS": 0.5 * stats.entropy(pa, m) + 0.5 * stats.entropy(pb, m),
            }
        )
    return pd.DataFrame(rows)


def test_gene_scores_match_reference_protocol():
    rng = np.random.default_rng(4)
    t = rng.poisson(4, size=(60, 9)).astype(float) + rng.random((60, 9))
    p = np.clip(t + rng.normal(0, 2, size=t.shape), 0.01, None)
    genes = [f"g{i}" for i in range(9)]
    out = gene_scores(t, p, genes=genes)
    assert list(out.columns) == ["PCC", "SSIM", "RMSE", "JS"]
    assert list(out.index) == genes
    np.testing.assert_allclose(out.to_numpy(), _reference_gene_scores(t, p).to_numpy(), atol=1e-10)


def test_gene_scores_sparse_blocks_equal_dense():
    rng = np.random.default_rng(5)
    t = rng.poisson(0.7, size=(80, 23)).astype(float)
    p = rng.poisson(0.7, size=(80, 23)).astype(float)
    dense = gene_scores(t, p)
    for tt, pp in [(sparse.csr_matrix(t), p), (t, sparse.csc_matrix(p))]:
        pd.testing.assert_frame_equal(gene_scores(tt, pp, block_size=5), dense)
    np.testing.assert_allclose(
        js(sparse.csr_matrix(t), sparse.csr_matrix(p), block_size=4), dense["JS"]
    )


def test_gene_scores_aligns_named_inputs():
    rng = np.random.default_rng(6)
    t = pd.DataFrame(rng.random((10, 4)), columns=list("abcd"), index=[f"s{i}" for i in range(10)])
    p = pd.DataFrame(rng.random((10, 4)), columns=list("abcd"), index=t.index)
    ref = gene_scores(t, p)
    shuffled = p.loc[t.index[::-1], ["c", "a", "d", "b"]]
    pd.testing.assert_frame_equal(gene_scores(t, shuffled), ref)
    sub = gene_scores(t, p, genes=["d", "b"])
    pd.testing.assert_frame_equal(sub, ref.loc[["d", "b"]])
    adata_t = ad.AnnData(
        t.to_numpy(), obs=pd.DataFrame(index=t.index), var=pd.DataFrame(index=t.columns)
    )
    pd.testing.assert_frame_equal(gene_scores(adata_t, shuffled), ref)


def test_gene_scores_errors():
    t = pd.DataFrame(np.ones((3, 2)), columns=["a", "b"])
    with pytest.raises(InputError, match="different gene names"):
        gene_scores(t, pd.DataFrame(np.ones((3, 2)), columns=["a", "z"]))
    with pytest.raises(InputError, match="shape"):
        gene_scores(np.ones((3, 2)), np.ones((3, 3)))
    with pytest.raises(MissingKeyError):
        gene_scores(t, t, genes=["q"])
    with pytest.raises(InputError, match="one name per column"):
        gene_scores(np.ones((3, 2)), np.ones((3, 2)), genes=["x"])
    with pytest.raises(NonFiniteError):
        gene_scores(np.array([[1.0], [np.nan]]), np.ones((2, 1)))
    with pytest.raises(EmptyDataError):
        gene_scores(np.ones((0, 2)), np.ones((0, 2)))


# ----------------------------------------------------------------------------- AS


def _table(pcc_, ssim_, rmse_, js_, spread=0.05):
    """Two genes whose mean per metric is the given value."""
    values = np.array([pcc_, ssim_, rmse_, js_])
    return pd.DataFrame([values - spread, values + spread], columns=["PCC", "SSIM", "RMSE", "JS"])


def test_accuracy_score_ranks_constructed_table():
    results = {
        "B": _table(0.5, 0.6, 0.9, 0.2),
        "A": _table(0.9, 0.8, 0.5, 0.1),
        "C": _table(0.7, 0.4, 0.7, 0.15),
    }
    # best of 3 gets rank 3. PCC: A3 C2 B1; SSIM: A3 B2 C1; RMSE: A3 C2 B1; JS: A3 C2 B1
    expected = pd.Series({"A": 12 / 12, "C": 7 / 12, "B": 5 / 12}, name="AS")
    pd.testing.assert_series_equal(accuracy_score(results), expected)


def test_accuracy_score_median_ties_and_nan():
    a = pd.DataFrame({"PCC": [0.0, 0.1, 0.9], "SSIM": 0.5, "RMSE": 1.0, "JS": 0.3})
    b = pd.DataFrame({"PCC": [0.2, 0.2, 0.2], "SSIM": 0.5, "RMSE": 1.0, "JS": 0.3})
    # mean PCC: a 0.333 > b 0.2; median PCC: a 0.1 < b 0.2. Other metrics tie (1.5/2 each).
    assert accuracy_score({"a": a, "b": b})["a"] == pytest.approx((2 + 1.5 * 3) / 8)
    assert accuracy_score({"a": a, "b": b}, aggregate="median")["a"] == pytest.approx(
        (1 + 1.5 * 3) / 8
    )
    # NaN genes are skipped; an all-NaN metric ranks last
    a_nan = a.assign(PCC=[np.nan, np.nan, 0.9])
    assert accuracy_score({"a": a_nan, "b": b})["a"] == pytest.approx((2 + 1.5 * 3) / 8)
    b_nan = b.assign(JS=np.nan)
    assert accuracy_score({"a": a, "b": b_nan})["b"] == pytest.approx((1 + 1.5 * 2 + 1) / 8)


def test_accuracy_score_errors():
    with pytest.raises(MissingKeyError, match="RMSE"):
        accuracy_score({"a": pd.DataFrame({"PCC": [1.0], "SSIM": 1.0, "JS": 0.0})})
    with pytest.raises(EmptyDataError):
        accuracy_score({})
    with pytest.raises(InputError):
        accuracy_score({"a": _table(1, 1, 0, 0)}, aggregate="max")


# ----------------------------------------------------------------------------- masked entries


def test_masked_entry_scores_hand_computed():
    t = np.array([[1.0, 2.0], [3.0, 4.0]])
    p = np.array([[1.0, 0.0], [5.0, 4.0]])
    mask = np.array([[False, True], [True, False]])
    out = masked_entry_scores(t, p, mask)
    # held-out true (3, 2) vs pred (5, 0) in gene order: errors -2, 2
    assert out["rmse"] == pytest.approx(2.0)
    assert out["mae"] == pytest.approx(2.0)
    assert out["pearson"] == pytest.approx(1.0)
    assert out["spearman"] == pytest.approx(1.0)
    assert out["n_entries"] == 2
    # one held-out entry per gene: per-gene PCC undefined
    assert out["pcc_per_gene"].isna().all()
    assert np.isnan(out["pcc_gene_median"])


def test_masked_entry_scores_match_scipy():
    rng = np.random.default_rng(7)
    t = rng.poisson(3, size=(100, 8)).astype(float)
    p = t + rng.normal(0, 1.5, size=t.shape)
    mask = rng.random(t.shape) < 0.3
    mask[:, 0] = False
    mask[5, 0] = True  # gene 0: a single held-out entry -> NaN
    out = masked_entry_scores(t, p, mask)
    tv, pv = t[mask], p[mask]
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((tv - pv) ** 2)))
    assert out["mae"] == pytest.approx(np.mean(np.abs(tv - pv)))
    assert out["pearson"] == pytest.approx(stats.pearsonr(tv, pv)[0])
    assert out["spearman"] == pytest.approx(stats.spearmanr(tv, pv)[0])
    expected = [np.nan] + [
        stats.pearsonr(t[mask[:, j], j], p[mask[:, j], j])[0] for j in range(1, 8)
    ]
    np.testing.assert_allclose(out["pcc_per_gene"].to_numpy(), expected, atol=1e-12)
    assert out["pcc_gene_median"] == pytest.approx(np.median(expected[1:]))
    sparse_out = masked_entry_scores(sparse.csr_matrix(t), p, sparse.csr_matrix(mask))
    assert sparse_out["rmse"] == pytest.approx(out["rmse"])
    pd.testing.assert_series_equal(sparse_out["pcc_per_gene"], out["pcc_per_gene"])


def test_masked_entry_scores_errors():
    t = np.ones((3, 2))
    with pytest.raises(EmptyDataError):
        masked_entry_scores(t, t, np.zeros((3, 2), dtype=bool))
    with pytest.raises(InputError, match="mask has shape"):
        masked_entry_scores(t, t, np.ones((2, 2), dtype=bool))
    with pytest.raises(InputError, match="True/False"):
        masked_entry_scores(t, t, np.full((3, 2), 2))


# ----------------------------------------------------------------------------- fractions


def test_fraction_scores_hand_computed():
    true = pd.DataFrame({"A": [0.5, 1.0], "B": [0.5, 0.0]}, index=["s1", "s2"])
    pred = pd.DataFrame({"B": [0.0, 0.0], "A": [1.0, 1.0]}, index=["s1", "s2"])
    out = fraction_scores(true, pred)
    kl_p = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    js_s1 = 0.5 * kl_p + 0.5 * math.log(1 / 0.75)
    assert out["js_per_spot"]["s1"] == pytest.approx(js_s1)
    assert out["js_per_spot"]["s2"] == pytest.approx(0.0, abs=1e-15)
    assert out["js_mean"] == pytest.approx(js_s1 / 2)
    assert out["rmse"] == pytest.approx(math.sqrt(0.5 / 4))  # errors -0.5, 0.5, 0, 0
    # predicted fractions are constant across spots for both types -> PCC 0
    assert list(out["pcc_per_type"].index) == ["A", "B"]
    np.testing.assert_array_equal(out["pcc_per_type"].to_numpy(), [0.0, 0.0])
    assert list(out["per_type"].columns) == ["PCC", "SSIM", "RMSE", "JS"]


def test_fraction_scores_identical_and_normalisation():
    rng = np.random.default_rng(8)
    frac = pd.DataFrame(rng.dirichlet(np.ones(4), size=30), columns=list("wxyz"))
    counts = frac * rng.integers(1, 20, size=(30, 1))  # abundances with the same proportions
    out = fraction_scores(frac, counts)
    assert out["js_mean"] == pytest.approx(0.0, abs=1e-12)
    assert out["rmse"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(out["pcc_per_type"], 1.0)
    assert out["pcc_mean"] == pytest.approx(1.0)
    raw = fraction_scores(frac, counts, normalize=False)
    assert raw["rmse"] > 0.1
    assert raw["js_mean"] == pytest.approx(0.0, abs=1e-12)  # JS always compares proportions


def test_fraction_scores_errors():
    true = pd.DataFrame({"A": [0.5, 1.0], "B": [0.5, 0.0]})
    with pytest.raises(InputError, match="cell type names"):
        fraction_scores(true, pd.DataFrame({"A": [0.5, 1.0], "C": [0.5, 0.0]}))
    with pytest.raises(InputError, match="negative"):
        fraction_scores(true, true - 0.7)


# ----------------------------------------------------------------------------- real data


@pytest.mark.real_data
def test_real_merfish_scores_rank_predictions(real_data):
    """On MERFISH, a spatially smoothed copy beats a spot-shuffled one on every summary."""
    from sklearn.neighbors import NearestNeighbors

    adata = ad.read_h5ad(real_data("merfish_hypothalamus_spatial.h5ad"))
    x = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
    self_scores = gene_scores(adata, adata)
    varying = x.max(axis=0) > x.min(axis=0)
    np.testing.assert_allclose(self_scores["PCC"][varying], 1.0)
    np.testing.assert_allclose(self_scores["SSIM"], 1.0)
    np.testing.assert_allclose(self_scores[["RMSE", "JS"]], 0.0, atol=1e-7)

    _, idx = NearestNeighbors(n_neighbors=6).fit(adata.obsm["spatial"]).kneighbors()
    smoothed = x[idx].mean(axis=1)  # each cell predicted from its 6 spatial neighbours
    shuffled = x[np.random.default_rng(0).permutation(x.shape[0])]
    results = {"shuffled": gene_scores(x, shuffled), "smoothed": gene_scores(x, smoothed)}
    med = {k: v.median() for k, v in results.items()}
    assert med["smoothed"]["PCC"] > med["shuffled"]["PCC"] + 0.05
    assert med["smoothed"]["JS"] < med["shuffled"]["JS"]
    assert list(accuracy_score(results).index) == ["smoothed", "shuffled"]

    mask = np.random.default_rng(1).random(x.shape) < 0.1
    held_smooth = masked_entry_scores(adata.X, smoothed, mask)
    held_shuffled = masked_entry_scores(adata.X, shuffled, mask)
    assert held_smooth["pearson"] > held_shuffled["pearson"]
    assert held_smooth["rmse"] < held_shuffled["rmse"]

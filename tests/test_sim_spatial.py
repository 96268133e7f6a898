"""Tests of the spatial tissue simulator: its statistics against its own ground truth.

Tolerances are a few standard errors of the statistic at the simulated sample size (stated
next to each check), so a failure means the simulator does not follow its documented model.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

from cellweave.errors import InputError
from cellweave.sim.spatial import simulate_spatial


@pytest.fixture(scope="module")
def sim():
    """The default simulation, a bit larger for tighter statistics."""
    return simulate_spatial(n_spots=1500, random_state=7)


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _cell_means(spatial: ad.AnnData) -> np.ndarray:
    """Per-cell NB mean of each (spot, type, gene), rebuilt from the stored ground truth
    exactly as docs/simulator_spatial.md describes it."""
    truth = spatial.uns["sim"]
    profiles = truth["type_profiles"].to_numpy()  # types x genes
    grad = np.ones((spatial.n_obs, spatial.n_vars))
    centre = np.asarray(truth["tissue_centre"])
    for gene, row in truth["spatial_genes"].iterrows():
        direction = np.array([row["direction_x"], row["direction_y"]])
        proj = (spatial.obsm["spatial"] - centre) @ direction / row["half_extent"]
        grad[:, spatial.var_names.get_loc(gene)] = np.exp(row["amplitude"] * proj)
    p = profiles[None, :, :] * grad[:, None, :]
    p /= p.sum(axis=2, keepdims=True)
    per_cell = (spatial.obs["library_size"] / spatial.obs["n_cells"]).to_numpy()
    return per_cell[:, None, None] * p  # spots x types x genes


def _type_counts(spatial: ad.AnnData) -> np.ndarray:
    fractions = spatial.obsm["true_fractions"].to_numpy()
    return np.rint(fractions * spatial.obs["n_cells"].to_numpy()[:, None])


# --------------------------------------------------------------------------- structure


def test_structure_and_names(sim):
    spatial, reference = sim
    assert spatial.shape == (1500, 200)
    assert reference.shape == (2000, 200)
    for data in (spatial, reference):
        assert isinstance(data.X, sp.csr_matrix) and data.X.dtype == np.float32
        assert np.array_equal(data.X.data, np.rint(data.X.data)) and data.X.data.min() > 0
        assert data.layers["true_expression"].dtype == np.float32
        assert data.layers["true_expression"].shape == data.shape
    assert list(spatial.var_names[:2]) == ["gene_0000", "gene_0001"]
    assert spatial.var_names.equals(reference.var_names)
    assert isinstance(spatial.layers["counts_full"], sp.csr_matrix)
    assert spatial.obsm["spatial"].shape == (1500, 2)
    assert spatial.obs["domain"].cat.categories.tolist() == [f"domain_{i}" for i in range(4)]
    fractions = spatial.obsm["true_fractions"]
    assert isinstance(fractions, pd.DataFrame) and fractions.index.equals(spatial.obs_names)
    types = [f"type_{i}" for i in range(6)]
    assert fractions.columns.tolist() == types
    assert reference.obs["cell_type"].cat.categories.tolist() == types
    assert set(reference.obs["batch"]) == {"reference"}
    assert set(spatial.obs["batch"]) == {"spatial"}
    assert spatial.uns["sim"]["params"]["n_spots"] == 1500
    assert reference.uns["sim"]["batch_shift"].shape == (200,)


def test_true_expression_is_the_documented_model(sim):
    """true_expression = sum over the spot's cells of their NB means, and its row sums are
    the spot library sizes."""
    spatial, _ = sim
    expected = np.einsum("sk,skg->sg", _type_counts(spatial), _cell_means(spatial))
    np.testing.assert_allclose(spatial.layers["true_expression"], expected, rtol=1e-4)
    np.testing.assert_allclose(
        spatial.layers["true_expression"].sum(axis=1), spatial.obs["library_size"], rtol=1e-4
    )


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize("dropout", [0.0, 0.3, 0.7])
def test_dropout_keeps_fraction_of_nonzeros(dropout):
    spatial, _ = simulate_spatial(n_spots=500, dropout=dropout, random_state=1)
    full, observed = spatial.layers["counts_full"], spatial.X
    # Observed entries are either the full count or zero.
    diff = _dense(full) - _dense(observed)
    assert np.all((diff == 0) | (_dense(observed) == 0))
    kept = observed.nnz / full.nnz
    # Binomial proportion over ~60k non-zeros: standard error <= 0.002; allow 5 of them.
    se = np.sqrt(dropout * (1 - dropout) / full.nnz)
    assert abs(kept - (1 - dropout)) <= 5 * se + 1e-12


def test_counts_full_does_not_depend_on_dropout():
    """Dropout draws from its own random stream: the counts before dropout are identical."""
    a, _ = simulate_spatial(n_spots=200, dropout=0.0, random_state=4)
    b, _ = simulate_spatial(n_spots=200, dropout=0.6, random_state=4)
    assert (a.layers["counts_full"] != b.layers["counts_full"]).nnz == 0
    assert (a.X != a.layers["counts_full"]).nnz == 0


def test_sparsity_matches_nb_zero_probability(sim):
    """P(X = 0) = 1 - (1 - dropout) * (1 - P(NB = 0)); a spot's count is zero iff all its
    cells are, and n cells of one type with mean mu give (theta / (theta + mu))**(n theta)."""
    spatial, _ = sim
    theta, dropout = 5.0, 0.3
    log_p0_cells = np.log(theta / (theta + _cell_means(spatial)))  # spots x types x genes
    p0 = np.exp(theta * np.einsum("sk,skg->sg", _type_counts(spatial), log_p0_cells))
    p_zero = 1 - (1 - dropout) * (1 - p0)
    # Entries are independent Bernoulli: the sd of the zero count is sqrt(sum p (1 - p)).
    for data, p in ((spatial.layers["counts_full"], p0), (spatial.X, p_zero)):
        n_zero = data.shape[0] * data.shape[1] - data.nnz
        assert abs(n_zero - p.sum()) <= 5 * np.sqrt((p * (1 - p)).sum())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"grid": "random", "cells_per_spot": 1.0},  # single-cell resolution
        {"n_cell_types": 1, "cells_per_spot": 4.0},  # identical cells in each spot
    ],
)
def test_counts_have_nb_variance(kwargs):
    """Where all cells of a spot share one mean mu, the spot count is NB(n mu, n theta):
    variance n mu + (n mu)**2 / (n theta). The mean squared Pearson residual is then 1."""
    theta = 5.0
    spatial, _ = simulate_spatial(n_spots=1000, dispersion=theta, random_state=2, **kwargs)
    mean = spatial.layers["true_expression"].astype(np.float64)
    n = spatial.obs["n_cells"].to_numpy()[:, None]
    var = mean + mean**2 / (n * theta)
    residual2 = (_dense(spatial.layers["counts_full"]) - mean) ** 2 / var
    # 200k entries; the residual**2 has sd of a few units here, so its mean has se < 0.02.
    assert residual2.mean() == pytest.approx(1.0, abs=0.05)


def test_library_sizes(sim):
    spatial, reference = sim
    totals = _dense(spatial.layers["counts_full"].sum(axis=1)).ravel()
    # Spot totals vary log-normally (sd 0.3) plus NB noise: 5 standard errors of the mean.
    assert abs(totals.mean() - 2000.0) <= 5 * totals.std() / np.sqrt(totals.size)
    ref_totals = _dense(reference.X.sum(axis=1)).ravel()
    assert abs(ref_totals.mean() - 5000.0) <= 5 * ref_totals.std() / np.sqrt(ref_totals.size)
    np.testing.assert_allclose(
        reference.layers["true_expression"].sum(axis=1), reference.obs["library_size"], rtol=1e-4
    )


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize("batch_effect", [0.3, 0.8])
def test_reference_batch_shift(batch_effect):
    """With one cell type and no gradients, the per-gene log ratio of reference to spatial
    pseudo-bulk is the stored shift plus a constant plus sampling noise."""
    spatial, reference = simulate_spatial(
        n_spots=1000,
        n_cell_types=1,
        n_spatial_genes=0,
        batch_effect=batch_effect,
        random_state=3,
    )
    shift = reference.uns["sim"]["batch_shift"]
    ref_bulk = _dense(reference.X.sum(axis=0)).ravel()
    sp_bulk = _dense(spatial.X.sum(axis=0)).ravel()
    ratio = np.log(ref_bulk / ref_bulk.sum()) - np.log(sp_bulk / sp_bulk.sum())
    assert np.corrcoef(ratio, shift)[0, 1] > 0.97
    # Gene totals are >= ~1000 counts, so their log noise (< 0.1) barely adds to the sd.
    assert np.std(ratio) == pytest.approx(np.std(shift), rel=0.1)
    # The sample sd of 200 N(0, batch_effect) draws has relative se 1/sqrt(400) = 0.05.
    assert np.std(shift) == pytest.approx(batch_effect, rel=0.2)


def test_reference_profiles_are_shifted_spatial_profiles(sim):
    spatial, reference = sim
    log_ratio = np.log(reference.uns["sim"]["type_profiles"].to_numpy()) - np.log(
        spatial.uns["sim"]["type_profiles"].to_numpy()
    )
    offset = log_ratio - reference.uns["sim"]["batch_shift"]
    # The shift is exact up to one normalising constant per type.
    np.testing.assert_allclose(offset, offset[:, :1].repeat(offset.shape[1], axis=1), atol=1e-5)


def test_no_batch_effect_means_no_shift():
    _, reference = simulate_spatial(n_spots=50, n_ref_cells=50, batch_effect=0.0)
    assert np.all(reference.uns["sim"]["batch_shift"] == 0)


# --------------------------------------------------------------------------- tissue


@pytest.mark.parametrize("cells_per_spot", [1.0, 8.0])
def test_fractions_agree_with_cell_positions(cells_per_spot):
    spatial, _ = simulate_spatial(n_spots=800, cells_per_spot=cells_per_spot, random_state=5)
    cells = spatial.uns["sim"]["cell_positions"]
    counts = pd.crosstab(cells["spot"], cells["cell_type"], dropna=False)
    counts = counts.reindex(index=spatial.obs_names, columns=spatial.obsm["true_fractions"].columns)
    n_cells = spatial.obs["n_cells"].to_numpy()
    np.testing.assert_array_equal(counts.sum(axis=1).to_numpy(), n_cells)
    fractions = spatial.obsm["true_fractions"]
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(counts.to_numpy() / n_cells[:, None], fractions.to_numpy())
    # Cells lie within the spot radius (half the spot spacing) of their spot's centre.
    centre = spatial.obsm["spatial"][spatial.obs_names.get_indexer(cells["spot"])]
    offset = np.hypot(cells["x"] - centre[:, 0], cells["y"] - centre[:, 1])
    assert offset.max() <= 0.5 + 1e-5
    # n_cells = 1 + Poisson(cells_per_spot - 1): mean within 5 standard errors.
    assert n_cells.min() >= 1
    se = np.sqrt((cells_per_spot - 1) / n_cells.size)
    assert abs(n_cells.mean() - cells_per_spot) <= 5 * se


def test_cell_types_follow_domain_composition(sim):
    """All cells of a domain are i.i.d. draws from its composition: a multinomial."""
    spatial, _ = sim
    composition = spatial.uns["sim"]["domain_composition"]
    type_counts = pd.DataFrame(_type_counts(spatial), columns=composition.columns)
    per_domain = type_counts.groupby(spatial.obs["domain"].to_numpy()).sum()
    for domain, observed in per_domain.iterrows():
        total, p = observed.sum(), composition.loc[domain].to_numpy()
        sd = np.sqrt(total * p * (1 - p))
        # 5 binomial sds, plus 2 cells for types with a near-zero expected count.
        assert np.all(np.abs(observed.to_numpy() - total * p) <= 5 * sd + 2)


@pytest.mark.parametrize("grid", ["hex", "square", "random"])
def test_domains_are_spatially_coherent(grid):
    spatial, _ = simulate_spatial(n_spots=1000, grid=grid, n_domains=5, random_state=6)
    domain = spatial.obs["domain"].cat.codes.to_numpy()
    assert np.unique(domain).size == 5  # every domain holds spots
    _, neighbours = cKDTree(spatial.obsm["spatial"]).query(spatial.obsm["spatial"], k=7)
    same_neighbour = (domain[neighbours[:, 1:]] == domain[:, None]).mean()
    freq = np.bincount(domain) / domain.size
    same_random = (freq**2).sum()  # P(two random spots share a domain)
    assert same_neighbour > 0.85
    assert same_neighbour > same_random + 0.4


@pytest.mark.parametrize("grid", ["hex", "square"])
def test_lattice_spacing_is_one(grid):
    spatial, _ = simulate_spatial(n_spots=300, grid=grid, random_state=0)
    dist, _ = cKDTree(spatial.obsm["spatial"]).query(spatial.obsm["spatial"], k=2)
    np.testing.assert_allclose(dist[:, 1], 1.0)


# --------------------------------------------------------------------------- genes


def test_marker_genes(sim):
    spatial, reference = sim
    markers = spatial.uns["sim"]["marker_genes"]
    profiles = spatial.uns["sim"]["type_profiles"]
    ref_norm = _dense(reference.X) / _dense(reference.X.sum(axis=1))
    ref_types = reference.obs["cell_type"].to_numpy()
    obs_norm = _dense(spatial.X) / _dense(spatial.X.sum(axis=1))
    for cell_type, genes in markers.items():
        assert len(genes) == 5
        assert (spatial.var.loc[genes, "marker_of"] == cell_type).all()
        # Truth: at least 4-fold over every other type before per-type normalisation,
        # which moves ratios by well under 2-fold.
        own = profiles.loc[cell_type, genes]
        others = profiles.drop(index=cell_type)[genes].max(axis=0)
        assert (own > 2 * others).all()
        # Observed reference: every marker has a higher mean in its own type (~300 cells).
        cols = reference.var_names.get_indexer(genes)
        is_type = ref_types == cell_type
        assert np.all(ref_norm[is_type][:, cols].mean(0) > ref_norm[~is_type][:, cols].mean(0))
        # Observed space: marker expression tracks the type's true fraction across spots.
        score = obs_norm[:, spatial.var_names.get_indexer(genes)].sum(axis=1)
        # Rare types correlate least: over 30 seeds the weakest had rho >= 0.48.
        assert spearmanr(score, spatial.obsm["true_fractions"][cell_type])[0] > 0.35
    n_markers = spatial.var["marker_of"].notna().sum()
    assert n_markers == 6 * 5
    assert not (spatial.var["marker_of"].notna() & spatial.var["spatially_graded"]).any()


def test_spatial_genes_follow_their_gradient(sim):
    """log expression rises linearly with amplitude along the gene's direction: the slope of
    log binned means against the scaled projection recovers the amplitude. Domain
    composition adds noise: over 150 genes (30 seeds) the ratio ranged 0.75-1.36."""
    spatial, _ = sim
    truth = spatial.uns["sim"]
    genes = truth["spatial_genes"]
    assert genes.index.tolist() == spatial.var_names[spatial.var["spatially_graded"]].tolist()
    full = _dense(spatial.layers["counts_full"])
    norm = full / full.sum(axis=1, keepdims=True)
    for gene, row in genes.iterrows():
        direction = np.array([row["direction_x"], row["direction_y"]])
        t = (spatial.obsm["spatial"] - truth["tissue_centre"]) @ direction / row["half_extent"]
        assert np.abs(t).max() == pytest.approx(1.0)
        bins = np.array_split(np.argsort(t), 10)
        x = [t[b].mean() for b in bins]
        y = [np.log(norm[b, spatial.var_names.get_loc(gene)].mean()) for b in bins]
        assert 0.5 < np.polyfit(x, y, 1)[0] / row["amplitude"] < 1.5


# --------------------------------------------------------------------------- seeds, io


def _assert_same(a: tuple[ad.AnnData, ad.AnnData], b: tuple[ad.AnnData, ad.AnnData]) -> None:
    for x, y in zip(a, b, strict=True):
        assert (x.X != y.X).nnz == 0
        np.testing.assert_array_equal(x.layers["true_expression"], y.layers["true_expression"])
        pd.testing.assert_frame_equal(x.obs, y.obs)
    pd.testing.assert_frame_equal(
        a[0].uns["sim"]["cell_positions"], b[0].uns["sim"]["cell_positions"]
    )
    np.testing.assert_array_equal(a[0].obsm["spatial"], b[0].obsm["spatial"])


def test_reproducible_and_seed_dependent():
    kwargs = {"n_spots": 300, "n_ref_cells": 300, "grid": "random"}
    first = simulate_spatial(random_state=11, **kwargs)
    _assert_same(first, simulate_spatial(random_state=11, **kwargs))
    _assert_same(first, simulate_spatial(random_state=np.random.default_rng(11), **kwargs))
    assert first[0].uns["sim"]["params"]["random_state"] == 11
    seeded_by_generator = simulate_spatial(random_state=np.random.default_rng(0), **kwargs)
    assert seeded_by_generator[0].uns["sim"]["params"]["random_state"] == "Generator"
    other = simulate_spatial(random_state=12, **kwargs)
    assert (first[0].X != other[0].X).nnz > 0
    assert not np.array_equal(first[0].obsm["spatial"], other[0].obsm["spatial"])
    assert not np.array_equal(
        first[1].uns["sim"]["batch_shift"], other[1].uns["sim"]["batch_shift"]
    )


def test_h5ad_round_trip(tmp_path):
    spatial, reference = simulate_spatial(n_spots=200, n_ref_cells=100, random_state=9)
    for name, data in (("spatial", spatial), ("reference", reference)):
        path = tmp_path / f"{name}.h5ad"
        data.write_h5ad(path)
        back = ad.read_h5ad(path)
        assert (back.X != data.X).nnz == 0
        pd.testing.assert_frame_equal(back.obs, data.obs)
        pd.testing.assert_frame_equal(back.var, data.var)
        np.testing.assert_array_equal(
            back.layers["true_expression"], data.layers["true_expression"]
        )
        assert back.uns["sim"]["params"] == data.uns["sim"]["params"]
        for cell_type, genes in data.uns["sim"]["marker_genes"].items():
            assert list(back.uns["sim"]["marker_genes"][cell_type]) == list(genes)
        pd.testing.assert_frame_equal(
            back.uns["sim"]["type_profiles"], data.uns["sim"]["type_profiles"]
        )
    back = ad.read_h5ad(tmp_path / "spatial.h5ad")
    pd.testing.assert_frame_equal(back.obsm["true_fractions"], spatial.obsm["true_fractions"])
    pd.testing.assert_frame_equal(
        back.uns["sim"]["cell_positions"],
        spatial.uns["sim"]["cell_positions"],
        check_index_type=False,
    )
    for key in ("domain_composition", "spatial_genes"):
        pd.testing.assert_frame_equal(back.uns["sim"][key], spatial.uns["sim"][key])
    assert (back.layers["counts_full"] != spatial.layers["counts_full"]).nnz == 0
    back_ref = ad.read_h5ad(tmp_path / "reference.h5ad")
    np.testing.assert_array_equal(
        back_ref.uns["sim"]["batch_shift"], reference.uns["sim"]["batch_shift"]
    )


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"n_spots": 0}, "n_spots"),
        ({"n_spots": 10.5}, "n_spots"),
        ({"n_spots": True}, "n_spots"),
        ({"grid": "triangle"}, "grid"),
        ({"grid": None}, "grid"),
        ({"cells_per_spot": 0.5}, "cells_per_spot"),
        ({"library_size": 0.0}, "library_size"),
        ({"library_size": float("nan")}, "library_size"),
        ({"dispersion": -1.0}, "dispersion"),
        ({"batch_effect": -0.5}, "batch_effect"),
        ({"library_sd": float("inf")}, "library_sd"),
        ({"ref_library_size": "1000"}, "ref_library_size"),
        ({"n_ref_cells": 0}, "n_ref_cells"),
        ({"n_marker_genes": -1}, "n_marker_genes"),
        ({"n_domains": 20, "n_spots": 10}, "n_domains"),
        ({"n_genes": 20, "n_cell_types": 4, "n_marker_genes": 5}, "n_genes"),
        ({"random_state": "seed"}, "random_state"),
    ],
)
def test_invalid_parameters(kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        simulate_spatial(**kwargs)
    assert "\n" not in str(info.value)


@settings(max_examples=15, deadline=None)
@given(
    n_spots=st.integers(1, 40),
    grid=st.sampled_from(["hex", "square", "random"]),
    n_genes=st.integers(1, 12),
    n_cell_types=st.integers(1, 4),
    cells_per_spot=st.floats(1.0, 5.0),
    dropout=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**16),
)
def test_small_sizes_keep_invariants(
    n_spots, grid, n_genes, n_cell_types, cells_per_spot, dropout, seed
):
    n_markers = min(1, n_genes // n_cell_types)
    spatial, reference = simulate_spatial(
        n_spots=n_spots,
        grid=grid,
        n_genes=n_genes,
        n_cell_types=n_cell_types,
        n_domains=min(2, n_spots),
        cells_per_spot=cells_per_spot,
        dropout=dropout,
        n_ref_cells=5,
        n_marker_genes=n_markers,
        n_spatial_genes=0,
        random_state=seed,
    )
    assert spatial.shape == (n_spots, n_genes) and reference.shape == (5, n_genes)
    np.testing.assert_allclose(spatial.obsm["true_fractions"].sum(axis=1), 1.0)
    assert np.all(_dense(spatial.X) <= _dense(spatial.layers["counts_full"]))
    assert np.isfinite(spatial.layers["true_expression"]).all()
    assert len(spatial.uns["sim"]["cell_positions"]) == spatial.obs["n_cells"].sum()

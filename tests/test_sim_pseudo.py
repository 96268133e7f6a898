"""Pseudo-spots pooled from real cells (cw.sim.pseudo_spots) and the stratified reference
split (cw.sim.split_reference): truth that matches the pooled cells, smooth domains, depth,
seeds, and one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import cellweave as cw
from cellweave.errors import InputError, MissingKeyError, NotCountsError
from cellweave.graph import nearest_neighbors


@pytest.fixture(scope="module")
def cells():
    _, reference = cw.sim.simulate_spatial(
        n_spots=20, n_genes=40, n_ref_cells=600, n_cell_types=5, random_state=3
    )
    return reference


def _spots(cells, **kw):
    kw = {"cell_type_key": "cell_type", "n_spots": 150, "random_state": 0, **kw}
    return cw.sim.pseudo_spots(cells, **kw)


def test_fractions_are_those_of_the_pooled_cells(cells):
    spots = _spots(cells)
    truth = spots.obsm["true_fractions"]
    np.testing.assert_allclose(truth.sum(axis=1), 1.0)
    assert list(truth.columns) == sorted(cells.obs["cell_type"].astype(str).unique())
    pooled = spots.uns["sim"]["cells"]
    table = pd.crosstab(pooled["spot"], pooled["cell_type"]).reindex(
        index=spots.obs_names, columns=truth.columns, fill_value=0
    )
    np.testing.assert_allclose(table.to_numpy() / spots.obs["n_cells"].to_numpy()[:, None], truth)
    assert spots.obs["n_cells"].between(2, 10).all()
    assert (table.sum(axis=1).to_numpy() == spots.obs["n_cells"].to_numpy()).all()
    # every pooled cell is a real cell of the type it is counted as
    assert (
        cells.obs.loc[pooled["cell"], "cell_type"].astype(str).to_numpy()
        == pooled["cell_type"].astype(str).to_numpy()
    ).all()


def test_counts_are_the_sum_of_the_pooled_cells_without_depth(cells):
    spots = _spots(cells, depth=None)
    pooled = spots.uns["sim"]["cells"]
    rows = spots.obs_names.get_indexer(pooled["spot"].astype(str))
    cols = cells.obs_names.get_indexer(pooled["cell"])
    member = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(150, cells.n_obs))
    np.testing.assert_allclose((member @ cells.X).toarray(), spots.X.toarray())
    np.testing.assert_allclose(spots.obs["pooled_counts"], spots.X.sum(axis=1).A1)


def test_depth_thins_towards_the_target_and_never_up(cells):
    depth = 300.0
    spots = _spots(cells, depth=depth)
    totals = spots.X.sum(axis=1).A1
    pooled = spots.obs["pooled_counts"].to_numpy()
    assert (totals <= pooled).all()
    above = pooled >= depth
    assert above.sum() > 50
    assert abs(totals[above].mean() - depth) < 3 * np.sqrt(depth / above.sum()) + 1
    assert (np.abs(totals[above] - depth) < 6 * np.sqrt(depth)).all()
    np.testing.assert_array_equal(totals[~above], pooled[~above])  # below target: all kept
    assert np.allclose(spots.X.data, np.round(spots.X.data))  # still counts


def test_domains_are_smooth(cells):
    spots = _spots(cells, n_spots=400, n_domains=4)
    frac = spots.obsm["true_fractions"].to_numpy()
    _, idx = nearest_neighbors(spots.obsm["spatial"], 7, query=spots.obsm["spatial"])
    near = np.abs(frac[:, None, :] - frac[idx[:, 1:]]).sum(axis=2).mean()
    rng = np.random.default_rng(0)
    far = np.abs(frac - frac[rng.permutation(len(frac))]).sum(axis=1).mean()
    assert near < 0.8 * far
    # the expected mixtures (before sampling cells) change gradually: the domain of a spot
    # predicts its fractions far better than a random domain does
    means = pd.DataFrame(frac).groupby(spots.obs["domain"].to_numpy()).mean()
    own = np.abs(frac - means.loc[spots.obs["domain"]].to_numpy()).sum(axis=1).mean()
    assert own < far


def test_seeded(cells):
    a, b, c = _spots(cells, depth=200), _spots(cells, depth=200), _spots(cells, random_state=1)
    np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())
    pd.testing.assert_frame_equal(a.obsm["true_fractions"], b.obsm["true_fractions"])
    assert not np.array_equal(a.obsm["true_fractions"], c.obsm["true_fractions"])


def test_cells_are_reused_only_when_a_type_runs_out(cells):
    spots = _spots(cells, n_spots=20, cells_per_spot=(2, 3))
    assert not spots.uns["sim"]["cells"]["cell"].duplicated().any()


def test_split_reference_is_stratified_and_disjoint(cells):
    labelled = cells.copy()
    labelled.obs.loc[labelled.obs_names[:7], "cell_type"] = np.nan
    ref, rest = cw.sim.split_reference(labelled, "cell_type", fraction=0.3, random_state=2)
    assert not set(ref.obs_names) & set(rest.obs_names)
    assert ref.n_obs + rest.n_obs == labelled.n_obs - 7
    counts = labelled.obs["cell_type"].value_counts()
    share = ref.obs["cell_type"].value_counts().reindex(counts.index) / counts
    assert np.allclose(share, 0.3, atol=0.02)
    again, _ = cw.sim.split_reference(labelled, "cell_type", fraction=0.3, random_state=2)
    assert list(again.obs_names) == list(ref.obs_names)
    assert list(ref.obs_names) == [n for n in labelled.obs_names if n in set(ref.obs_names)]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"cell_type_key": "celltype"}, MissingKeyError, "celltype"),
        ({"cells_per_spot": (5, 2)}, InputError, "cells_per_spot[1]"),
        ({"cells_per_spot": 4}, InputError, "pair"),
        ({"depth": 0}, InputError, "depth"),
        ({"n_domains": 500}, InputError, "n_domains"),
        ({"grid": "tri"}, InputError, "grid"),
        ({"random_state": -1}, InputError, "random_state"),
    ],
)
def test_bad_options_are_one_line_errors(cells, kwargs, error, words):
    with pytest.raises(error) as info:
        _spots(cells, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_bad_data_is_refused(cells):
    one = cells.copy()
    one.obs["cell_type"] = "T"
    with pytest.raises(InputError, match="2 classes"):
        _spots(one)
    with pytest.raises(InputError, match="2 classes"):
        cw.sim.split_reference(one, "cell_type")
    logged = cells.copy()
    logged.X = np.log1p(logged.X.toarray())
    with pytest.raises(NotCountsError):
        _spots(logged)
    with pytest.raises(InputError, match="fraction"):
        cw.sim.split_reference(cells, "cell_type", fraction=1.0)


def test_thin_counts_per_row_depth_never_upwards_and_dense_or_sparse_alike():
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(400, 50)) * (rng.random((400, 50)) < 0.4)
    depth = np.where(np.arange(400) % 2 == 0, 20.0, 1e6)  # even rows thinned, odd kept
    dense = cw.sim.thin_counts(counts, depth, np.random.default_rng(5))
    csr = cw.sim.thin_counts(sparse.csr_matrix(counts), depth, np.random.default_rng(5))
    assert sparse.issparse(dense) and dense.dtype == np.float32
    np.testing.assert_array_equal(dense.toarray(), csr.toarray())  # same draws either way
    out = dense.toarray()
    assert (out <= counts).all() and (out == np.round(out)).all()
    np.testing.assert_array_equal(out[1::2], counts[1::2])  # depth above the total: kept
    assert abs(out[::2].sum(1).mean() - 20.0) < 1.0
    kept = cw.sim.thin_counts(counts, None, np.random.default_rng(5))
    np.testing.assert_array_equal(kept.toarray(), counts)

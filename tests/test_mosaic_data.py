"""Mosaic data layer: presence masks, global row order, representations, samplers, bad input."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from cellweave.errors import (
    EmptyDataError,
    InputError,
    MissingKeyError,
    NoSharedFeaturesError,
    NotCountsError,
)
from cellweave.mosaic import MosaicData, MosaicModel, UnknownLabelError
from cellweave.mosaic.data import default_n_comps, infer_kind
from cellweave.mosaic.represent import Representation
from cellweave.mosaic.sampling import balanced_table, blocks, split_cells
from cellweave.mosaic.tensors import SparseRows
from cellweave.sim import simulate_mosaic

BATCHES = {"cite": ("rna", "protein"), "multiome": ("rna", "atac"), "atac_only": ("atac",)}


@pytest.fixture(scope="module")
def mosaic():
    return simulate_mosaic(
        n_cells=240, batches=BATCHES, n_genes=60, n_peaks=150, n_proteins=8, random_state=1
    )


def test_presence_rows_and_counts_follow_the_global_order(mosaic):
    data = MosaicData.from_mudata(mosaic, batch_key="batch", label_key="cell_type")
    assert data.names == ["rna", "atac", "protein"]
    for m in data.modalities:
        adata = mosaic.mod[m.name]
        expected = mosaic.obs_names.isin(adata.obs_names)
        np.testing.assert_array_equal(m.present, expected)
        np.testing.assert_array_equal(m.present, np.asarray(mosaic.obsm[m.name]).ravel())
        cells = np.flatnonzero(m.present)
        truth = adata[mosaic.obs_names[cells]].X
        if m.likelihood == "bernoulli":
            truth = (truth > 0).astype(np.float32)
        np.testing.assert_array_equal(m.counts[cells].toarray(), truth.toarray())
        assert m.counts[~m.present].nnz == 0
        assert np.all(m.inputs[~m.present] == 0)
        np.testing.assert_allclose(m.library[cells], np.asarray(m.counts[cells].sum(1)).ravel())
    np.testing.assert_array_equal(
        data.batch_codes, pd.Index(data.batch_names).get_indexer(mosaic.obs["batch"].astype(str))
    )
    assert data.label_classes == [f"type_{k}" for k in range(8)]
    assert data.present.sum(1).min() >= 1


def test_kind_inference_and_defaults():
    assert infer_kind("rna") == infer_kind("GEX") == "rna"
    assert infer_kind("atac_peaks") == "atac"
    assert infer_kind("adt") == infer_kind("protein") == "protein"
    with pytest.raises(InputError, match="modality_types"):
        infer_kind("foo")


def test_default_components_follow_the_feature_count(mosaic):
    assert [default_n_comps(n) for n in (60, 150, 500, 1677, 25734)] == [20, 20, 50, 100, 100]
    data = MosaicData.from_mudata(mosaic, batch_key="batch", max_features={"rna": 20})
    assert data["rna"].n_inputs == 19  # capped by the data: 20 features - 1
    assert data["atac"].n_inputs == 20  # lsi: 21 components, the depth one dropped
    data = MosaicData.from_mudata(mosaic, batch_key="batch", n_comps=8)
    assert data["rna"].n_inputs == data["atac"].n_inputs == 8


def test_rna_feature_selection_keeps_the_most_variable(mosaic):
    data = MosaicData.from_mudata(mosaic, batch_key="batch", max_features={"rna": 20})
    assert data["rna"].n_features == 20
    assert data["atac"].n_features == mosaic["atac"].n_vars
    assert set(data["rna"].features) <= set(mosaic["rna"].var_names)


@pytest.mark.parametrize("kind", ["lognorm", "pca", "lsi", "clr", "binary"])
def test_representation_state_round_trip(kind):
    rng = np.random.default_rng(0)
    X = sparse.csr_matrix(rng.poisson(0.7, (80, 40)).astype(np.float32))
    rep = Representation(kind, n_comps=6).fit(X)
    out = rep.transform(X[:10])
    assert out.shape == (10, rep.n_dims(40)) and np.isfinite(out).all()
    again = Representation.from_state(kind, rep.state(), n_comps=6).transform(X[:10])
    np.testing.assert_allclose(out, again, rtol=1e-6)


def test_lognorm_and_clr_by_hand():
    X = sparse.csr_matrix(np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 2.0]]))
    np.testing.assert_allclose(
        Representation("lognorm").transform(X)[0], np.log1p([2500.0, 7500.0, 0.0]), rtol=1e-6
    )
    L = np.log1p([1.0, 3.0, 0.0])
    np.testing.assert_allclose(Representation("clr").transform(X)[0], L - L.mean(), rtol=1e-6)


def test_pca_representation_matches_centred_svd():
    rng = np.random.default_rng(3)
    X = sparse.csr_matrix(rng.poisson(2.0, (60, 30)).astype(np.float32))
    rep = Representation("pca", n_comps=5).fit(X)
    from cellweave.pp import log_normalize

    Y = log_normalize(X).toarray()
    Y -= Y.mean(0)
    vt = np.linalg.svd(Y, full_matrices=False)[2][:5]
    # same subspace: the projection of the fitted axes on the exact ones has unit norm
    overlap = np.linalg.norm(rep.arrays["components"] @ vt.T, axis=1)
    np.testing.assert_allclose(overlap, 1.0, atol=1e-3)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 9),
    st.floats(0.0, 0.9),
    st.integers(0, 2**16),
    st.booleans(),
)
def test_sparse_rows_gather_equals_scipy(n_rows, n_cols, density, seed, with_cols):
    rng = np.random.default_rng(seed)
    X = sparse.random(n_rows, n_cols, density=density, format="csr", random_state=seed)
    idx = rng.integers(0, n_rows, size=rng.integers(1, 15))
    cols = rng.permutation(n_cols)[: rng.integers(1, n_cols + 1)] if with_cols else None
    got = SparseRows(X).dense(torch.as_tensor(idx), None if cols is None else torch.as_tensor(cols))
    want = X[idx].toarray() if cols is None else X[idx][:, cols].toarray()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


def test_split_and_balanced_table():
    codes = np.repeat([0, 1, 2], [600, 60, 20])
    rng = np.random.default_rng(0)
    train, val = split_cells(codes, 0.1, rng)
    assert np.intersect1d(train, val).size == 0 and train.size + val.size == codes.size
    assert [int((codes[val] == b).sum()) for b in range(3)] == [60, 6, 2]
    table = balanced_table(train, codes, seed=0, epoch=0).numpy().ravel()
    assert table.size == train.size and np.isin(table, train).all()
    shares = np.bincount(codes[table], minlength=3)
    # a third each (204), except the 18-cell batch capped at 10x: 180, the rest spread by size
    assert shares[2] == 180 and shares[0] > shares[1] > 204
    even = balanced_table(np.arange(300), np.repeat([0, 1, 2], 100), seed=0, epoch=0)
    assert np.bincount(np.repeat([0, 1, 2], 100)[even.ravel()]).tolist() == [100, 100, 100]
    again = balanced_table(train, codes, seed=0, epoch=0)
    assert torch.equal(again.ravel(), torch.as_tensor(table))
    assert not torch.equal(balanced_table(train, codes, seed=0, epoch=1).ravel(), again.ravel())
    b = blocks(np.arange(10), 4)
    assert b.shape == (3, 4) and int((b >= 0).sum()) == 10


# --------------------------------------------------------------------------------- bad input


def test_cell_in_no_modality(mosaic):
    with pytest.raises(EmptyDataError, match="in no modality"):
        MosaicData.from_mudata(mosaic, batch_key="batch", modalities=["protein"])


def test_modality_with_no_cells():
    rng = np.random.default_rng(0)
    rna = ad.AnnData(sparse.csr_matrix(rng.poisson(1.0, (20, 10)).astype(np.float32)))
    rna.obs_names = [f"c{i}" for i in range(20)]
    empty = ad.AnnData(np.zeros((0, 5), dtype=np.float32))
    empty.var_names = [f"p{i}" for i in range(5)]
    mdata = md.MuData({"rna": rna, "protein": empty})
    with pytest.raises(EmptyDataError, match="'protein' holds no cells"):
        MosaicData.from_mudata(mdata, batch_key=None)


def test_labels_of_unknown_classes(mosaic):
    with pytest.raises(UnknownLabelError, match="outside the known classes"):
        MosaicData.from_mudata(
            mosaic, batch_key="batch", label_key="cell_type", label_classes=["type_0", "type_1"]
        )
    assert issubclass(UnknownLabelError, InputError)


def test_graph_whose_features_are_not_in_the_data(mosaic):
    links = pd.DataFrame({"source": ["geneX", "geneY"], "target": ["peakX", "peakY"]})
    with pytest.raises(NoSharedFeaturesError, match="guidance graph"):
        MosaicModel(mosaic, batch_key="batch", graph_key=links, n_clusters=4)
    with pytest.raises(MissingKeyError, match="varp has no graph"):
        MosaicModel(mosaic, batch_key="batch", graph_key="nope", n_clusters=4)


def test_non_count_data_for_a_count_likelihood(mosaic):
    bad = mosaic.copy()
    bad.mod["rna"].X = bad.mod["rna"].X.astype(np.float32) * 0.37
    with pytest.raises(NotCountsError, match=r"mdata\['rna'\]\.X"):
        MosaicData.from_mudata(bad, batch_key="batch")


def test_missing_keys_and_wrong_types(mosaic):
    with pytest.raises(MissingKeyError, match="batch column 'sample'"):
        MosaicData.from_mudata(mosaic, batch_key="sample")
    with pytest.raises(MissingKeyError, match="no modality 'hic'"):
        MosaicData.from_mudata(mosaic, batch_key="batch", modalities=["hic"])
    with pytest.raises(InputError, match="modality="):
        MosaicModel(mosaic["rna"], batch_key="batch")
    with pytest.raises(InputError, match="likelihood 'gaussian'"):
        MosaicData.from_mudata(mosaic, batch_key="batch", likelihoods={"rna": "gaussian"})

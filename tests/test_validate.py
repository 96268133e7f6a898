"""Tests of cellweave.validate on small hand-made matrices (dense and sparse)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mudata import MuData

from cellweave.errors import (
    DuplicateNamesError,
    EmptyDataError,
    InputError,
    InvalidOptionError,
    MissingKeyError,
    NonFiniteError,
    NoSharedFeaturesError,
    NotCountsError,
)
from cellweave.validate import (
    check_adata,
    check_counts,
    check_finite,
    check_labels,
    check_layer,
    check_min_obs,
    check_mudata,
    check_nonempty,
    check_obs_key,
    check_seed,
    check_spatial,
    check_spread,
    check_unique_names,
    get_matrix,
    has_nonzero,
    is_counts,
    nonzero_mask,
    shared_features,
)

pytestmark = pytest.mark.filterwarnings("ignore:From 0.4 .update:FutureWarning")

FORMATS = {
    "dense": np.asarray,
    "csr": sp.csr_matrix,
    "csc": sp.csc_matrix,
    "coo": sp.coo_matrix,
    "lil": sp.lil_matrix,
    "csr_array": sp.csr_array,
}

COUNTS = np.array(
    [
        [0, 3, 0, 1],
        [2, 0, 0, 0],
        [0, 0, 0, 7],
        [1, 1, 0, 0],
        [0, 5, 0, 2],
    ],
    dtype=np.float32,
)


def _log_normalized(counts: np.ndarray) -> np.ndarray:
    """What sc.pp.normalize_total + sc.pp.log1p produce."""
    return np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)


def _adata(X=COUNTS, **kwargs) -> AnnData:
    n_obs, n_vars = X.shape
    return AnnData(
        X=X,
        obs=pd.DataFrame(index=[f"cell{i}" for i in range(n_obs)]),
        var=pd.DataFrame(index=[f"gene{j}" for j in range(n_vars)]),
        **kwargs,
    )


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert ":" in msg  # "<problem>: <fix>"
    return msg


# --------------------------------------------------------------------------------------------
# counts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint16])
def test_is_counts_accepts_integer_valued(fmt, dtype):
    assert is_counts(FORMATS[fmt](COUNTS.astype(dtype)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_is_counts_rejects_log_normalized(fmt):
    X = FORMATS[fmt](_log_normalized(COUNTS))
    assert not is_counts(X)
    with pytest.raises(NotCountsError) as err:
        check_counts(X, name="adata.X")
    msg = _one_line(err)
    assert "non-integer" in msg and "adata.layers['counts']" in msg and "layer=" in msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_is_counts_rejects_negative_and_scaled(fmt):
    neg = COUNTS.copy()
    neg[2, 1] = -3
    assert not is_counts(FORMATS[fmt](neg))
    with pytest.raises(NotCountsError, match=r"negative values \(min -3\)"):
        check_counts(FORMATS[fmt](neg))
    scaled = (COUNTS - COUNTS.mean(0)) / (COUNTS.std(0) + 1)
    assert not is_counts(FORMATS[fmt](scaled))


def test_is_counts_rejects_nan_and_non_numeric():
    X = COUNTS.copy()
    X[0, 0] = np.nan
    assert not is_counts(X)
    with pytest.raises(NotCountsError, match="NaN"):
        check_counts(sp.csr_matrix(X))
    assert not is_counts(np.array([["a", "b"]]))


def test_is_counts_edge_cases():
    assert is_counts(np.array([[True, False]]))
    assert is_counts(np.zeros((0, 3)))
    assert is_counts(sp.csr_matrix((4, 4), dtype=np.float32))  # no stored values
    assert not is_counts(np.array([[0.5]]))


def test_is_counts_samples_large_sparse_matrix():
    rng = np.random.default_rng(0)
    X = sp.random(5_000, 1_000, density=0.05, format="csr", random_state=0, dtype=np.float32)
    X.data = rng.integers(1, 50, size=X.nnz).astype(np.float32)  # 250k > n_sample
    assert is_counts(X)
    X.data = np.log1p(X.data)
    assert not is_counts(X)
    # a single non-integer among 250k values may be missed by the sample; n_sample=nnz finds it
    X.data = np.round(np.expm1(X.data))
    X.data[123_457] = 0.5
    assert is_counts(X, n_sample=X.nnz) is False


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.integers(0, 9)),
    st.sampled_from(sorted(FORMATS)),
    st.floats(0.01, 0.99),
)
def test_is_counts_property(counts, fmt, frac):
    X = counts.astype(np.float64)
    assert is_counts(FORMATS[fmt](X))
    X[0, 0] += frac  # one stored non-integer value is always seen in a small matrix
    assert not is_counts(FORMATS[fmt](X))


# --------------------------------------------------------------------------------------------
# finite
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_check_finite_counts_nan_and_inf(fmt):
    X = COUNTS.copy()
    X[0, 1] = np.nan
    X[1, 0] = np.nan
    X[3, 3] = np.inf
    X[4, 1] = -np.inf
    with pytest.raises(NonFiniteError) as err:
        check_finite(FORMATS[fmt](X), name="adata.layers['x']")
    msg = _one_line(err)
    assert "adata.layers['x'] holds 2 NaN and 2 infinite" in msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_finite_passes(fmt):
    check_finite(FORMATS[fmt](COUNTS))
    check_finite(FORMATS[fmt](COUNTS.astype(np.int32)))
    # values whose sum overflows float64 are still finite
    check_finite(FORMATS[fmt](np.full((3, 3), 1e308)))


def test_check_finite_dense_blocks(monkeypatch):
    import cellweave.validate.matrix as v

    monkeypatch.setattr(v, "_DENSE_CHUNK_ENTRIES", 4)  # one row per block
    X = np.ones((6, 4))
    X[[0, 3, 5], [1, 2, 3]] = np.nan
    with pytest.raises(NonFiniteError, match="3 NaN and 0 infinite"):
        check_finite(X)
    Z = np.zeros((6, 4))
    Z[[0, 3], [1, 2]] = 1
    rows, cols = nonzero_mask(Z)
    np.testing.assert_array_equal(rows, [True, False, False, True, False, False])
    np.testing.assert_array_equal(cols, [False, True, True, False])


# --------------------------------------------------------------------------------------------
# empty cells and genes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_nonzero_mask_matches_dense(fmt):
    rows, cols = nonzero_mask(FORMATS[fmt](COUNTS))
    np.testing.assert_array_equal(rows, [True] * 5)
    np.testing.assert_array_equal(cols, [True, True, False, True])


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_nonzero_mask_ignores_explicit_zeros(fmt):
    X = FORMATS[fmt](COUNTS)
    X = X.tocoo() if fmt == "coo" else X
    X.data[X.data == 7] = 0  # cell2's only value becomes a stored zero
    assert X.nnz == np.count_nonzero(COUNTS)
    rows, cols = nonzero_mask(X)
    np.testing.assert_array_equal(rows, [True, True, False, True, True])
    np.testing.assert_array_equal(cols, [True, True, False, True])


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.int64, st.tuples(st.integers(1, 7), st.integers(1, 7)), elements=st.integers(0, 2)),
    st.sampled_from(sorted(FORMATS)),
)
def test_nonzero_mask_property(X, fmt):
    rows, cols = nonzero_mask(FORMATS[fmt](X))
    np.testing.assert_array_equal(rows, (X != 0).any(axis=1))
    np.testing.assert_array_equal(cols, (X != 0).any(axis=0))


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_check_nonempty_zero_cells_and_genes(fmt):
    X = COUNTS.copy()
    X[[1, 3]] = 0
    adata = _adata(FORMATS[fmt](X))
    with pytest.raises(EmptyDataError) as err:
        check_nonempty(adata)
    msg = _one_line(err)
    assert "2 of 5 cells" in msg and "'cell1'" in msg and "sc.pp.filter_cells" in msg
    check_nonempty(adata, allow_zero_cells=True)  # gene2 is all-zero, but allowed by default
    with pytest.raises(EmptyDataError) as err:
        check_nonempty(adata, allow_zero_cells=True, allow_zero_genes=False)
    msg = _one_line(err)
    assert "2 of 4 genes" in msg and "['gene0', 'gene2']" in msg and "sc.pp.filter_genes" in msg


def test_check_nonempty_no_cells_or_genes():
    with pytest.raises(EmptyDataError, match="0 cells and 4 genes"):
        check_nonempty(_adata(np.zeros((0, 4), dtype=np.float32)))
    with pytest.raises(EmptyDataError, match="5 cells and 0 genes"):
        check_nonempty(_adata(np.zeros((5, 0), dtype=np.float32)), allow_zero_cells=True)


def test_check_nonempty_uses_layer():
    adata = _adata(layers={"counts": np.zeros_like(COUNTS)})
    check_nonempty(adata)
    with pytest.raises(EmptyDataError, match="5 of 5 cells"):
        check_nonempty(adata, layer="counts")


# --------------------------------------------------------------------------------------------
# names and keys
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", ["obs", "var"])
def test_check_unique_names(axis):
    adata = _adata()
    check_unique_names(adata, axis=axis)
    names = list(getattr(adata, f"{axis}_names"))
    names[2] = names[0]
    names[3] = names[0]
    setattr(adata, f"{axis}_names", names)
    with pytest.raises(DuplicateNamesError) as err:
        check_unique_names(adata, axis=axis)
    msg = _one_line(err)
    assert f"1 duplicated {'cell' if axis == 'obs' else 'gene'} name" in msg
    assert repr(names[0]) in msg and f"adata.{axis}_names_make_unique()" in msg
    with pytest.raises(InputError, match="axis must be"):
        check_unique_names(adata, axis="rows")


def test_check_spatial():
    xy = np.arange(10, dtype=np.float32).reshape(5, 2)
    adata = _adata(obsm={"spatial": xy, "X_pca": np.zeros((5, 3))})
    out = check_spatial(adata)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, xy)
    adata.obsm["xyz"] = pd.DataFrame(np.ones((5, 3)), index=adata.obs_names)
    np.testing.assert_array_equal(check_spatial(adata, spatial_key="xyz"), np.ones((5, 3)))
    with pytest.raises(InputError, match="2 coordinate columns"):
        check_spatial(adata, spatial_key="xyz", ndim=2)
    with pytest.raises(InputError, match=r"shape \(5, 1\)"):
        adata.obsm["line"] = np.ones((5, 1))
        check_spatial(adata, spatial_key="line")


def test_check_spatial_missing_and_nonfinite():
    adata = _adata(obsm={"X_umap": np.zeros((5, 2))})
    with pytest.raises(MissingKeyError) as err:
        check_spatial(adata)
    msg = _one_line(err)
    assert "adata.obsm['spatial'] is missing" in msg and "'X_umap'" in msg
    assert "spatial_key=" in msg
    xy = np.zeros((5, 2))
    xy[3, 1] = np.nan
    adata.obsm["spatial"] = xy
    with pytest.raises(InputError, match=r"1 of 5 cells \(e.g. \['cell3'\]\)"):
        check_spatial(adata)


def test_keys_layers_and_matrix():
    adata = _adata(layers={"counts": COUNTS * 2})
    adata.obs["cell_type"] = list("aabba")
    assert list(check_obs_key(adata, "cell_type")) == list("aabba")
    with pytest.raises(MissingKeyError, match=r"obs\['celltype'\] is missing.*'cell_type'"):
        check_obs_key(adata, "celltype")
    assert check_layer(adata, "counts") is adata.layers["counts"]
    assert get_matrix(adata) is adata.X
    assert get_matrix(adata, layer="counts") is adata.layers["counts"]
    with pytest.raises(MissingKeyError, match=r"layers\['raw'\] is missing.*'counts'"):
        get_matrix(adata, layer="raw")
    adata.X = None
    with pytest.raises(MissingKeyError, match=r"adata\.X is empty"):
        get_matrix(adata)


# --------------------------------------------------------------------------------------------
# shared features
# --------------------------------------------------------------------------------------------
def test_shared_features_keeps_order_of_first():
    a = _adata()
    b = ["gene3", "geneX", "gene0", "gene1"]
    assert list(shared_features(a, b)) == ["gene0", "gene1", "gene3"]
    assert list(shared_features(b, a)) == ["gene3", "gene0", "gene1"]
    with pytest.raises(NoSharedFeaturesError, match=r"share 3 feature name.*at least 4"):
        shared_features(a, b, min_shared=4)


@pytest.mark.parametrize(
    ("a", "b", "hint"),
    [
        (["Gapdh", "Actb"], ["GAPDH", "ACTB"], "upper/lower case"),
        (["ENSMUSG00000057666", "ENSMUSG00000029580"], ["Gapdh", "Actb"], "Ensembl IDs"),
        (["Gapdh", "Actb"], ["Sox2", "Pax6"], "same species"),
    ],
)
def test_shared_features_none_shared(a, b, hint):
    with pytest.raises(NoSharedFeaturesError) as err:
        shared_features(a, b, names=("reference", "query"))
    msg = _one_line(err)
    assert "reference (2 features) and query (2 features) share 0" in msg
    assert hint in msg


# --------------------------------------------------------------------------------------------
# composite checks
# --------------------------------------------------------------------------------------------
def test_check_adata_returns_matrix_and_runs_checks():
    adata = _adata(
        sp.csr_matrix(_log_normalized(COUNTS)),
        layers={"counts": sp.csr_matrix(COUNTS)},
        obsm={"spatial": np.zeros((5, 2))},
    )
    assert check_adata(adata) is adata.X
    assert (
        check_adata(adata, layer="counts", require_counts=True, spatial_key="spatial")
        is (adata.layers["counts"])
    )
    with pytest.raises(NotCountsError, match=r"^adata\.X holds non-integer"):
        check_adata(adata, require_counts=True)
    with pytest.raises(MissingKeyError, match="obsm"):
        check_adata(adata, spatial_key="xy")
    adata.var_names = ["g", "g", "h", "i"]
    with pytest.raises(DuplicateNamesError):
        check_adata(adata)


def test_check_adata_nonfinite_and_wrong_type():
    X = COUNTS.copy()
    X[0, 0] = np.inf
    with pytest.raises(NonFiniteError, match=r"^query\.X holds 0 NaN and 1 infinite"):
        check_adata(_adata(X), name="query")
    with pytest.raises(InputError, match="must be an AnnData, got ndarray"):
        check_adata(COUNTS)
    mdata = MuData({"rna": _adata()})
    with pytest.raises(InputError, match=r"got MuData: pick one modality"):
        check_adata(mdata)


def test_check_mudata():
    rna = _adata()
    atac = _adata(np.ones((3, 2), dtype=np.float32))
    atac.var_names = ["peak0", "peak1"]
    mdata = MuData({"rna": rna, "atac": atac})
    mods = check_mudata(mdata, modalities=["atac", "rna"])
    assert list(mods) == ["atac", "rna"]
    assert mods["rna"].shape == (5, 4)
    with pytest.raises(MissingKeyError) as err:
        check_mudata(mdata, modalities=["rna", "protein"])
    msg = _one_line(err)
    assert "'protein'" in msg and "'atac'" in msg
    with pytest.raises(InputError, match="must be a MuData, got AnnData"):
        check_mudata(rna)
    mdata.mod["rna"].X[0, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"mdata\['rna'\]\.X holds 1 NaN"):
        check_mudata(mdata)


# --------------------------------------------------------------------------------------------
# meaning: spread, zeros, minimum sizes, labels, seeds (issue 16)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_has_nonzero(fmt):
    assert has_nonzero(FORMATS[fmt](COUNTS))
    assert not has_nonzero(FORMATS[fmt](np.zeros_like(COUNTS)))
    stored_zeros = sp.csr_matrix((np.zeros(2), ([0, 1], [0, 1])), shape=(3, 3))
    assert not has_nonzero(stored_zeros)


def test_all_zero_matrix_refused_where_asked():
    adata = _adata(np.zeros_like(COUNTS))
    check_adata(adata, allow_zero_cells=True)  # the default accepts it (mapping has its own)
    with pytest.raises(EmptyDataError, match=r"adata\.X holds only zeros \(5 x 4\)"):
        check_adata(adata, allow_zero_cells=True, allow_all_zero=False)
    mdata = MuData({"rna": _adata(np.zeros_like(COUNTS))})
    with pytest.raises(EmptyDataError, match=r"mdata\['rna'\]\.X holds only zeros"):
        check_mudata(mdata)


def test_check_spread_and_degenerate_coordinates():
    check_spread(np.array([[0.0, 0.0], [0.0, 1e-9]]))
    with pytest.raises(InputError, match="holds 1 point"):
        check_spread(np.zeros((1, 2)))
    with pytest.raises(InputError, match=r"all 5 observations at the same point \(2\.0, 3\.0\)"):
        check_spread(np.tile([2.0, 3.0], (5, 1)))
    adata = _adata(np.ones((5, 4)), obsm={"spatial": np.ones((5, 2))})
    assert check_spatial(adata).shape == (5, 2)  # accepted unless asked
    with pytest.raises(InputError, match="same point") as err:
        check_spatial(adata, allow_degenerate=False)
    _one_line(err)
    with pytest.raises(InputError, match="same point"):
        check_adata(adata, spatial_key="spatial", allow_degenerate=False)


def test_check_spatial_missing_key_names_the_extra_fix():
    adata = _adata(obsm={"xy": np.eye(5, 2)})
    with pytest.raises(MissingKeyError, match=r"'xy'.*or spatial_key=None to skip"):
        check_spatial(adata, fix="or spatial_key=None to skip")


def test_check_min_obs():
    check_min_obs(_adata(), 5)
    with pytest.raises(EmptyDataError, match=r"adata has too few spots \(5; at least 6"):
        check_min_obs(_adata(), 6, what="spots")


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        ([np.nan] * 4, "only missing values (4 NaN/None)"),
        (["a", None, "a", np.nan], "1 class(es) ['a']"),
        (pd.Categorical(["a", "a"], categories=["a", "b"]), "1 class(es)"),
    ],
)
def test_check_labels_needs_two_classes(labels, words):
    with pytest.raises(InputError) as err:
        check_labels(pd.Series(labels), where="obs['ct']", fix="pass another column")
    message = _one_line(err)
    assert words in message and "obs['ct']" in message and "2 classes" in message


def test_check_labels_accepts_two_classes_with_missing_values():
    series = pd.Series(["a", None, "b"])
    assert check_labels(series, where="x") is series


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "1", None])
def test_check_seed_refuses_what_numpy_would(seed):
    with pytest.raises(InvalidOptionError, match="random_state="):
        check_seed(seed)


def test_check_seed_accepts_ints_and_generators():
    assert check_seed(np.int64(7)) == 7 and check_seed(2**32 - 1) == 2**32 - 1
    rng = np.random.default_rng(0)
    assert check_seed(rng, allow_generator=True) is rng
    with pytest.raises(InvalidOptionError):
        check_seed(rng)

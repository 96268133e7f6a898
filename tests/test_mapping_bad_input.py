"""Bad input to ``map_cells`` (issue 17), for EVERY solver of the registry: no shared genes, a
reference without the type key, one cell type, spots or cells without counts, NaN/inf,
duplicate names, log-transformed input under ``normalize="log_total"``.

The solvers are read from ``METHODS.names("solver")`` when the tests are collected, so a
solver added later (e.g. ``attention``) is covered without editing this file. Refusals are
one-line ``ValueError``s of ``cellweave.errors`` raised before any work (the solvers' work is
replaced by a failure); the CLI turns them into one line on stderr and exit 2.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import cellweave as cw
from cellweave.cli import main
from cellweave.errors import (
    CellweaveError,
    DuplicateNamesError,
    EmptyDataError,
    MissingKeyError,
    NonFiniteError,
    NoSharedFeaturesError,
    NotCountsError,
)
from cellweave.mapping import methods as mapping_methods
from cellweave.mapping.api import METHODS
from cellweave.sim import simulate_spatial
from cellweave.validate import log_transformed_problem

SOLVERS = METHODS.names("solver")


def _fast(method: str) -> dict:
    """Options that keep a solver quick where it declares them (training epochs)."""
    options = METHODS[method].options
    return {"max_epochs": 3} if "max_epochs" in options else {}


@pytest.fixture(scope="module")
def tissue():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp_, ref = simulate_spatial(n_spots=64, n_genes=40, n_ref_cells=80, random_state=0)
    return sp_, ref


@pytest.fixture
def no_work(monkeypatch):
    """The mapping itself (features, solver) replaced by a failure: a late check fails."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(mapping_methods, "_solve", refuse)
    monkeypatch.setattr(mapping_methods, "prepare_features", refuse)


def _dense(adata):
    out = adata.copy()
    out.X = out.X.toarray().astype(np.float64)
    return out


def _renamed(adata, axis, prefix="x"):
    out = adata.copy()
    setattr(out, f"{axis}_names", [prefix + str(n) for n in getattr(out, f"{axis}_names")])
    return out


def _duplicated(adata, axis):
    out = adata.copy()
    names = list(getattr(out, f"{axis}_names"))
    names[1] = names[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setattr(out, f"{axis}_names", names)
    return out


def _with(adata, row=None, value=np.nan, rows=None):
    out = _dense(adata)
    if rows is not None:
        out.X[rows] = 0
    else:
        out.X[row, 0] = value
    return out


def _lognorm(adata, *, mark: bool):
    out = _dense(adata)
    totals = out.X.sum(axis=1, keepdims=True)
    out.X = np.log1p(1e4 * out.X / np.where(totals > 0, totals, 1)).astype(np.float32)
    if mark:
        out.uns["log1p"] = {"base": None}
    return out


def _labelled(ref, value):
    out = ref.copy()
    out.obs["ct"] = value
    return out


def _cases(sp_, ref):
    """name -> (adata_sc, adata_sp, map_cells keywords, error, words in the message)."""
    all_zero_sp = sp_.copy()
    all_zero_sp.X = sp.csr_matrix(sp_.shape, dtype=np.float32)
    all_zero_sc = ref.copy()
    all_zero_sc.X = sp.csr_matrix(ref.shape, dtype=np.float32)
    return {
        "no shared genes": (
            _renamed(ref, "var"),
            sp_,
            {},
            NoSharedFeaturesError,
            ["share 0", "name features the same way"],
        ),
        "no type key": (
            ref,
            sp_,
            {"cell_type_key": "celltype"},
            MissingKeyError,
            ["adata_sc.obs['celltype']", "'cell_type'"],
        ),
        "one cell type": (
            _labelled(ref, "T cell"),
            sp_,
            {"cell_type_key": "ct"},
            cw.errors.InputError,
            ["1 class(es)", "at least 2 cell types"],
        ),
        "all spots without counts": (
            ref,
            all_zero_sp,
            {},
            EmptyDataError,
            ["adata_sp"],
        ),
        "all cells without counts": (
            all_zero_sc,
            sp_,
            {},
            EmptyDataError,
            ["adata_sc"],
        ),
        "NaN in the spots": (ref, _with(sp_, 3), {}, NonFiniteError, ["adata_sp.X", "1 NaN"]),
        "inf in the reference": (
            _with(ref, 2, np.inf),
            sp_,
            {},
            NonFiniteError,
            ["adata_sc.X", "1 infinite"],
        ),
        "duplicate spot names": (
            ref,
            _duplicated(sp_, "obs"),
            {},
            DuplicateNamesError,
            ["adata_sp", "obs_names_make_unique"],
        ),
        "duplicate cell names": (
            _duplicated(ref, "obs"),
            sp_,
            {},
            DuplicateNamesError,
            ["adata_sc", "obs_names_make_unique"],
        ),
        "duplicate gene names": (
            _duplicated(ref, "var"),
            sp_,
            {},
            DuplicateNamesError,
            ["adata_sc", "var_names_make_unique"],
        ),
        "log-normalized spots (scanpy's mark)": (
            ref,
            _lognorm(sp_, mark=True),
            {"normalize": "log_total"},
            NotCountsError,
            ["adata_sp.X", "uns['log1p']", "normalize='none'"],
        ),
        "log-normalized spots (no mark)": (
            ref,
            _lognorm(sp_, mark=False),
            {"normalize": "log_total"},
            NotCountsError,
            ["adata_sp.X", "normalize_total", "raw counts"],
        ),
        "log-normalized reference": (
            _lognorm(ref, mark=False),
            sp_,
            {"normalize": "log"},
            NotCountsError,
            ["adata_sc.X", "layer_sc='counts'"],
        ),
    }


CASES = [
    "no shared genes",
    "no type key",
    "one cell type",
    "all spots without counts",
    "all cells without counts",
    "NaN in the spots",
    "inf in the reference",
    "duplicate spot names",
    "duplicate cell names",
    "duplicate gene names",
    "log-normalized spots (scanpy's mark)",
    "log-normalized spots (no mark)",
    "log-normalized reference",
]


def test_every_case_is_run(tissue):
    assert list(_cases(*tissue)) == CASES


def _state(adata) -> tuple:
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    return (tuple(adata.obsm), tuple(adata.uns), tuple(adata.obs.columns), X.tobytes())


@pytest.mark.parametrize("method", SOLVERS)
@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_before_any_work_for_every_solver(tissue, no_work, method, case):
    adata_sc, adata_sp, keywords, error, words = _cases(*tissue)[case]
    before = (_state(adata_sc), _state(adata_sp))
    with pytest.raises(error) as err:
        cw.tl.map_cells(adata_sc, adata_sp, method=method, **keywords, **_fast(method))
    message = str(err.value)
    assert isinstance(err.value, CellweaveError) and isinstance(err.value, ValueError)
    assert "\n" not in message and (":" in message or ";" in message)
    for word in words:
        assert word in message, message
    assert (_state(adata_sc), _state(adata_sp)) == before


def _record(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if "cellweave" in w.filename]


@pytest.mark.parametrize("method", SOLVERS)
def test_spots_without_counts_are_left_out_with_one_warning(tissue, method):
    sp_, ref = tissue
    adata_sp = _with(sp_, rows=[0, 5, 9])
    mapping, messages = _record(
        lambda: cw.tl.map_cells(
            ref, adata_sp, method=method, cell_type_key="cell_type", **_fast(method)
        )
    )
    spot_lines = [m for m in messages if "spots have no counts" in m]
    assert spot_lines == [spot_lines[0]] and len(spot_lines) == 1, messages
    assert "3 of 64 spots" in spot_lines[0]
    assert "sc.pp.filter_cells(adata_sp, min_counts=1)" in spot_lines[0]
    assert (mapping.spot_mass[[0, 5, 9]] == 0).all()
    assert (np.delete(mapping.spot_mass, [0, 5, 9]) > 0).all()
    # fractions of the unmapped spots: the reference's type frequencies (rows sum to 1)
    fractions = adata_sp.obsm["cell_type_fractions"]
    overall = ref.obs["cell_type"].value_counts(normalize=True)
    np.testing.assert_allclose(
        fractions.iloc[0].to_numpy(), overall.reindex(fractions.columns).to_numpy()
    )
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0)


@pytest.mark.parametrize("method", SOLVERS)
def test_cells_without_counts_on_the_shared_genes_are_mapped_nowhere(tissue, method):
    sp_, ref = tissue
    panel = sp_[:, 10:].copy()  # the reference keeps genes the panel lacks
    adata_sc = _dense(ref)
    adata_sc.X[[1, 4], 10:] = 0
    adata_sc.X[[1, 4], :10] = 3.0  # counts, but none on the shared genes
    mapping, messages = _record(
        lambda: cw.tl.map_cells(adata_sc, panel, method=method, **_fast(method))
    )
    lines = [m for m in messages if "reference cells have no counts" in m]
    assert len(lines) == 1 and "2 of 80 reference cells" in lines[0], messages
    assert "sc.pp.filter_cells(adata_sc, min_counts=1)" in lines[0]
    assert (mapping.cell_mass[[1, 4]] == 0).all() and (mapping.assign()[[1, 4]] == -1).all()


def test_log_transformed_detection_spares_counts_and_intensities():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(50, 30)).astype(np.float32)
    assert log_transformed_problem(counts) is None
    assert log_transformed_problem(sp.csr_matrix(counts)) is None
    intensities = rng.gamma(2.0, 0.3, size=(50, 30))  # in situ / protein: continuous
    assert log_transformed_problem(intensities) is None
    assert log_transformed_problem(counts / 3.0) is None  # scaled, not logged
    assert "whole numbers" in log_transformed_problem(np.log1p(counts))
    totals = counts.sum(axis=1, keepdims=True)
    lognorm = np.log1p(1e4 * counts / totals).astype(np.float32)
    assert "normalize_total" in log_transformed_problem(sp.csr_matrix(lognorm))
    assert "uns['log1p']" in log_transformed_problem(intensities, uns={"log1p": {}})


def test_log_transformed_input_maps_when_asked_as_it_is(tissue):
    sp_, ref = tissue
    logged = _lognorm(sp_, mark=True)
    mapping = cw.tl.map_cells(ref, logged, normalize="none")
    assert mapping.plan.nnz > 0


# ---------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def files(tissue, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_map")
    sp_, ref = tissue
    written = {"sc": ref, "sp": sp_}
    written["sp_renamed"] = _renamed(sp_, "var")
    written["sp_lognorm"] = _lognorm(sp_, mark=True)
    written["sp_zero"] = _with(sp_, rows=slice(None))
    for name, adata in written.items():
        adata = adata.copy()
        adata.uns.pop("sim", None)
        adata.write_h5ad(root / f"{name}.h5ad")
    return root


CLI_CASES = {
    "no shared genes": ("sp_renamed", (), "share 0"),
    "no type key": ("sp", ("--cell-type-key", "celltype"), "celltype"),
    "all spots without counts": ("sp_zero", (), "no spot has a non-zero value"),
    "log-normalized spots": (  # gradient's own default, "total", takes no log (as Tangram)
        "sp_lognorm",
        ("--param", "normalize=log_total"),
        "looks log-transformed already",
    ),
}


@pytest.mark.parametrize("method", SOLVERS)
@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input_is_one_line_exit_2_for_every_solver(
    files, tmp_path, capsys, no_work, method, case
):
    sp_name, extra, words = CLI_CASES[case]
    out = tmp_path / "out.h5ad"
    argv = [files / "sc.h5ad", files / f"{sp_name}.h5ad", "-o", out, "--method", method]
    code = main(["map", *map(str, argv), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert words in err and not out.exists()

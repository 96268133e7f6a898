"""Bad input at the API entry points (issue 16): one ``cellweave`` error that is a
``ValueError``, one line naming the problem and the fix, raised before any work (the
work functions are replaced by ones that fail), the input unchanged.

Classes: coordinates (present, finite, 2-3 columns, not degenerate, for every method that
uses them, ``auto`` included); meaningless inputs (labels without two classes, all-zero
matrices, too few cells or spots, duplicate names, duplicate modalities); numbers out of
range or NaN/inf (registry options and training options); guidance graph weights; saved
mosaic model folders. One CLI case per class closes the file.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import cellweave as cw
from cellweave import validate
from cellweave.align import api as align_api
from cellweave.cli import main
from cellweave.errors import (
    CellweaveError,
    DuplicateNamesError,
    EmptyDataError,
    FileFormatError,
    InputError,
    InvalidOptionError,
    MissingKeyError,
    NonFiniteError,
)
from cellweave.graph import neighbors as graph_neighbors
from cellweave.impute import api as impute_api
from cellweave.mapping import methods as mapping_methods
from cellweave.mosaic import MosaicModel, graph_from_links
from cellweave.mosaic import api as mosaic_api
from cellweave.mosaic import model as mosaic_model
from cellweave.registry import Float, Int
from cellweave.sim import simulate_mosaic, simulate_spatial

FAST = {"n_latent": 4, "encoder_hidden": 16, "decoder_hidden": (), "n_embedding": 8}


@pytest.fixture(scope="module")
def tissue():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp_, ref = simulate_spatial(n_spots=64, n_genes=40, n_ref_cells=80, random_state=0)
    return sp_, ref


@pytest.fixture(scope="module")
def mosaic():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simulate_mosaic(
            n_cells=200,
            n_genes=40,
            n_peaks=150,
            n_proteins=5,
            n_cell_types=3,
            latent_dim=3,
            random_state=0,
        )


def _refuse(*args, **kwargs):
    raise AssertionError("work started before the input was checked")


@pytest.fixture
def no_work(monkeypatch):
    """Every entry point's work, replaced by a failure: a check that comes too late fails."""
    monkeypatch.setattr(impute_api, "_predict", _refuse)
    monkeypatch.setattr(mapping_methods, "prepare_features", _refuse)
    monkeypatch.setattr(align_api, "_align", _refuse)
    monkeypatch.setattr(mosaic_api, "MosaicModel", _refuse)
    monkeypatch.setattr(mosaic_model, "fit", _refuse)
    monkeypatch.setattr(graph_neighbors, "neighbor_rings", _refuse)


def _state(data) -> tuple:
    """What a call could change in an AnnData/MuData (each modality of a MuData too)."""
    if hasattr(data, "mod"):
        return (_state_of(data), tuple(_state(m) for m in data.mod.values()))
    return _state_of(data)


def _state_of(data) -> tuple:
    X = data.X if not hasattr(data, "mod") else None
    dense = X.toarray() if sp.issparse(X) else (None if X is None else np.asarray(X).copy())
    return (
        data.shape,
        tuple(data.obs_names),
        tuple(data.obs.columns),
        tuple(data.obsm.keys()),
        tuple((getattr(data, "layers", None) or {}).keys()),
        tuple(data.uns.keys()),
        tuple(data.obsp.keys()),
        None if dense is None else dense.tobytes(),
        tuple(
            (k, np.asarray(v).tobytes())
            for k, v in data.obsm.items()
            if not isinstance(v, pd.DataFrame)
        ),
    )


def _check_refused(call, inputs, error, words) -> str:
    before = [_state(x) for x in inputs]
    with pytest.raises(error) as err:
        call()
    message = str(err.value)
    assert isinstance(err.value, CellweaveError) and isinstance(err.value, ValueError)
    assert "\n" not in message and message.strip() == message
    assert ":" in message or ";" in message  # the problem, then the fix
    for word in words:
        assert word in message, message
    assert [_state(x) for x in inputs] == before
    return message


def _coords(adata, coords):
    out = adata.copy()
    out.obsm["spatial"] = coords
    return out


def _zeros(adata):
    out = adata.copy()
    out.X = sp.csr_matrix(out.shape, dtype=np.float32)
    return out


# ------------------------------------------------------------------------- coordinates
def _coordinate_cases(sp_, ref):
    n = sp_.n_obs
    xy = sp_.obsm["spatial"]
    one_col, five_col, same = xy[:, :1], np.hstack([xy, xy, xy[:, :1]]), np.zeros((n, 2))
    nan = xy.astype(float).copy()
    nan[3, 0] = np.nan
    tl = cw.tl
    return {
        "impute auto 1 column": (
            lambda a: tl.impute(a),
            _coords(sp_, one_col),
            InputError,
            ["(64, 1)", "2 or 3"],
        ),
        "impute auto 5 columns": (
            lambda a: tl.impute(a),
            _coords(sp_, five_col),
            InputError,
            ["(64, 5)"],
        ),
        "impute auto misspelt key": (
            lambda a: tl.impute(a, spatial_key="spatail"),
            sp_.copy(),
            MissingKeyError,
            ["'spatail'", "'spatial'", "spatial_key=None"],
        ),
        "impute auto NaN": (lambda a: tl.impute(a), _coords(sp_, nan), NonFiniteError, ["NaN"]),
        "impute auto one point": (
            lambda a: tl.impute(a),
            _coords(sp_, same),
            InputError,
            ["same point"],
        ),
        "impute rings one point": (
            lambda a: tl.impute(a, method="rings"),
            _coords(sp_, same),
            InputError,
            ["same point"],
        ),
        "impute rings spatial_key=None": (
            lambda a: tl.impute(a, method="rings", spatial_key=None),
            sp_.copy(),
            MissingKeyError,
            ["spatial_key="],
        ),
        "neighbors one point": (
            lambda a: cw.graph.spatial_neighbors(a),
            _coords(sp_, same + 5.0),
            InputError,
            ["same point"],
        ),
        "map fgw one point": (
            lambda a: tl.map_cells(ref.copy(), a, method="fgw"),
            _coords(sp_, same),
            InputError,
            ["adata_sp.obsm['spatial']", "same point"],
        ),
        "align one point": (
            lambda a: tl.align_sections(a, sp_.copy()),
            _coords(sp_, same),
            InputError,
            ["adata_a.obsm['spatial']", "same point"],
        ),
        "align 5 columns": (
            lambda a: tl.align_sections(sp_.copy(), a),
            _coords(sp_, five_col),
            InputError,
            ["(64, 5)"],
        ),
        "inspect --spatial one point": (
            lambda a: validate.check_adata(a, spatial_key="spatial", allow_degenerate=False),
            _coords(sp_, same),
            InputError,
            ["same point"],
        ),
    }


COORDINATE_CASES = [
    "impute auto 1 column",
    "impute auto 5 columns",
    "impute auto misspelt key",
    "impute auto NaN",
    "impute auto one point",
    "impute rings one point",
    "impute rings spatial_key=None",
    "neighbors one point",
    "map fgw one point",
    "align one point",
    "align 5 columns",
    "inspect --spatial one point",
]


@pytest.mark.parametrize("case", COORDINATE_CASES)
def test_coordinates_are_checked_before_any_work(tissue, no_work, case):
    call, adata, error, words = _coordinate_cases(*tissue)[case]
    _check_refused(lambda: call(adata), [adata], error, words)


def test_auto_without_coordinates_is_an_explicit_choice(tissue, monkeypatch):
    seen = {}

    def record(spec, adata, X, coords, *args):
        seen["coords"] = coords
        return np.full(adata.shape, 1.0 / adata.n_vars), None  # proportions, no choice

    monkeypatch.setattr(impute_api, "_predict", record)
    bare = tissue[0].copy()
    del bare.obsm["spatial"]
    with pytest.raises(MissingKeyError, match="spatial_key=None"):
        cw.tl.impute(bare)
    cw.tl.impute(bare, spatial_key=None)
    assert seen["coords"] is None and bare.uns["impute"]["params"]["spatial_key"] is None
    cw.tl.impute(tissue[0].copy())  # with coordinates, auto gets them
    assert seen["coords"].shape == (tissue[0].n_obs, 2)


# ------------------------------------------------------------------------- meaningless
def _labelled(ref, values):
    out = ref.copy()
    out.obs["ct"] = values
    return out


def _dup_names(adata, axis):
    out = adata.copy()
    names = list(getattr(out, f"{axis}_names"))
    names[1] = names[0]
    setattr(out, f"{axis}_names", names)
    return out


def _meaningless_cases(sp_, ref, mdata):
    tl = cw.tl
    nan_types = _labelled(ref, np.nan)
    zero_rna = mdata.copy()
    zero_rna.mod["rna"].X = sp.csr_matrix(zero_rna.mod["rna"].shape, dtype=np.float32)
    no_labels = mdata.copy()
    no_labels.obs["lab"] = np.nan
    return {
        "map cell types all NaN": (
            lambda r: tl.map_cells(r, sp_.copy(), cell_type_key="ct"),
            nan_types,
            InputError,
            ["adata_sc.obs['ct']", "only missing values", "2 classes"],
        ),
        "map one cell type": (
            lambda r: tl.map_cells(r, sp_.copy(), cell_type_key="ct"),
            _labelled(ref, "T cell"),
            InputError,
            ["1 class(es)", "'T cell'"],
        ),
        "fractions one cell type": (
            lambda r: tl.cell_type_fractions(None, r, sp_.copy(), cell_type_key="ct"),
            _labelled(ref, "T cell"),
            InputError,
            ["1 class(es)"],
        ),
        "impute all zero": (lambda a: tl.impute(a), _zeros(sp_), EmptyDataError, ["only zeros"]),
        "align all zero": (
            lambda a: tl.align_sections(sp_.copy(), a),
            _zeros(sp_),
            EmptyDataError,
            ["adata_b.X holds only zeros"],
        ),
        "integrate all-zero RNA": (
            lambda m: mosaic_model.MosaicModel(m, batch_key="batch", **FAST),
            zero_rna,
            EmptyDataError,
            ["mdata['rna'].X holds only zeros"],
        ),
        "integrate labels all NaN": (
            lambda m: tl.integrate(m, batch_key="batch", label_key="lab", **FAST),
            no_labels,
            InputError,
            ["data.obs['lab']", "label_key=None"],
        ),
        "impute one spot": (
            lambda a: tl.impute(a, method="gene_mean"),
            sp_[:1].copy(),
            EmptyDataError,
            ["too few spots (1; at least 2"],
        ),
        "map one cell": (
            lambda r: tl.map_cells(r, sp_.copy()),
            ref[:1].copy(),
            EmptyDataError,
            ["adata_sc has too few cells"],
        ),
        "map one spot": (
            lambda a: tl.map_cells(ref.copy(), a),
            sp_[:1].copy(),
            EmptyDataError,
            ["adata_sp has too few spots"],
        ),
        "align two spots": (
            lambda a: tl.align_sections(sp_.copy(), a),
            sp_[:2].copy(),
            EmptyDataError,
            ["at least 3"],
        ),
        "integrate one cell": (
            lambda m: tl.integrate(m, batch_key="batch", **FAST),
            mdata[:1].copy(),
            EmptyDataError,
            ["too few cells (1; at least 2"],
        ),
        "neighbors duplicate cells": (
            lambda a: cw.graph.spatial_neighbors(a),
            _dup_names(sp_, "obs"),
            DuplicateNamesError,
            ["obs_names_make_unique"],
        ),
        "neighbors duplicate genes": (
            lambda a: cw.graph.spatial_neighbors(a),
            _dup_names(sp_, "var"),
            DuplicateNamesError,
            ["var_names_make_unique"],
        ),
    }


MEANINGLESS_CASES = [
    "map cell types all NaN",
    "map one cell type",
    "fractions one cell type",
    "impute all zero",
    "align all zero",
    "integrate all-zero RNA",
    "integrate labels all NaN",
    "impute one spot",
    "map one cell",
    "map one spot",
    "align two spots",
    "integrate one cell",
    "neighbors duplicate cells",
    "neighbors duplicate genes",
]


@pytest.mark.parametrize("case", MEANINGLESS_CASES)
def test_meaningless_inputs_are_refused(tissue, mosaic, no_work, case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's duplicate-name warning
        call, data, error, words = _meaningless_cases(*tissue, mosaic)[case]
    _check_refused(lambda: call(data), [data], error, words)


def test_simulated_batch_lists_each_modality_once():
    with pytest.raises(InputError, match="lists modality 'rna' twice"):
        simulate_mosaic(n_cells=50, batches={"a": ["rna", "rna"]})


# ------------------------------------------------------------------------- numbers
IMPUTE_NUMBERS = [
    ("mf", {"max_epochs": 0}, "max_epochs=0"),
    ("mf", {"max_epochs": -1}, "max_epochs=-1"),
    ("mf", {"lr": 0.0}, "> 0"),
    ("mf", {"lr": float("inf")}, "lr=inf"),
    ("mf", {"n_latent": 0}, ">= 1"),
    ("ae", {"spatial_weight": -1.0}, ">= 0"),
    ("ae", {"dropout": 1.0}, "in [0, 1)"),
    ("rings", {"similarity_scale": 0.0}, "> 0"),
    ("auto", {"alpha": float("nan")}, "alpha=nan"),
    ("gene_mean", {"target_sum": -1.0}, "target_sum=-1"),
    ("gene_mean", {"target_sum": float("nan")}, "target_sum=nan"),
]


@pytest.mark.parametrize(("method", "options", "words"), IMPUTE_NUMBERS)
def test_impute_numbers_out_of_range(tissue, no_work, method, options, words):
    adata = tissue[0].copy()
    call = lambda: cw.tl.impute(adata, method=method, **options)  # noqa: E731
    _check_refused(call, [adata], InvalidOptionError, [words])


MAP_NUMBERS = [
    ("gradient", {"max_epochs": -3}, "max_epochs must be an integer >= 1"),
    ("gradient", {"lr": 0.0}, "lr must be a number > 0"),
    ("fgw", {"epsilon": 0.0}, "> 0"),
    ("ot", {"tol": float("inf")}, "tol"),
    ("softmax", {"perplexity": float("nan")}, "perplexity"),
]


@pytest.mark.parametrize(("method", "options", "words"), MAP_NUMBERS)
def test_mapping_numbers_out_of_range(tissue, no_work, method, options, words):
    sp_, ref = tissue[0].copy(), tissue[1].copy()
    call = lambda: cw.tl.map_cells(ref, sp_, method=method, **options)  # noqa: E731
    _check_refused(call, [sp_, ref], InvalidOptionError, [words])


@pytest.mark.parametrize(
    "options", [{"nonrigid_smoothness": float("inf")}, {"alpha": float("nan")}, {"refine": -1}]
)
def test_align_numbers_out_of_range(tissue, no_work, options):
    a, b = tissue[0].copy(), tissue[0].copy()
    call = lambda: cw.tl.align_sections(a, b, nonrigid=True, **options)  # noqa: E731
    _check_refused(call, [a, b], InvalidOptionError, list(options))


INTEGRATE_NUMBERS = [
    ({"max_epochs": 0}, "max_epochs=0"),
    ({"max_epochs": -1}, "max_epochs=-1"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"train_kwargs": {"lr": float("nan")}}, "lr=nan"),
    ({"train_kwargs": {"lr": 0.0}}, "> 0"),
    ({"train_kwargs": {"validation_fraction": 1.0}}, "in [0, 1)"),
    ({"train_kwargs": {"patience": -1}}, "patience=-1"),
    ({"graph_weight": float("nan")}, "graph_weight=nan"),
    ({"graph_weight": float("inf")}, "graph_weight=inf"),
    ({"mmd_weight": -5.0}, "mmd_weight=-5"),
    ({"n_latent": 0}, "n_latent=0"),
    ({"dropout": 1.0}, "in [0, 1)"),
    ({"random_state": -1}, "random_state=-1"),
]


@pytest.mark.parametrize(("options", "words"), INTEGRATE_NUMBERS)
def test_integrate_numbers_out_of_range(mosaic, no_work, options, words):
    data = mosaic.copy()
    call = lambda: cw.tl.integrate(data, batch_key="batch", **{**FAST, **options})  # noqa: E731
    _check_refused(call, [data], InvalidOptionError, [words])


SEED_CASES = {
    "impute": lambda sp_, ref, seed: cw.tl.impute(sp_, method="knn", random_state=seed),
    "map": lambda sp_, ref, seed: cw.tl.map_cells(ref, sp_, random_state=seed),
    "align": lambda sp_, ref, seed: cw.tl.align_sections(sp_.copy(), sp_, random_state=seed),
}


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5])
@pytest.mark.parametrize("entry", list(SEED_CASES))
def test_seeds_numpy_refuses_are_refused_up_front(tissue, no_work, entry, seed):
    sp_, ref = tissue[0].copy(), tissue[1].copy()
    call = lambda: SEED_CASES[entry](sp_, ref, seed)  # noqa: E731
    _check_refused(call, [sp_, ref], InvalidOptionError, [f"random_state={seed!r}"])


def test_model_train_checks_its_numbers_before_training(mosaic, monkeypatch):
    monkeypatch.setattr(mosaic_model, "fit", _refuse)
    model = MosaicModel(mosaic.copy(), batch_key="batch", n_clusters=3, **FAST)
    for options in ({"max_epochs": 0}, {"max_epochs": -1}, {"lr": -1.0}, {"num_threads": 0}):
        with pytest.raises(InvalidOptionError, match=next(iter(options))):
            model.train(**options)
    assert not model.is_trained


def test_registry_numbers():
    with pytest.raises(InvalidOptionError, match="an integer"):
        Int("k", 1, low=1).check(float("inf"), owner="m")  # not an OverflowError
    with pytest.raises(InvalidOptionError, match="pass a finite number"):
        Float("x", 1.0).check(float("-inf"), owner="m")
    assert Float("x", 1.0, finite=False).check(float("inf"), owner="m") == float("inf")
    positive = Float("lr", 1.0, low=0, low_open=True)
    with pytest.raises(InvalidOptionError, match=r"lr=0\.0 is invalid; pass a number > 0"):
        positive.check(0.0, owner="m")
    assert positive.check(1e-9, owner="m") == 1e-9
    below_one = Float("p", 0.5, low=0, high=1, high_open=True)
    assert below_one.check(0.0, owner="m") == 0.0
    with pytest.raises(InvalidOptionError, match=r"in \[0, 1\)"):
        below_one.check(1, owner="m")


# ------------------------------------------------------------------------- guidance graph
LINKS = pd.DataFrame({"source": ["g0", "g1"], "target": ["p0", "p1"], "weight": [1.0, 0.5]})
FEATURES = ["g0", "g1", "p0", "p1"]


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"weight": [np.nan, 1.0]}, NonFiniteError, "NaN or infinite link weight"),
        ({"weight": [np.inf, 1.0]}, NonFiniteError, "NaN or infinite link weight"),
        ({"weight": [-1.0, 1.0], "sign": [1, 1]}, InputError, "negative link weight"),
        ({"sign": [np.nan, 1.0]}, NonFiniteError, "link sign"),
        ({"weight": [0.0, 0.0]}, InputError, "weight 0"),
    ],
)
def test_guidance_weights_finite_and_non_negative(change, error, words):
    links = LINKS.assign(**change)
    before = links.copy()
    with pytest.raises(error, match=words) as err:
        graph_from_links(links, FEATURES)
    assert "\n" not in str(err.value)
    pd.testing.assert_frame_equal(links, before)


def test_signed_weights_without_sign_column_stay_valid():
    graph = graph_from_links(LINKS.assign(weight=[-1.0, 0.5]), FEATURES)
    assert graph[0, 2] == -1.0 and graph[2, 0] == -1.0


def test_integrate_refuses_a_guidance_graph_with_nan_weights(mosaic, monkeypatch):
    monkeypatch.setattr(mosaic_model, "fit", _refuse)
    data = mosaic.copy()
    graph = sp.lil_matrix((data.n_vars, data.n_vars))
    graph[0, data.n_vars - 1] = graph[data.n_vars - 1, 0] = np.nan
    data.varp["guidance"] = graph.tocsr()
    with pytest.raises(NonFiniteError, match="guidance graph"):
        cw.tl.integrate(data, batch_key="batch", n_clusters=3, max_epochs=1, **FAST)


# ------------------------------------------------------------------------- saved models
@pytest.fixture(scope="module")
def saved(tmp_path_factory, mosaic):
    model = MosaicModel(mosaic.copy(), batch_key="batch", n_clusters=3, **FAST)
    model.train(max_epochs=1, progress=False)
    return model.save(tmp_path_factory.mktemp("model") / "model")


def _truncate(name):
    def change(folder):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return change


def _edit_meta(edit):
    def change(folder):
        meta = json.loads((folder / "model.json").read_text())
        edit(meta)
        (folder / "model.json").write_text(json.dumps(meta))

    return change


MODEL_FOLDER_CASES = {
    "truncated weights.pt": (_truncate("weights.pt"), "weights.pt", "truncated or corrupt"),
    "truncated representation.npz": (
        _truncate("representation.npz"),
        "representation.npz",
        "truncated or corrupt",
    ),
    "truncated graph.npz": (_truncate("graph.npz"), "graph.npz", "truncated or corrupt"),
    "model.json not JSON": (
        lambda f: (f / "model.json").write_text("{not json"),
        "model.json",
        "truncated or corrupt",
    ),
    "unknown key in model.json": (
        _edit_meta(lambda m: m.update(extra=1)),
        "model.json",
        "unknown key(s) ('extra')",
    ),
    "unknown init_params key": (
        _edit_meta(lambda m: m["init_params"].update(bogus=1)),
        "model.json",
        "unknown init_params key(s) ('bogus')",
    ),
    "unknown fitted key": (
        _edit_meta(lambda m: next(iter(m["fitted"].values())).update(bogus=1)),
        "model.json",
        "unknown fitted key(s)",
    ),
    "missing key": (
        _edit_meta(lambda m: m.pop("batch_names")),
        "model.json",
        "missing key(s) ('batch_names')",
    ),
    "weights of another model": (
        _edit_meta(lambda m: m["init_params"].update(n_latent=6)),
        "weights.pt",
        "does not fit",
    ),
}


@pytest.mark.parametrize("case", list(MODEL_FOLDER_CASES))
def test_a_damaged_model_folder_is_one_file_format_error(saved, tmp_path, mosaic, case):
    change, file, words = MODEL_FOLDER_CASES[case]
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    change(folder)
    with pytest.raises(FileFormatError) as err:
        MosaicModel.load(folder, mosaic)
    message = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in message
    assert str(folder / file) in message and words in message and "model.save" in message


def test_an_intact_model_folder_still_loads(saved, mosaic):
    assert MosaicModel.load(saved, mosaic).is_trained


# ------------------------------------------------------------------------- CLI, one per class
def _one_line_exit_2(argv, capsys, out):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    return err


def test_cli_misspelt_spatial_key_is_refused(tissue, tmp_path, capsys, no_work):
    path, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    tissue[0].write_h5ad(path)
    err = _one_line_exit_2(["impute", path, "-o", out, "--spatial-key", "spatail"], capsys, out)
    assert "'spatail'" in err and "'spatial'" in err


def test_cli_meaningless_cell_types_are_refused(tissue, tmp_path, capsys, no_work):
    sc_path, sp_path, out = tmp_path / "sc.h5ad", tmp_path / "sp.h5ad", tmp_path / "o.h5ad"
    _labelled(tissue[1], np.nan).write_h5ad(sc_path)
    tissue[0].write_h5ad(sp_path)
    err = _one_line_exit_2(
        ["map", sc_path, sp_path, "-o", out, "--cell-type-key", "ct"], capsys, out
    )
    assert "only missing values" in err


def test_cli_duplicate_names_are_refused_by_neighbors(tissue, tmp_path, capsys, no_work):
    path, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _dup_names(tissue[0], "obs").write_h5ad(path)
    err = _one_line_exit_2(["neighbors", path, "--out", out], capsys, out)
    assert "duplicated cell name" in err


def test_cli_zero_epochs_are_refused(mosaic, tmp_path, capsys, no_work):
    path, out = tmp_path / "in.h5mu", tmp_path / "out.h5mu"
    mosaic.write(path)
    err = _one_line_exit_2(["integrate", path, "-o", out, "--max-epochs", "0"], capsys, out)
    assert "--max-epochs" in err and "0 is not in the range" in err  # refused while parsing


def test_cli_nan_guidance_weights_are_refused(mosaic, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(mosaic_model, "fit", _refuse)
    path, out = tmp_path / "in.h5mu", tmp_path / "out.h5mu"
    data = mosaic.copy()
    graph = sp.lil_matrix((data.n_vars, data.n_vars))
    graph[0, data.n_vars - 1] = graph[data.n_vars - 1, 0] = np.inf
    data.varp["guidance"] = graph.tocsr()
    data.write(path)
    argv = ["integrate", path, "-o", out, "--n-clusters", "3", "--max-epochs", "1"]
    err = _one_line_exit_2(argv, capsys, out)
    assert "guidance graph" in err

"""Streaming from disk: ``--backed`` for ``integrate`` and ``impute``, the automatic threshold,
block reads (the matrix is never read whole), results equal to (or, where the minibatches
differ, within a stated tolerance of) the in-memory runs, the input never modified."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pytest
from scipy import sparse

from cellweave import io
from cellweave.cli import main
from cellweave.errors import InputError
from cellweave.impute import backed as ib
from cellweave.impute import impute, impute_backed
from cellweave.io import streaming
from cellweave.sim import simulate_mosaic

MF = ["--method", "mf", "--param", "alpha=0.1", "--param", "spatial_weight=0.01"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def spatial_counts(side: int = 15, n_genes: int = 30, seed: int = 0) -> ad.AnnData:
    """Spots on a lattice, two smooth domains with different profiles, Poisson counts."""
    rng = np.random.default_rng(seed)
    n = side * side
    coords = np.array([(i % side, i // side) for i in range(n)], dtype=float)
    domain = (coords[:, 0] + 0.5 * coords[:, 1] > side * 0.7).astype(int)
    profiles = rng.dirichlet(np.ones(n_genes) * 0.5, size=2)
    library = rng.lognormal(np.log(200), 0.3, n)
    counts = rng.poisson(library[:, None] * profiles[domain]).astype(np.float32)
    adata = ad.AnnData(sparse.csr_matrix(counts))
    adata.obs_names = [f"spot{i}" for i in range(n)]
    adata.var_names = [f"g{j}" for j in range(n_genes)]
    adata.obsm["spatial"] = coords
    return adata


@pytest.fixture(scope="module")
def spatial_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("backed") / "spots.h5ad"
    io.write(spatial_counts(), path)
    return path


@pytest.fixture(scope="module")
def mosaic_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("backed") / "mosaic.h5mu"
    mdata = simulate_mosaic(
        n_cells=300, n_genes=50, n_peaks=120, n_cell_types=3, latent_dim=3, random_state=0
    )
    io.write(mdata, path)
    return path


class RowSpy:
    """Records the rows of every read of a backed sparse dataset (anndata's class)."""

    def __init__(self, monkeypatch, cls) -> None:
        self.reads: list[int] = []
        original = cls.__getitem__
        spy = self

        def getitem(obj, key):
            out = original(obj, key)
            spy.reads.append(int(out.shape[0]))
            return out

        monkeypatch.setattr(cls, "__getitem__", getitem)


def _backed_class(path: Path) -> type:
    data = io.read(path, backed=True)
    x = data.X if isinstance(data, ad.AnnData) else next(iter(data.mod.values())).X
    cls = type(x)
    (data.file if isinstance(data, ad.AnnData) else data.mod["rna"].file).close()
    return cls


# ----------------------------------------------------------------------------- threshold


def test_dense_nbytes_reads_shapes_only(spatial_file, mosaic_file, tmp_path):
    assert io.dense_nbytes(spatial_file) == 4 * 225 * 30
    mdata = md.read_h5mu(mosaic_file)
    expected = sum(4 * a.n_obs * a.n_vars for a in mdata.mod.values())
    assert io.dense_nbytes(mosaic_file) == expected
    table = tmp_path / "t.csv"
    table.write_text("cell,g1\nc1,1\n")
    assert io.dense_nbytes(table) == 0  # always read into memory


def test_use_backed_is_automatic_above_the_threshold(spatial_file):
    size = io.dense_nbytes(spatial_file)
    assert io.use_backed(spatial_file, None, threshold=size) == (False, None)
    on, note = io.use_backed(spatial_file, None, threshold=size - 1)
    assert on and "--no-backed" in note and "\n" not in note
    assert io.use_backed(spatial_file, True) == (True, None)
    assert io.use_backed(spatial_file, False, threshold=0) == (False, None)
    assert io.THRESHOLDS == {"impute": 2**29, "integrate": 4 * 2**30}
    assert io.use_backed(spatial_file, None, threshold="impute") == (False, None)


def test_cli_impute_streams_automatically_above_the_size(
    capsys, spatial_file, tmp_path, monkeypatch
):
    monkeypatch.setitem(streaming.THRESHOLDS, "impute", 1000)
    calls = []
    monkeypatch.setattr(ib, "impute_backed", lambda *a, **k: calls.append(k) or Path(a[1]))
    import cellweave.impute as imp

    monkeypatch.setattr(imp, "impute_backed", ib.impute_backed)
    code, _, err = run(capsys, "impute", str(spatial_file), "-o", str(tmp_path / "o.h5ad"), *MF)
    assert code == 0, err
    assert len(calls) == 1
    lines = [line for line in err.splitlines() if "streaming" in line]
    assert len(lines) == 1 and "spots.h5ad" in lines[0] and "--no-backed" in lines[0]
    # below the size (or --no-backed): in memory, no line
    monkeypatch.setitem(streaming.THRESHOLDS, "impute", 10**9)
    out = tmp_path / "o2.h5ad"
    code, _, err = run(capsys, "impute", str(spatial_file), "-o", str(out), *MF,
                       "--param", "max_epochs=1")  # fmt: skip
    assert code == 0, err
    assert len(calls) == 1 and "streaming" not in err
    assert "imputed" in ad.read_h5ad(out).layers


def test_cli_auto_keeps_methods_that_cannot_stream_in_memory(
    capsys, spatial_file, tmp_path, monkeypatch
):
    monkeypatch.setitem(streaming.THRESHOLDS, "impute", 1000)
    out = tmp_path / "knn.h5ad"
    code, _, err = run(capsys, "impute", str(spatial_file), "-o", str(out), "--method", "knn")
    assert code == 0, err
    assert "method 'knn' needs it in memory" in err
    assert "imputed" in ad.read_h5ad(out).layers


def test_cli_default_method_streams_as_mf_above_the_size(
    capsys, spatial_file, tmp_path, monkeypatch
):
    """The default recipe (method auto, no --backed) streams a large input: as mf, said in
    one line; --no-backed keeps auto in memory."""
    monkeypatch.setitem(streaming.THRESHOLDS, "impute", 1000)
    calls = []
    monkeypatch.setattr(ib, "impute_backed", lambda *a, **k: calls.append(k) or Path(a[1]))
    import cellweave.impute as imp

    monkeypatch.setattr(imp, "impute_backed", ib.impute_backed)
    code, _, err = run(capsys, "impute", str(spatial_file), "-o", str(tmp_path / "o.h5ad"))
    assert code == 0, err
    assert [c["method"] for c in calls] == ["mf"]
    assert sum("'auto' streams as 'mf'" in line for line in err.splitlines()) == 1
    code, _, err = run(capsys, "impute", str(spatial_file), "-o", str(tmp_path / "o.h5ad"),
                       "--overwrite", "--backed")  # fmt: skip
    assert code == 0, err
    assert [c["method"] for c in calls] == ["mf", "mf"]


def test_cli_integrate_streams_automatically(capsys, mosaic_file, tmp_path, monkeypatch):
    monkeypatch.setitem(streaming.THRESHOLDS, "integrate", 1000)
    seen = []
    original = io.read

    def read(path, **kwargs):
        seen.append(kwargs.get("backed"))
        return original(path, **kwargs)

    monkeypatch.setattr(io, "read", read)
    out = tmp_path / "auto.h5mu"
    code, _, err = run(capsys, "integrate", str(mosaic_file), "-o", str(out), "--max-epochs",
                       "1", "--n-latent", "4", "--no-plot")  # fmt: skip
    assert code == 0, err
    assert seen == [True]
    assert sum("streaming mosaic.h5mu" in line for line in err.splitlines()) == 1


# ----------------------------------------------------------------------------- impute


def test_cli_impute_backed_equals_in_memory(capsys, spatial_file, tmp_path):
    before = sha(spatial_file)
    mem, bkd = tmp_path / "mem.h5ad", tmp_path / "bkd.h5ad"
    fast = [*MF, "--param", "max_epochs=2"]
    code, _, err = run(capsys, "impute", str(spatial_file), "-o", str(mem), *fast, "--no-backed")
    assert code == 0, err
    code, out, err = run(capsys, "impute", str(spatial_file), "-o", str(bkd), *fast, "--backed")
    assert code == 0, err
    assert "streamed from disk" in out
    a, b = ad.read_h5ad(mem), ad.read_h5ad(bkd)
    np.testing.assert_array_equal(np.asarray(a.layers["imputed"]), np.asarray(b.layers["imputed"]))
    assert b.layers["imputed"].dtype == np.float32
    assert (a.X != b.X).nnz == 0
    np.testing.assert_array_equal(a.obsm["spatial"], b.obsm["spatial"])
    assert a.uns["impute"]["params"] == b.uns["impute"]["params"]
    assert sha(spatial_file) == before  # the input is never modified
    assert not list(tmp_path.glob(".tmp-*"))


def test_impute_backed_selection_equals_in_memory(spatial_file, tmp_path):
    """With the penalties chosen by the inner split (two candidates each) too."""
    options = {"alpha": [0.1, 0.3], "spatial_weight": [0.0, 0.01], "max_epochs": 2}
    adata = io.read(spatial_file)
    impute(adata, method="mf", **options)
    backed = io.read(spatial_file, backed=True)
    stages: dict = {}
    impute_backed(backed, tmp_path / "b.h5ad", method="mf", timings=stages, **options)
    got = ad.read_h5ad(tmp_path / "b.h5ad")
    np.testing.assert_array_equal(np.asarray(got.layers["imputed"]), adata.layers["imputed"])
    assert stages["window"] == adata.n_obs  # small: the window is every spot
    assert got.uns["impute"]["backed"] == {"window": 225, "streamed_refit": False}


@pytest.mark.slow
def test_impute_backed_streams_blocks_within_tolerance(tmp_path, monkeypatch):
    """Above the window the refit streams blocks of consecutive spots: no read covers the
    matrix, and the result is within the tolerance of the in-memory minibatch run.

    Both runs use minibatches of 256 of the 576 spots (``FULL_BATCH_ENTRIES`` lowered), so
    they differ only in which spots share a step (blocks of 16 consecutive spots against
    random spots); 15 epochs of Adam on the same objective then agree to a correlation above
    0.98 of the imputed layers and a Poisson deviance within 10%."""
    import cellweave.impute.mf as mf

    spatial_file = tmp_path / "576.h5ad"
    io.write(spatial_counts(side=24), spatial_file)
    monkeypatch.setattr(mf, "FULL_BATCH_ENTRIES", 64 * 30)
    monkeypatch.setattr(ib, "WINDOW_ENTRIES", 200 * 30)
    monkeypatch.setattr(ib, "BLOCK_SPOTS", 16)
    monkeypatch.setattr(io.streaming, "READ_BLOCK", 50)
    options = {"alpha": 0.1, "spatial_weight": 0.01, "max_epochs": 15}
    adata = io.read(spatial_file)
    impute(adata, method="mf", **options)
    spy = RowSpy(monkeypatch, _backed_class(spatial_file))
    batches = []
    rows = ib.BackedCounts.rows
    monkeypatch.setattr(
        ib.BackedCounts, "rows", lambda self, i: batches.append(len(i)) or rows(self, i)
    )
    backed = io.read(spatial_file, backed=True)
    out = tmp_path / "s.h5ad"
    stages: dict = {}
    impute_backed(backed, out, method="mf", timings=stages, **options)
    assert stages["window"] == 200
    assert spy.reads and max(spy.reads) <= 256  # blocks: never the 576 rows at once
    assert spy.reads[:12] == [50] * 11 + [26]  # the one pass, in blocks of READ_BLOCK
    assert batches and max(batches) <= 256 and min(batches) > 0
    got = np.asarray(ad.read_h5ad(out).layers["imputed"], dtype=np.float64)
    want = np.asarray(adata.layers["imputed"], dtype=np.float64)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.98
    from cellweave.metrics.denoising import poisson_deviance

    def deviance(layer):
        P = np.expm1(layer)
        return poisson_deviance(P / P.sum(1, keepdims=True), adata.X)

    assert abs(deviance(got) - deviance(want)) <= 0.1 * deviance(want)


def test_backed_refuses_methods_that_cannot_stream(capsys, spatial_file, tmp_path):
    code, _, err = run(capsys, "impute", str(spatial_file), "-o", str(tmp_path / "o.h5ad"),
                       "--method", "knn", "--backed")  # fmt: skip
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "method 'knn' needs the data in memory: drop --backed" in err
    assert not (tmp_path / "o.h5ad").exists()
    backed = io.read(spatial_file, backed=True)
    with pytest.raises(InputError, match="'auto' needs the data in memory"):
        impute_backed(backed, tmp_path / "x.h5ad", method="auto")
    code, _, err = run(capsys, "impute", str(spatial_file), "--evaluate", "--backed")
    assert code == 2 and "--evaluate needs the data in memory" in err


# ----------------------------------------------------------------------------- integrate


def _nn_accuracy(latent: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out 1-nearest-neighbour label accuracy in the latent space."""
    d = ((latent[:, None, :] - latent[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[np.argmin(d, axis=1)] == labels).mean())


@pytest.mark.slow
def test_cli_integrate_backed_reads_blocks_and_matches_in_memory(
    capsys, mosaic_file, tmp_path, monkeypatch
):
    """Backed training reads blocks of consecutive cells (8 per step) instead of random
    cells, so the latent differs from the in-memory one; both must separate the cell types
    equally well (1-NN accuracy within 0.15, both above chance)."""
    import cellweave.mosaic.data as mdata_mod

    monkeypatch.setattr(mdata_mod, "_READ_BLOCK", 64)  # the library pass, in blocks
    monkeypatch.setattr(mdata_mod, "_FIT_CELLS", 100)  # the representation's sample
    before = sha(mosaic_file)
    args = ["--max-epochs", "10", "--n-latent", "6", "--no-plot", "--label-key", "cell_type",
            "--labelled-fraction", "0"]  # fmt: skip
    mem, bkd = tmp_path / "mem.h5mu", tmp_path / "bkd.h5mu"
    code, _, err = run(capsys, "integrate", str(mosaic_file), "-o", str(mem), *args)
    assert code == 0, err
    spy = RowSpy(monkeypatch, _backed_class(mosaic_file))
    from cellweave.mosaic.datamodule import MosaicDataModule

    in_step: list[int] = []  # rows read inside the training / validation steps
    transfer = MosaicDataModule.transfer_batch_to_device

    def spied(self, batch, device, idx):
        start = len(spy.reads)
        out = transfer(self, batch, device, idx)
        in_step.extend(spy.reads[start:])
        return out

    monkeypatch.setattr(MosaicDataModule, "transfer_batch_to_device", spied)
    code, _, err = run(capsys, "integrate", str(mosaic_file), "-o", str(bkd), *args, "--backed")
    assert code == 0, err
    # steps read blocks of consecutive cells: 8 blocks of 8 (batch 64), never a modality
    assert len(in_step) > 15 and max(in_step) <= 64
    # the library pass reads blocks of _READ_BLOCK rows (the other reads outside steps are
    # the model's own bounded chunks: 2,000 cells to scale the likelihood, 4,096 to infer)
    assert spy.reads[:5] == [100, 64, 64, 64, 8]  # the 100-cell sample first
    a, b = md.read_h5mu(mem), md.read_h5mu(bkd)
    assert b.obsm["X_cellweave"].shape == a.obsm["X_cellweave"].shape == (300, 6)
    for name in a.mod:
        assert (a.mod[name].X != b.mod[name].X).nnz == 0  # X copied from the backed file
    labels = a.obs["cell_type"].astype(str).to_numpy()
    acc_mem = _nn_accuracy(np.asarray(a.obsm["X_cellweave"]), labels)
    acc_bkd = _nn_accuracy(np.asarray(b.obsm["X_cellweave"]), labels)
    assert min(acc_mem, acc_bkd) > 0.45, (acc_mem, acc_bkd)  # chance: 1/3 (measured 0.55, 0.58)
    assert abs(acc_mem - acc_bkd) < 0.15, (acc_mem, acc_bkd)
    assert sha(mosaic_file) == before


def test_block_sampler_covers_every_spot_once_per_epoch_in_blocks():
    sampler = ib._BlockSampler(1000, batch_size=256, block=64, seed=0)
    assert len(sampler) == 4  # 16 blocks, 4 per step
    epochs = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        steps = list(sampler)
        cells = np.concatenate(steps)
        assert np.array_equal(np.sort(cells), np.arange(1000))  # each spot once
        for step in steps:
            assert np.all(np.diff(step) > 0)  # sorted
            assert np.count_nonzero(np.diff(step) != 1) <= 3  # at most 4 runs
        epochs.append(cells)
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh order each epoch
    assert np.array_equal(epochs[0], epochs[2])  # seeded by the epoch (resume-safe)


def test_impute_backed_streamed_refit_checkpoints_and_resumes(tmp_path, monkeypatch):
    """The streamed refit trains through cellweave.train.fit: --checkpoint-dir works, and
    resuming a finished run restores it (same layer, nothing retrained)."""
    import cellweave.impute.mf as mf

    monkeypatch.setattr(mf, "FULL_BATCH_ENTRIES", 64 * 30)
    monkeypatch.setattr(ib, "WINDOW_ENTRIES", 200 * 30)
    monkeypatch.setattr(ib, "BLOCK_SPOTS", 16)
    path, ckpt = tmp_path / "576.h5ad", tmp_path / "ckpt"
    io.write(spatial_counts(side=24), path)
    options = {"alpha": 0.1, "spatial_weight": 0.01, "max_epochs": 2}
    outs = [tmp_path / "a.h5ad", tmp_path / "b.h5ad"]
    for out, resume in zip(outs, (False, True), strict=True):
        backed = io.read(path, backed=True)
        impute_backed(backed, out, checkpoint_dir=ckpt, resume=resume, **options)
    assert (ckpt / "fit-000" / "last.ckpt").is_file()
    a, b = (np.asarray(ad.read_h5ad(o).layers["imputed"]) for o in outs)
    np.testing.assert_array_equal(a, b)

"""The mosaic model's data apart from its Lightning module: split, samplers, labelled cells,
backed reading; the model's options checked up front; results written scanpy style."""

from __future__ import annotations

import ast
import inspect

import mudata as md
import numpy as np
import pytest
import torch

from cellweave import io
from cellweave.cli import main
from cellweave.errors import InvalidOptionError
from cellweave.mosaic import MosaicData, MosaicModel, analysis, integrate
from cellweave.mosaic.datamodule import MosaicDataModule
from cellweave.mosaic.sampling import LabelledCells
from cellweave.sim import simulate_mosaic

BATCHES = {"cite": ("rna", "protein"), "multiome": ("rna", "atac"), "atac_only": ("atac",)}
FAST = {"encoder_hidden": (16,), "n_embedding": 8, "decoder_hidden": (8,), "n_latent": 4}


@pytest.fixture(scope="module")
def mdata():
    m = simulate_mosaic(
        n_cells=240, batches=BATCHES, n_genes=30, n_peaks=60, n_proteins=6, n_cell_types=3,
        latent_dim=3, random_state=0,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    keep = rng.random(m.n_obs) < 0.2
    m.obs["some_labels"] = m.obs["cell_type"].astype(str).where(keep, None).to_numpy()
    return m


@pytest.fixture(scope="module")
def data(mdata):
    return MosaicData.from_mudata(mdata, batch_key="batch", label_key="some_labels")


def _epoch(dm: MosaicDataModule, epoch: int, loader=None) -> list[list[int]]:
    loader = loader or dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(epoch)  # as Lightning does before every epoch
    return [b.tolist() for b in loader]


def test_split_holds_out_a_fraction_of_every_batch_and_is_seeded(data):
    dm = MosaicDataModule(data, validation_fraction=0.2, seed=3)
    dm.setup("fit")
    train, val = dm.train_cells, dm.val_units.numpy()
    assert not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(data.n_cells))
    for b in range(len(data.batch_names)):
        cells = np.flatnonzero(data.batch_codes == b)
        assert np.isin(val, cells).sum() == round(0.2 * cells.size)
    again = MosaicDataModule(data, validation_fraction=0.2, seed=3)
    again.setup()
    np.testing.assert_array_equal(again.val_units, dm.val_units)
    other = MosaicDataModule(data, validation_fraction=0.2, seed=4)
    other.setup()
    assert not np.array_equal(other.val_units, dm.val_units)
    none = MosaicDataModule(data, validation_fraction=0.0)
    assert len(none.val_dataloader()) == 0


def test_balanced_sampler_is_deterministic_per_seed_and_epoch(data):
    dm = MosaicDataModule(data, batch_size=32, seed=0)
    loader = dm.train_dataloader()
    first = _epoch(dm, 0, loader)
    assert all(len(b) == 32 for b in first)  # full batches, no labelled cells added here
    redo = MosaicDataModule(data, batch_size=32, seed=0)
    assert _epoch(redo, 0) == first
    assert _epoch(MosaicDataModule(data, batch_size=32, seed=1), 0) != first
    second = _epoch(dm, 1, loader)
    assert second != first
    # every epoch gives each batch (sample) about the same share of the slots
    cells = np.concatenate(second)
    shares = np.bincount(data.batch_codes[cells], minlength=3) / cells.size
    np.testing.assert_allclose(shares, 1 / 3, atol=0.02)
    assert set(cells) <= set(dm.train_cells)


def test_unbalanced_sampler_visits_every_training_cell(data):
    dm = MosaicDataModule(data, batch_size=50, balance_batches=False, seed=0)
    cells = np.concatenate(_epoch(dm, 0))
    assert set(cells) == set(dm.train_cells)


def test_labelled_cells_are_added_to_training_steps_only(data):
    dm = MosaicDataModule(data, batch_size=32, labelled_per_batch=8, seed=0)
    dm.setup()
    labelled = set(np.flatnonzero(data.label_codes >= 0)) & set(dm.train_cells)
    assert set(dm.labelled.cells.tolist()) == labelled
    cells = torch.arange(5)
    torch.manual_seed(0)
    out = dm.labelled.add(cells)
    assert out.shape == (13,) and torch.equal(out[:5], cells)
    assert set(out[5:].tolist()) <= labelled
    torch.manual_seed(0)
    assert torch.equal(dm.labelled.add(cells), out)  # the draw follows torch's seed
    assert torch.equal(LabelledCells(np.array([], dtype=int), 8).add(cells), cells)
    # a validation batch: cells sorted by batch, no labelled cells, weighted by the split
    b = dm.transfer_batch_to_device(dm.val_units[:7], torch.device("cpu"), 0)
    assert len(b) == 7 and b.total == dm.n_val_cells
    assert torch.all(b.batch[1:] >= b.batch[:-1])


def test_backed_data_reads_blocks_of_consecutive_cells(tmp_path, mdata, data):
    path = tmp_path / "m.h5mu"
    mdata.write(path)
    backed = MosaicData.from_mudata(
        md.read_h5mu(path, backed=True), batch_key="batch", label_key="some_labels"
    )
    assert backed.backed
    dm = MosaicDataModule(backed, batch_size=64, seed=0)  # blocks of 8 cells, 8 per step
    dm.setup()
    assert dm.table.shape[1] == 8
    steps = _epoch(dm, 0)
    assert all(np.all(np.diff(np.sort(b)) >= 1) for b in steps)
    blocks = [np.asarray(b).reshape(-1, 8) for b in steps if len(b) % 8 == 0]
    assert all(np.all(np.diff(blk, axis=1) == 1) for blk in blocks)
    cells = torch.as_tensor([3, 100, 17])
    on_disk = dm.batch(cells)
    in_memory = MosaicDataModule(data).batch(cells)
    for i in range(len(data.modalities)):
        pos = torch.arange(3)
        torch.testing.assert_close(on_disk.counts(i, pos), in_memory.counts(i, pos))
        assert on_disk.inputs[i].shape == in_memory.inputs[i].shape


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"graph_weight": float("nan")}, "graph_weight=nan"),
        ({"mmd_weight": -5}, "mmd_weight=-5"),
        ({"n_latent": 0}, "n_latent=0"),
        ({"n_latent": "abc"}, "n_latent='abc'"),
        ({"bogus": 1}, "unknown option 'bogus'"),
        ({"encoder_hidden": "a,b"}, "encoder_hidden"),
        ({"mixture": "sum"}, "mixture='sum'"),
    ],
)
def test_bad_options_are_one_line_before_any_work(options, words):
    # not even the data is looked at: the options fail first
    with pytest.raises(InvalidOptionError) as err:
        MosaicModel(object(), batch_key="batch", **options)
    assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InvalidOptionError):
        integrate(object(), **options)


@pytest.mark.parametrize(
    "args",
    [
        ["--param", "bogus=1"],
        ["--param", "n_latent=abc"],
        ["--param", "graph_weight=nan"],
        ["--n-latent", "0"],
    ],
)
def test_cli_bad_options_exit_2_with_one_line(tmp_path, capsys, args):
    out = tmp_path / "out.h5mu"
    code = main(["integrate", str(tmp_path / "never_read.h5mu"), "-o", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "InvalidOption" not in err
    assert "option" in err and not out.exists()


def test_integrate_leaves_obs_unchanged_apart_from_its_keys(mdata):
    data = mdata.copy()
    before = data.obs.copy()
    model = integrate(
        data, batch_key="batch", label_key="cell_type", labelled_fraction=0.2, max_epochs=1,
        key_added="X_mine", return_model=True, train_kwargs={"progress": False}, **FAST,
    )  # fmt: skip
    added = {"mine_label", "mine_label_probability", "mine_cluster"}
    assert set(data.obs.columns) == set(before.columns) | added
    for column in before.columns:
        assert data.obs[column].equals(before[column])
    assert {"X_mine", "mine_clusters", "mine_attention", "mine_label_probabilities"} <= set(
        data.obsm
    )
    assert "X_cellweave" not in data.obsm and "cellweave" not in data.uns
    params = data.uns["X_mine"]["params"]
    assert params["model"]["label_key"] == "<labels>" and params["model"]["n_latent"] == 4
    # the model saw the labels of a stratified 20% of the cells only
    kept = int((model.data.label_codes >= 0).sum())
    assert kept == round(0.2 * data.n_obs)
    assert model.data.label_classes == sorted(data.obs["cell_type"].astype(str).unique())


def test_cli_integrate_never_writes_into_the_input_obs(tmp_path, mdata, monkeypatch):
    path, out = tmp_path / "in.h5mu", tmp_path / "out.h5mu"
    io.write(mdata, path)
    seen = {}

    def read(p, **kwargs):
        seen["data"] = md.read_h5mu(p)
        seen["columns"] = list(seen["data"].obs.columns)
        return seen["data"]

    monkeypatch.setattr("cellweave.cli.integrate.io.read", read)
    code = main(
        ["integrate", str(path), "-o", str(out), "--label-key", "cell_type",
         "--labelled-fraction", "0.2", "--max-epochs", "1", "--no-plot", "--n-latent", "4",
         "--param", "encoder_hidden=16", "--param", "decoder_hidden=8"]
    )  # fmt: skip
    assert code == 0
    added = set(seen["data"].obs.columns) - set(seen["columns"])
    assert added == {"cellweave_label", "cellweave_label_probability", "cellweave_cluster"}


def test_analysis_uses_public_model_methods_only():
    tree = ast.parse(inspect.getsource(analysis))
    imports = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    ]
    assert "model" not in imports  # no import cycle with the model
    private = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "model"
        and (node.attr.startswith("_") or node.attr == "module")
    ]
    assert private == []

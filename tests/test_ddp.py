"""Data-parallel training (Lightning DDP) on CPU with 2 gloo processes: samplers, buffers,
the CLI's ``--devices 2 --strategy ddp`` and a ``CellweaveModule`` under ``ddp_spawn``.

The 2-process runs take a few seconds each to start (Lightning re-runs the command, or spawns
workers that import torch again); the CLI comparison is marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import sparse

from cellweave import io
from cellweave.cli import main
from cellweave.device import parse_training
from cellweave.errors import InvalidOptionError
from cellweave.mosaic import MosaicModel
from cellweave.mosaic.sampling import LabelledCells, UnitSampler
from cellweave.sim import simulate_mosaic
from cellweave.train import CellweaveModule, IndexBatches, fit, index_loader, training_options

FAST = ["--n-latent", "6", "--param", "encoder_hidden=32", "--param", "decoder_hidden=16"]


def _shares(sampler, world: int, *, epoch: int = 0) -> list[list[list[int]]]:
    """Every rank's batches of one epoch (each rank its own copy, as in DDP)."""
    out = []
    for rank in range(world):
        s = sampler(rank)
        if hasattr(s, "set_epoch"):
            s.set_epoch(epoch)
        s.shard(rank, world)
        out.append([list(b) for b in s])
    return out


# ---------------------------------------------------------------------------- samplers


@pytest.mark.parametrize(
    ("n", "batch_size", "steps"), [(50, 8, None), (50, None, 3), (7, 4, None), (3, 1, None)]
)
def test_index_batches_share_every_batch_disjointly_with_equal_steps(n, batch_size, steps):
    def make(rank):
        return IndexBatches(n, batch_size=batch_size, steps_per_epoch=steps, seed=4)

    one = _shares(make, 1)[0]
    two = _shares(make, 2)
    assert len(two[0]) == len(two[1]) == len(one)  # same number of steps on every rank
    for step, batch in enumerate(one):
        a, b = two[0][step], two[1][step]
        assert a and b  # no empty batch
        if len(batch) >= 2:  # disjoint shares that cover the batch one process draws
            assert sorted(a + b) == sorted(batch)
            assert abs(len(a) - len(b)) <= 1
        else:  # a 1-row batch is padded from the epoch's order for the second rank
            assert a == batch
    assert _shares(make, 2) == two  # deterministic per seed
    other = _shares(lambda r: IndexBatches(n, batch_size=batch_size, seed=5), 2)
    if batch_size is not None and batch_size < n:
        assert other != two


def test_index_batches_keep_the_one_process_order():
    """One process draws exactly what the former RandomSampler + BatchSampler drew."""
    from torch.utils.data import BatchSampler, RandomSampler

    g = torch.Generator().manual_seed(3)
    old = RandomSampler(range(10), num_samples=3 * 4, generator=g)
    assert list(IndexBatches(10, batch_size=4, seed=3)) == list(BatchSampler(old, 4, False))
    assert [b.tolist() for b in index_loader(10, batch_size=4, seed=3)] == list(
        IndexBatches(10, batch_size=4, seed=3)
    )


def test_unit_sampler_shards_the_balanced_table_of_each_epoch():
    codes = np.repeat([0, 1, 2], [60, 30, 10])
    cells = np.arange(100)

    def table(epoch):
        rng = np.random.default_rng([1, epoch])
        return torch.as_tensor(rng.permutation(np.where(codes[cells] < 3, cells, 0)))

    for epoch in (0, 1):
        one = _shares(lambda r: UnitSampler(table, batch_size=16, seed=2), 1, epoch=epoch)[0]
        two = _shares(lambda r: UnitSampler(table, batch_size=16, seed=2), 2, epoch=epoch)
        assert len(two[0]) == len(two[1]) == len(one)
        flat = sorted(c for rank in two for b in rank for c in b)
        assert flat == sorted(c for b in one for c in b)  # the epoch covered once
        assert not set(map(tuple, two[0])) & set(map(tuple, two[1]))


def test_labelled_draws_are_seeded_per_rank_and_step():
    labelled = np.arange(100, 200)
    cells = torch.arange(4)
    a = LabelledCells(labelled, 8, seed=0)
    first = a.add(cells, step=3)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(a.add(cells, step=3), first)  # a resumed step draws the same
    assert not torch.equal(a.add(cells, step=4), first)
    b = LabelledCells(labelled, 8, seed=0)
    b.shard(1, 2)
    other = b.add(cells, step=3)
    assert other.numel() == 4 + 4  # per_step shared out over the 2 processes
    assert not torch.equal(other[4:], first[4:8])  # another stream on rank 1
    assert set(other[4:].tolist()) <= set(labelled.tolist())


def test_each_process_reseeds_its_stream_at_every_step():
    """Under DDP the draws of a step depend on (seed, rank, step) only, not on what drew
    from torch's generator before (a resumed run's loader draws at other times)."""
    from types import SimpleNamespace

    from cellweave.train.distributed import Distributed

    callback = Distributed([], seed=3)

    def draws(rank, step, world=2):
        torch.manual_seed(rank * 100 + step + 7)  # whatever state came before
        torch.rand(5)
        trainer = SimpleNamespace(global_rank=rank, world_size=world, global_step=step)
        callback.on_train_batch_start(trainer, None, None, 0)
        return torch.rand(3)

    assert torch.equal(draws(0, 4), draws(0, 4))
    assert not torch.equal(draws(0, 4), draws(1, 4))  # each process its own noise
    assert not torch.equal(draws(0, 4), draws(0, 5))
    # one process: the global stream is left alone (single-process runs as before)
    torch.manual_seed(11)
    expected = torch.rand(3)
    trainer = SimpleNamespace(global_rank=0, world_size=1, global_step=4)
    torch.manual_seed(11)
    callback.on_train_batch_start(trainer, None, None, 0)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------- buffers


@pytest.fixture(scope="module")
def mosaic():
    return simulate_mosaic(
        n_cells=300, n_genes=50, n_peaks=120, n_cell_types=3, latent_dim=3, random_state=0
    )


def test_mosaic_module_has_no_sparse_buffers_and_keeps_its_graph(mosaic):
    model = MosaicModel(mosaic, batch_key="batch", n_latent=4, encoder_hidden=[16])
    module = model.module
    assert model.graph is not None and model.graph.nnz > 0
    for name, buf in module.named_buffers():
        assert not buf.is_sparse, name  # DDP broadcasts buffers: no sparse ones
    assert all(not v.is_sparse for v in module.state_dict().values())
    enc = module.graph
    dense = enc.propagate.to_dense()  # rebuilt from the dense index/value buffers
    assert dense.shape == (enc.n_features, enc.n_features)
    torch.testing.assert_close(dense, dense.T)  # the normalised symmetric adjacency
    torch.testing.assert_close(enc.mean(), dense @ enc.embedding)


# ---------------------------------------------------------------------------- options


def test_device_and_lightning_arguments_combine_or_fail_in_one_line():
    plan = parse_training("cpu", devices=2, strategy="ddp")
    assert (plan.accelerator, plan.devices, plan.n_processes, plan.strategy) == ("cpu", 2, 2, "ddp")
    assert parse_training("auto", accelerator="cpu", devices="2").n_processes == 2
    assert parse_training("cpu").n_processes == 1
    assert parse_training("cpu", precision="bf16-mixed").precision == "bf16-mixed"
    bad = [
        {"accelerator": "banana"},
        {"devices": 0},
        {"devices": "two"},
        {"strategy": "dpp"},
        {"precision": "8-true"},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidOptionError) as err:
            parse_training("cpu", **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(InvalidOptionError, match="contradict"):
        parse_training("cpu", accelerator="gpu")
    with pytest.raises(InvalidOptionError):  # no GPU here (or: cuda:0 names one GPU)
        parse_training("cuda:0", devices=2)
    with pytest.raises(TypeError):
        with training_options(device="cpu"):
            pass


def test_cli_refuses_bad_hardware_options_before_reading(tmp_path, capsys):
    missing = str(tmp_path / "absent.h5mu")  # never read: the options fail first
    for extra in (
        ["--strategy", "banana"],
        ["--devices", "0"],
        ["--device", "cpu", "--accelerator", "gpu"],
    ):
        code = main(["integrate", missing, "-o", str(tmp_path / "o.h5mu"), *extra])
        err = capsys.readouterr().err
        assert code == 2, (extra, err)
        assert len(err.strip().splitlines()) == 1 and "absent" not in err, err


# ---------------------------------------------------------------------------- 2 processes


def _run(cmd: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CELLWEAVE_PROGRESS": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "cellweave", *cmd], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_cli_impute_mf_on_two_processes_matches_one(tmp_path):
    """Full-batch MF: each process takes half the spots and scales its loss by its share, so
    the averaged gradient is the one-process gradient and the imputations agree."""
    import anndata as ad

    _run(["simulate", "spatial", "--out", str(tmp_path), "--n-spots", "200", "--n-genes", "40",
          "--n-ref-cells", "200"])  # fmt: skip
    mf = ["--method", "mf", "--param", "alpha=0.01", "--param", "spatial_weight=0"]
    spatial = str(tmp_path / "spatial.h5ad")
    _run(["impute", spatial, "-o", str(tmp_path / "one.h5ad"), *mf, "--device", "cpu"])
    out = _run(["impute", spatial, "-o", str(tmp_path / "two.h5ad"), *mf, "--device", "cpu",
                "--devices", "2", "--strategy", "ddp"])  # fmt: skip
    assert out.count("wrote ") == 1, out  # the first process writes, the other is quiet
    one, two = (
        ad.read_h5ad(tmp_path / f"{name}.h5ad").layers["imputed"] for name in ("one", "two")
    )
    dense = [np.asarray(x.toarray() if sparse.issparse(x) else x) for x in (one, two)]
    np.testing.assert_allclose(dense[1], dense[0], atol=0.05)


class Line(CellweaveModule):
    """``y = 2x - 1`` by least squares (at module level: spawned workers unpickle it)."""

    def __init__(self) -> None:
        super().__init__(lr=0.05)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, generator=g)
        self.y = 2 * self.x - 1 + 0.1 * torch.randn(64, generator=g)
        self.w = torch.nn.Parameter(torch.zeros(2))

    def move_data(self, device):
        self.x, self.y = self.x.to(device), self.y.to(device)

    def loss(self, index):
        return ((self.w[0] * self.x[index] + self.w[1] - self.y[index]) ** 2).mean()

    def validation_loss(self, index):
        return ((self.w[0] * self.x[index] + self.w[1] - self.y[index]) ** 2).sum()


SPAWNED_FIT = """
import json, sys
import torch
sys.path.insert(0, {tests!r})
from test_ddp import Line
from cellweave.train import fit

if __name__ == "__main__":  # ddp_spawn re-imports the main module in its workers
    module = Line()
    result = fit(module, n_train=64, n_val=64, batch_size=16, max_epochs=4, patience=10,
                 accelerator="cpu", devices=2, strategy="ddp_spawn", seed=0, progress=False)
    with torch.no_grad():
        total = float(module.validation_loss(torch.arange(64)))
    print(json.dumps({{"n_processes": result.n_processes, "zero": result.is_global_zero,
                      "epochs": result.epochs, "steps": result.global_step,
                      "best_epoch": result.best_epoch, "best": result.best_score,
                      "total": total}}))
"""


@pytest.mark.slow
def test_fit_reports_a_spawned_run_and_syncs_validation(tmp_path):
    """``ddp_spawn`` from a user's script, as users run it. Before the ``Distributed``
    callback left the process group in each worker's teardown, about one run in three
    aborted at exit (gloo threads racing the other worker's exit)."""
    script = tmp_path / "spawned_fit.py"
    script.write_text(SPAWNED_FIT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CELLWEAVE_PROGRESS": "0"}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n_processes"] == 2 and result["zero"]
    assert result["epochs"] == [0, 1, 2, 3] and result["steps"] == 4 * 4
    assert result["best_epoch"] is not None
    # the best validation score is the sum over both processes' halves: the loss of all rows
    assert result["best"] == pytest.approx(result["total"], rel=1e-4)


def _cli(path: Path, out: Path, seed: int, *extra: str) -> tuple[dict, str]:
    metrics = out.with_suffix(".json")
    cmd = ["integrate", str(path), "-o", str(out), "--label-key", "cell_type"]
    cmd += ["--labelled-fraction", "0", "--max-epochs", "30", *FAST, "--no-plot"]
    cmd += ["--metrics-json", str(metrics), "--seed", str(seed), "--device", "cpu", *extra]
    stdout = _run(cmd)
    return json.loads(metrics.read_text())["metrics"], stdout


@pytest.mark.slow
def test_cli_integrate_on_two_processes_scores_like_one(tmp_path, mosaic):
    path = tmp_path / "mosaic.h5mu"
    io.write(mosaic, path)
    one = [_cli(path, tmp_path / f"one{s}.h5mu", s)[0] for s in (0, 1)]
    ckpt = tmp_path / "ckpt"
    two, stdout = _cli(
        path, tmp_path / "two.h5mu", 0, "--devices", "2", "--strategy", "ddp",
        "--checkpoint-dir", str(ckpt),
    )  # fmt: skip
    # outputs written once, by the first process; the other exits 0 quietly
    assert stdout.count("wrote ") == 2, stdout  # the .h5mu and the metrics JSON
    assert stdout.count("MosaicModel(") == 1
    assert (ckpt / "last.ckpt").is_file()
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    z = io.read(tmp_path / "two.h5mu").obsm["X_cellweave"]
    assert np.isfinite(np.asarray(z)).all()
    # Within noise of one process. The noise: the spread of the 1-process scores over two
    # seeds; on this small mosaic (300 cells, 30 epochs) bio varies by ~0.1 between seeds, so
    # the 2-process score must lie within the seeds' range widened by that spread (at least
    # 0.1 on these 0..1 scores); a broken run (no sharding, desynchronised ranks, a collapsed
    # latent) falls far outside it.
    for key in ("bio", "batch"):
        lo, hi = sorted(s[key] for s in one)
        margin = max(hi - lo, 0.1)
        assert lo - margin <= two[key] <= hi + margin, (key, one, two)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_fit_on_two_gpus_matches_the_sum_of_validation():
    module = Line()
    result = fit(
        module, n_train=64, n_val=64, batch_size=16, max_epochs=3, patience=10,
        accelerator="gpu", devices=2, strategy="ddp_spawn", seed=0,
    )  # fmt: skip
    assert result.n_processes == 2 and result.device == "cuda"
    with torch.no_grad():
        total = float(module.validation_loss(torch.arange(64)))
    assert result.best_score == pytest.approx(total, rel=1e-4)

"""Checkpoints that survive kill -9 and resume exactly (cellweave.checkpoint, train.fit)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cellweave.checkpoint import CHECKPOINT_NAME, CheckpointError, read_checkpoint
from cellweave.cli import main
from cellweave.train import CellweaveModule, checkpointing, fit

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
import ckpt_worker  # noqa: E402


class Noisy(CellweaveModule):
    """Least squares on minibatches with noise from torch's global generator in the loss
    (so a resume must restore the random states too); optionally crashes at an epoch."""

    def __init__(self, *, seed: int = 0, crash_at: int | None = None, plateau: bool = False):
        super().__init__(lr=0.01)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(64, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 * torch.randn(64, generator=g)
        self.w = torch.nn.Parameter(torch.randn(3, generator=g))
        self.crash_at, self.plateau = crash_at, plateau
        self.seen: list[int] = []

    def loss(self, index):
        noise = 0.01 * torch.randn(())
        return ((self.x[index] @ self.w - self.y[index]) ** 2).mean() + noise

    def validation_loss(self, index):
        if self.plateau and self.current_epoch > 2:
            return torch.ones(()) * 10.0
        return ((self.x[index] @ self.w - self.y[index]) ** 2).sum()

    def on_train_epoch_start(self):
        if self.current_epoch == self.crash_at:
            raise RuntimeError("crash")
        self.seen.append(int(self.current_epoch))


def _fit(module, folder=None, resume=False, epochs=8, **kw):
    return fit(
        module, n_train=64, n_val=64, batch_size=8, max_epochs=epochs, patience=2, seed=0,
        checkpoint_dir=folder, resume=resume, progress=False, **kw,
    )  # fmt: skip


def _done_epochs(path: Path) -> int:
    loops = read_checkpoint(path)["loops"]["fit_loop"]["epoch_progress"]["total"]
    return int(loops["processed"])


@pytest.mark.parametrize("plateau", [False, True])
def test_crashed_run_resumes_to_the_uninterrupted_result(tmp_path, capfd, plateau):
    full = Noisy(plateau=plateau)
    ref = _fit(full)
    with pytest.raises(RuntimeError, match="crash"):
        _fit(Noisy(crash_at=4, plateau=plateau), tmp_path)
    assert _done_epochs(tmp_path / CHECKPOINT_NAME) == 4
    capfd.readouterr()
    resumed = Noisy(plateau=plateau)
    result = _fit(resumed, tmp_path, resume=True)
    err = capfd.readouterr().err
    assert f"resuming from {tmp_path / CHECKPOINT_NAME} at epoch 4" in err
    assert len(err.strip().splitlines()) == 1
    assert resumed.seen == [e for e in full.seen if e >= 4]
    assert result.epochs == ref.epochs[4:]
    assert result.global_step == ref.global_step
    assert (result.best_epoch, result.stopped_early) == (ref.best_epoch, ref.stopped_early)
    assert ref.stopped_early == plateau
    torch.testing.assert_close(resumed.w, full.w, rtol=0, atol=0)


def test_extending_a_finished_run_matches_one_long_run(tmp_path):
    full = Noisy()
    _fit(full, epochs=10, early_stopping=False)
    _fit(Noisy(), tmp_path, epochs=5, early_stopping=False)
    longer = Noisy()
    result = _fit(longer, tmp_path, resume=True, epochs=10, early_stopping=False)
    assert result.epochs == [5, 6, 7, 8, 9]
    torch.testing.assert_close(longer.w, full.w, rtol=0, atol=0)
    # resuming a finished run trains nothing and gives the same weights
    again = Noisy()
    assert _fit(again, tmp_path, resume=True, epochs=10, early_stopping=False).epochs == []
    torch.testing.assert_close(again.w, full.w, rtol=0, atol=0)


def test_a_checkpoint_exists_after_every_epoch_and_no_temp_file(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    seen = []

    class Watch(Noisy):
        def on_train_epoch_start(self):
            super().on_train_epoch_start()
            if self.current_epoch:
                seen.append((self.current_epoch, _done_epochs(path)))

    _fit(Watch(), tmp_path, epochs=5, early_stopping=False)
    assert seen == [(e, e) for e in range(1, 5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]


def test_step_checkpoints_are_written_mid_epoch(tmp_path):
    steps = []

    class Watch(Noisy):
        def on_train_batch_start(self, batch, idx):
            if (tmp_path / CHECKPOINT_NAME).exists():
                steps.append(int(read_checkpoint(tmp_path / CHECKPOINT_NAME)["global_step"]))

    _fit(Watch(), tmp_path, epochs=1, early_stopping=False, checkpoint_every_n_steps=3)
    assert steps == [3, 3, 3, 6, 6]  # 8 steps: written after steps 3 and 6


def test_checkpoint_of_another_model_or_data_is_refused(tmp_path):
    _fit(Noisy(seed=0), tmp_path, epochs=2)
    with pytest.raises(CheckpointError, match="another model or data") as err:
        _fit(Noisy(seed=1), tmp_path, resume=True)  # other data
    assert "\n" not in str(err.value)

    class Other(Noisy):
        pass

    with pytest.raises(CheckpointError, match="another model or data"):
        _fit(Other(seed=0), tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="another model or data"):
        _fit(Noisy(seed=0), tmp_path, resume=True, fingerprint={"n_latent": 3})


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_payload_in_a_crafted_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    _fit(Noisy(), tmp_path, epochs=2)
    path = tmp_path / CHECKPOINT_NAME
    checkpoint = torch.load(path, weights_only=True)
    marker = tmp_path / "payload-ran"
    checkpoint["cellweave"]["evil"] = _Payload(marker)
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="refused to load") as err:
        _fit(Noisy(), tmp_path, resume=True)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_nested_fits_checkpoint_into_numbered_folders(tmp_path):
    with checkpointing(tmp_path, fingerprint={"method": "x"}):
        _fit(Noisy(), epochs=2)
        _fit(Noisy(seed=1), epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit-000", "fit-001"]
    a, b = Noisy(), Noisy(seed=1)
    with checkpointing(tmp_path, resume=True, fingerprint={"method": "x"}):
        assert _fit(a, epochs=2).epochs == []  # finished: restored, not retrained
        assert _fit(b, epochs=3).epochs == [2]
    with (
        checkpointing(tmp_path, resume=True, fingerprint={"method": "y"}),
        pytest.raises(CheckpointError),
    ):
        _fit(Noisy(), epochs=2)


@pytest.mark.parametrize("command", ["impute", "map", "integrate"])
def test_cli_resume_needs_a_checkpoint_dir(tmp_path, capsys, command):
    files = [str(tmp_path / "a.h5ad")] * (2 if command == "map" else 1)
    code = main([command, *files, "-o", str(tmp_path / "o.h5ad"), "--resume"])
    assert code == 2
    assert "--checkpoint-dir" in capsys.readouterr().err
    assert "--checkpoint-dir DIR" in _help(capsys, command) and "--resume" in _help(capsys, command)


def _help(capsys, command: str) -> str:
    main([command, "--help"])
    return capsys.readouterr().out


# ------------------------------------------------------------------ kill -9 (subprocess)


def _worker(kind: str, out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)])}
    cmd = [sys.executable, str(HERE / "ckpt_worker.py"), kind, str(out), *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_mid_training(kind: str, folder: Path, tmp_path: Path, span: float) -> float:
    """Start a run, SIGKILL it at a random point (up to ``span`` seconds) after its first
    checkpoint; returns the delay."""
    proc = _worker(kind, tmp_path / "killed.npy", str(folder), "slow")
    deadline = time.monotonic() + 120
    while not any(folder.rglob(CHECKPOINT_NAME)):
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    delay = random.uniform(0.0, span)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"not killed (delay {delay:.2f} s)"
    assert not (tmp_path / "killed.npy").exists()
    return delay


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["integrate", "impute"])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, capfd, kind):
    folder = tmp_path / "ckpt"
    # the killed run pauses 0.15 s per epoch: integrate early-stops after 10 epochs, impute
    # (mf) trains 5 models (15 + 4 x 3 epochs), so the kill lands mid-training
    delay = _kill_mid_training(kind, folder, tmp_path, span=1.2 if kind == "integrate" else 3.5)
    if kind == "integrate":
        assert not read_checkpoint(folder / CHECKPOINT_NAME)["cellweave"]["finished"], delay
    run = getattr(ckpt_worker, kind)
    run(str(tmp_path / "resumed.npy"), str(folder), True)
    err = capfd.readouterr().err
    assert "cellweave: resuming from" in err
    run(str(tmp_path / "full.npy"), None, False)
    resumed, full = np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "full.npy")
    np.testing.assert_allclose(resumed, full, rtol=1e-5, atol=1e-6, err_msg=f"delay {delay}")
    # the checkpoint now holds a finished run
    for path in folder.rglob(CHECKPOINT_NAME):
        assert read_checkpoint(path)["cellweave"]["finished"]


def _ddp_worker(out: Path, folder: str, *flags: str, tmp: Path) -> subprocess.CompletedProcess:
    """``ckpt_worker.py ddp``: integrate on 2 CPU processes in a session of its own (so that
    ``kill=E`` kills the run's process group, not pytest), ``TMPDIR`` set to ``tmp``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]),
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(tmp),
    }
    cmd = [sys.executable, str(HERE / "ckpt_worker.py"), "ddp", str(out), folder, *flags]
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=600, start_new_session=True
    )


@pytest.mark.slow
def test_ddp_run_killed_after_an_epoch_resumes_bit_identical(tmp_path):
    """2 gloo processes, both SIGKILLed when epoch 3 starts, resumed on 2 processes: the
    latent is bit-identical to an uninterrupted 2-process run (every process reseeds its
    random stream per rank and epoch, the samplers' generators are every process's, so
    rank 0's checkpoint restores both), and no training folder is left in the temp folder."""
    folder, tmp = tmp_path / "ckpt", tmp_path / "tmp"
    tmp.mkdir()
    killed = _ddp_worker(tmp_path / "killed.npy", str(folder), "kill=3", tmp=tmp)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "killed.npy").exists()
    ours = read_checkpoint(folder / CHECKPOINT_NAME)
    assert _done_epochs(folder / CHECKPOINT_NAME) == 3 and not ours["cellweave"]["finished"]
    assert not list(tmp.iterdir())  # the killed processes left nothing in TMPDIR
    resumed = _ddp_worker(tmp_path / "resumed.npy", str(folder), "resume", tmp=tmp)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "cellweave: resuming from" in resumed.stderr
    assert read_checkpoint(folder / CHECKPOINT_NAME)["cellweave"]["finished"]
    full = _ddp_worker(tmp_path / "full.npy", "-", tmp=tmp)
    assert full.returncode == 0, full.stderr[-2000:]
    a, b = np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "full.npy")
    assert a.shape == (160, 4) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not list(tmp.iterdir())


def test_fit_leaves_no_folder_and_clears_empty_leftovers(tmp_path, monkeypatch):
    """fit's Lightning root is a path it never creates; the empty cellweave-train-* folders
    earlier versions left after a kill -9 go at a process's first fit, nothing else does."""
    from cellweave.train import scratch

    monkeypatch.setattr(scratch.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(scratch, "_CLEANED", set())
    (tmp_path / "cellweave-train-abc12345").mkdir()  # an old version's, empty
    busy = tmp_path / "cellweave-train-busy0000"
    busy.mkdir()
    (busy / "hpc_ckpt_1.ckpt").write_text("x")  # not empty: kept
    (tmp_path / "cellweave-train-file0000").write_text("x")  # a file: kept
    (tmp_path / "cellweave-train-link0000").symlink_to(tmp_path / "other", True)  # kept
    (tmp_path / "other").mkdir()  # not ours: kept
    (tmp_path / "cellweave-train-123-abcd0123").mkdir()  # this version's name: kept
    seen = []

    class Watch(Noisy):
        def on_train_epoch_start(self):
            super().on_train_epoch_start()
            seen.append(self.trainer.default_root_dir)

    _fit(Watch(), epochs=2)
    assert seen and all(Path(p).parent == tmp_path for p in seen)
    assert Path(seen[0]).name.startswith(f"cellweave-train-{os.getpid()}-")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["cellweave-train-123-abcd0123", "cellweave-train-busy0000",
                    "cellweave-train-file0000", "cellweave-train-link0000", "other"]  # fmt: skip
    assert not Path(seen[0]).exists()
    # something written there (SLURM's requeue checkpoint) is removed when fit ends
    with scratch.scratch_dir() as root:
        Path(root).mkdir()
        (Path(root) / "hpc_ckpt_1.ckpt").write_text("x")
    assert not Path(root).exists()


def test_gradient_mapping_checkpoints_and_resumes(tmp_path, capfd):
    from cellweave import tl
    from cellweave.sim import simulate_spatial

    sp, ref = simulate_spatial(n_spots=60, n_genes=40, n_ref_cells=80, random_state=3)
    kw = dict(method="gradient", max_epochs=20, random_state=0, device="cpu")
    full = tl.map_cells(ref, sp, **kw)
    first = tl.map_cells(ref, sp, checkpoint_dir=tmp_path, **kw)
    assert (tmp_path / "fit-000" / CHECKPOINT_NAME).exists()
    again = tl.map_cells(ref, sp, checkpoint_dir=tmp_path, resume=True, **kw)
    assert "cellweave: resuming from" in capfd.readouterr().err
    for m in (first, again):
        np.testing.assert_allclose(m.plan.toarray(), full.plan.toarray(), rtol=1e-6, atol=1e-9)
    with pytest.raises(CheckpointError, match="another model or data"):
        tl.map_cells(ref, sp, checkpoint_dir=tmp_path, resume=True, **{**kw, "lr": 0.05})


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before")
def test_mid_epoch_checkpoint_resumes_at_its_step(tmp_path, monkeypatch):
    crash = {"on": True}

    def hook(self, batch, idx):
        if crash["on"] and self.current_epoch == 2 and idx == 5:
            raise RuntimeError("crash")

    monkeypatch.setattr(Noisy, "on_train_batch_start", hook, raising=False)
    with pytest.raises(RuntimeError, match="crash"):
        _fit(Noisy(), tmp_path, early_stopping=False, checkpoint_every_n_steps=4)
    assert read_checkpoint(tmp_path / CHECKPOINT_NAME)["global_step"] == 20  # 2 epochs + 4
    crash["on"] = False
    resumed = Noisy()
    result = _fit(resumed, tmp_path, resume=True, early_stopping=False)
    # the rest of epoch 2 (4 steps) then epochs 3-7: as many steps as an uninterrupted run
    assert result.epochs == [2, 3, 4, 5, 6, 7] and resumed.seen == [3, 4, 5, 6, 7]
    assert result.global_step == 64


def test_cli_impute_checkpoints_resumes_and_refuses_other_options(tmp_path, capsys):
    import anndata as ad

    from cellweave.sim import simulate_spatial

    adata, _ = simulate_spatial(n_spots=80, n_genes=40, random_state=0)
    path, folder = tmp_path / "in.h5ad", tmp_path / "ckpt"
    adata.write_h5ad(path)
    args = ["impute", str(path), "--method", "mf", "--param", "max_epochs=3"]
    args += ["--param", "alpha=1", "--param", "spatial_weight=0.1"]
    assert main([*args, "-o", str(tmp_path / "a.h5ad"), "--checkpoint-dir", str(folder)]) == 0
    assert (folder / "fit-000" / CHECKPOINT_NAME).exists()
    capsys.readouterr()
    out = tmp_path / "b.h5ad"
    assert main([*args, "-o", str(out), "--checkpoint-dir", str(folder), "--resume"]) == 0
    assert "cellweave: resuming from" in capsys.readouterr().err
    a, b = ad.read_h5ad(tmp_path / "a.h5ad"), ad.read_h5ad(out)
    np.testing.assert_array_equal(a.layers["imputed"], b.layers["imputed"])
    other = [*args[:-1], "spatial_weight=0.2", "-o", str(tmp_path / "c.h5ad")]
    assert main([*other, "--checkpoint-dir", str(folder), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "another model or data" in err and len(err.splitlines()) == 1

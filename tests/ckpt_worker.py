"""Subprocess worker of tests/test_checkpoint.py: one training run on tiny simulated data.

``python ckpt_worker.py integrate|impute|ddp OUT.npy [CHECKPOINT_DIR [resume] [slow] [kill=E]]``
trains (with checkpoints when a folder is given) and saves the latent / imputed layer to
``OUT.npy``. ``ddp`` is ``integrate`` on 2 CPU processes (Lightning's ``ddp``: it re-runs this
command for the second one; the first writes ``OUT.npy``); ``kill=E`` SIGKILLs the process
group (every process of the run) when epoch ``E`` starts, after epoch ``E - 1``'s checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import torch

from cellweave import tl
from cellweave.sim import simulate_mosaic, simulate_spatial

INTEGRATE_EPOCHS = 30
IMPUTE_EPOCHS = 15
torch.set_num_threads(1)  # tiny models: threads only contend on a shared machine

TINY = {"encoder_hidden": (32,), "n_embedding": 16, "decoder_hidden": (16,), "n_latent": 4}


def integrate(out: str, checkpoint_dir: str | None, resume: bool, **hardware) -> None:
    mdata = simulate_mosaic(
        n_cells=160,
        batches={"a": ("rna", "atac"), "b": ("rna",), "c": ("atac",)},
        n_genes=30,
        n_peaks=60,
        n_cell_types=3,
        latent_dim=3,
        random_state=0,
    )
    tl.integrate(
        mdata,
        batch_key="batch",
        label_key="cell_type",
        labelled_fraction=0.3,
        max_epochs=INTEGRATE_EPOCHS,
        random_state=0,
        n_clusters=3,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        train_kwargs={
            "progress": False,
            "patience": 3,
            **hardware,
        },
        **TINY,
    )
    from cellweave.train import is_global_zero

    if is_global_zero():
        np.save(out, mdata.obsm["X_cellweave"])


def ddp(out: str, checkpoint_dir: str | None, resume: bool) -> None:
    integrate(out, checkpoint_dir, resume, accelerator="cpu", devices=2, strategy="ddp")


def impute(out: str, checkpoint_dir: str | None, resume: bool) -> None:
    adata, _ = simulate_spatial(n_spots=150, n_genes=40, random_state=0)
    tl.impute(
        adata,
        method="mf",
        random_state=0,
        max_epochs=IMPUTE_EPOCHS,
        n_latent=8,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
    )
    np.save(out, adata.layers["imputed"])


def _slow_epochs(seconds: float) -> None:
    """Pause at the start of every epoch (only the run to be killed: so that the kill lands
    mid-training; the numbers do not change)."""
    from cellweave.checkpoint import EpochCheckpoint

    start = EpochCheckpoint.on_train_epoch_start

    def slow(self, trainer, pl_module):
        time.sleep(seconds)
        start(self, trainer, pl_module)

    EpochCheckpoint.on_train_epoch_start = slow


def _kill_at(epoch: int) -> None:
    """SIGKILL this process's group (the run's processes) when ``epoch`` starts (rank 0)."""
    from cellweave.checkpoint import EpochCheckpoint

    start = EpochCheckpoint.on_train_epoch_start

    def kill(self, trainer, pl_module):
        if trainer.current_epoch == epoch and trainer.is_global_zero:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        start(self, trainer, pl_module)

    EpochCheckpoint.on_train_epoch_start = kill


if __name__ == "__main__":
    kind, out, *rest = sys.argv[1:]
    if "slow" in rest[1:]:
        _slow_epochs(0.15)
    for arg in rest[1:]:
        if arg.startswith("kill="):
            _kill_at(int(arg[5:]))
    folder = rest[0] if rest and rest[0] != "-" else None
    {"integrate": integrate, "impute": impute, "ddp": ddp}[kind](out, folder, "resume" in rest[1:])

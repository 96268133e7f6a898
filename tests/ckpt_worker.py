"""Subprocess worker of tests/test_checkpoint.py: one training run on tiny simulated data.

``python ckpt_worker.py integrate|impute OUT.npy [CHECKPOINT_DIR [resume] [slow]]`` trains (with
checkpoints when a folder is given) and saves the latent / imputed layer to ``OUT.npy``.
"""

from __future__ import annotations

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


def integrate(out: str, checkpoint_dir: str | None, resume: bool) -> None:
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
        },
        **TINY,
    )
    np.save(out, mdata.obsm["X_cellweave"])


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


if __name__ == "__main__":
    kind, out, *rest = sys.argv[1:]
    if "slow" in rest[1:]:
        _slow_epochs(0.15)
    folder = rest[0] if rest else None
    {"integrate": integrate, "impute": impute}[kind](out, folder, "resume" in rest[1:])

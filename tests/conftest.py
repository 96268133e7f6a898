"""Shared fixtures. Real data lives in ../shared/data (never in the repo).

Tests that read it use the ``real_data`` fixture: it skips with a reason when the folder is
absent, and fails instead when ``CELLWEAVE_REAL_DATA=required`` (CI sets it).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REAL_DATA_DIR = Path(
    os.environ.get(
        "CELLWEAVE_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
).resolve()


@pytest.fixture(scope="session")
def real_data():
    """Return a function ``name -> Path`` into the shared real-data folder."""

    def get(name: str) -> Path:
        path = REAL_DATA_DIR / name
        if not path.exists():
            msg = f"real data file {path} is absent"
            if os.environ.get("CELLWEAVE_REAL_DATA") == "required":
                pytest.fail(f"{msg} but CELLWEAVE_REAL_DATA=required")
            pytest.skip(msg)
        return path

    return get


@pytest.fixture(scope="session")
def split_sim():
    """Return a function ``**simulate_spatial options -> dict``: the simulated counts split
    by molecules into ``X1``/``X2``, the coordinates and the true proportions (``truth``)."""
    import numpy as np
    from scipy import sparse

    from cellweave.metrics.denoising import molecular_split
    from cellweave.sim import simulate_spatial

    def make(**options) -> dict:
        spatial, _ = simulate_spatial(**options)
        X = sparse.csr_matrix(spatial.X, dtype=np.float64)
        X1, X2 = molecular_split(X, random_state=0)
        truth = np.asarray(spatial.layers["true_expression"], dtype=np.float64)
        return {
            "X1": X1,
            "X2": X2,
            "coords": np.asarray(spatial.obsm["spatial"]),
            "truth": truth / truth.sum(axis=1, keepdims=True),
        }

    return make


@pytest.fixture(scope="session")
def shallow_split_sim(split_sim):
    """A shallow simulated section (400 counts per spot, no dropout), split by molecules:
    the imputation model tests' known-truth data."""
    return split_sim(
        n_spots=400,
        n_genes=80,
        n_cell_types=4,
        n_domains=3,
        library_size=400.0,
        dropout=0.0,
        n_ref_cells=10,
        random_state=1,
    )


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module's tiny models (threads only contend on a shared
    machine); the previous setting restored after the module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fast_mosaic():
    """A small mosaic model (``MosaicModel`` / ``integrate`` keywords) for the simulator's
    tests: quick to train, as accurate there as the defaults; read-only."""
    from types import MappingProxyType

    return MappingProxyType(
        {"encoder_hidden": (64,), "n_embedding": 32, "decoder_hidden": (32,), "n_latent": 8}
    )

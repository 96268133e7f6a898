"""Cells of the mosaic simulator: cell types, continuous state, latent, batches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .batches import _Config

# --------------------------------------------------------------------------------------------
# cells: cell types, continuous state, latent, batches
# --------------------------------------------------------------------------------------------


@dataclass
class _Cells:
    batch: np.ndarray  # (n,) batch index
    cell_type: np.ndarray  # (n,) type index
    pseudotime: np.ndarray  # (n,) continuous state in [0, 1]
    latent: np.ndarray  # (n, latent_dim) float32
    centres: np.ndarray  # (n_types, latent_dim)
    directions: np.ndarray  # (n_types, latent_dim) unit vectors
    proportions: np.ndarray  # (n_batches, n_types)


def _simulate_cells(cfg: _Config, rng: np.random.Generator) -> _Cells:
    n_types, dim = len(cfg.type_names), cfg.p["latent_dim"]
    centres = rng.normal(size=(n_types, dim))
    directions = rng.normal(size=(n_types, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    proportions = rng.dirichlet(
        np.full(n_types, cfg.p["type_concentration"]), size=len(cfg.batches)
    )
    proportions = np.where(cfg.present, proportions, 0.0)
    proportions /= proportions.sum(axis=1, keepdims=True)

    counts = cfg.batch_counts
    batch = np.concatenate([np.full(counts[b], b, dtype=np.int64) for b in cfg.batch_order])
    cell_type = np.concatenate(
        [rng.choice(n_types, size=int(counts[b]), p=proportions[b]) for b in cfg.batch_order]
    )
    pseudotime = rng.random(batch.size)
    latent = (
        centres[cell_type]
        + (pseudotime - 0.5)[:, None] * cfg.p["trajectory_length"] * directions[cell_type]
        + rng.normal(scale=cfg.p["within_type_sd"], size=(batch.size, dim))
    )
    return _Cells(
        batch=batch,
        cell_type=cell_type,
        pseudotime=pseudotime.astype(np.float32),
        latent=latent.astype(np.float32),
        centres=centres,
        directions=directions,
        proportions=proportions,
    )


def _obs_frame(cfg: _Config, cells: _Cells) -> pd.DataFrame:
    n = cells.batch.size
    width = len(str(n - 1))
    return pd.DataFrame(
        {
            "batch": pd.Categorical.from_codes(cells.batch, categories=cfg.batch_names),
            "cell_type": pd.Categorical.from_codes(cells.cell_type, categories=cfg.type_names),
            "pseudotime": cells.pseudotime,
        },
        index=pd.Index([f"cell_{i:0{width}d}" for i in range(n)]),
    )

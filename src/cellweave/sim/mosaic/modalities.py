"""Per-modality likelihoods of the mosaic simulator, drawn one chunk of cells at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import brentq

from .._counts import sample_nb
from .batches import MODALITIES, _Config
from .cells import _Cells
from .genome import _Features

_COUNT_MODALITIES = ("rna", "atac", "protein")
_CALIBRATION_CELLS = 1000
_CALIBRATION_PEAKS = 2000

# --------------------------------------------------------------------------------------------
# per-modality likelihoods, one chunk of cells at a time
# --------------------------------------------------------------------------------------------


@dataclass
class _ModalityModel:
    """Everything needed to draw one modality for a chunk of cells."""

    var: pd.DataFrame
    loadings: np.ndarray  # (latent_dim, n_features) float32
    baseline: np.ndarray  # (n_features,) float32
    shift: np.ndarray  # (n_batches, n_features) float32
    cell_factor: np.ndarray  # (n_cells,) library size / depth (linear scale)
    draw: Callable[..., tuple]  # (values, means) or (values, means, {layer: values})


def _draw_rna(model, z, factor, shift, rng, *, dispersion: float):
    """NB counts around ``library * softmax(baseline + z W + shift)``."""
    eta = z @ model.loadings + (model.baseline + shift)
    eta -= eta.max(axis=1, keepdims=True)
    prob = np.exp(eta)
    prob /= prob.sum(axis=1, keepdims=True)
    mean = prob * factor[:, None]
    return sample_nb(mean, dispersion, rng), mean


def _sigmoid_(x: np.ndarray) -> np.ndarray:
    """Logistic function computed in place (``0.5 * tanh(x / 2) + 0.5``, no overflow)."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


def _draw_atac(model, z, factor, shift, rng):
    """Bernoulli accessibility with probability ``sigmoid(baseline + z V + shift + log depth)``."""
    prob = z @ model.loadings
    prob += model.baseline + shift
    prob += np.log(factor)[:, None]
    _sigmoid_(prob)
    return rng.random(prob.shape, dtype=np.float32) < prob, prob


def _draw_protein(model, z, factor, shift, rng, *, background_prob: float, dispersion: float):
    """totalVI-like mixture: background ``NB(s * beta)`` with probability ``background_prob``,
    else foreground ``NB(s * beta * (1 + exp(baseline + z U)))``; ``s = library * exp(shift)``.
    """
    foreground = np.exp(z @ model.loadings + model.baseline)
    scale = factor[:, None] * (model.var["background_mean"].to_numpy(np.float32) * np.exp(shift))
    is_background = rng.random(foreground.shape) < background_prob
    counts = sample_nb(scale * np.where(is_background, 1.0, 1.0 + foreground), dispersion, rng)
    return counts, scale * (1.0 + (1.0 - background_prob) * foreground)


def _dense_to_csr(values: np.ndarray) -> sp.csr_matrix:
    """CSR float32 copy of a dense chunk (int32 indices while they fit)."""
    rows, cols = np.nonzero(values)
    index_dtype = np.int32 if rows.size < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(values.shape[0] + 1, dtype=index_dtype)
    np.cumsum(np.bincount(rows, minlength=values.shape[0]), out=indptr[1:])
    data = values[rows, cols].astype(np.float32)
    return sp.csr_matrix((data, cols.astype(index_dtype), indptr), shape=values.shape)


def _cell_factor(mean: float, sd: float, scale: np.ndarray, batch: np.ndarray, rng) -> np.ndarray:
    """Log-normal per-cell factor with the given mean, times the cell's batch scale."""
    return (mean * scale[batch] * rng.lognormal(-0.5 * sd**2, sd, batch.size)).astype(np.float32)


def _calibrate_atac(
    model: _ModalityModel, cells: _Cells, candidates: np.ndarray, target: float, rng
) -> float:
    """Logit offset that makes the mean open probability equal ``target``, estimated on a
    random subsample of cells and peaks."""
    pick = rng.choice(candidates, size=min(candidates.size, _CALIBRATION_CELLS), replace=False)
    n_peaks = model.loadings.shape[1]
    peaks = np.sort(rng.choice(n_peaks, size=min(n_peaks, _CALIBRATION_PEAKS), replace=False))
    lin = cells.latent[pick] @ model.loadings[:, peaks]
    lin += model.baseline[peaks] + model.shift[cells.batch[pick]][:, peaks]
    lin += np.log(model.cell_factor[pick])[:, None]

    def excess(offset: float) -> float:
        return float(_sigmoid_(lin + np.float32(offset)).mean()) - target

    return float(brentq(excess, -40.0, 40.0, xtol=1e-4))


def _build_models(
    cfg: _Config, cells: _Cells, features: _Features, rng: np.random.Generator
) -> tuple[dict[str, _ModalityModel], np.ndarray, float | None]:
    """Batch shifts, size factors and likelihoods of RNA, ATAC and protein; returns the models,
    the (n_batches, 3) library scales and the calibrated ATAC logit offset."""
    p, n_batches = cfg.p, len(cfg.batches)
    used = [m for m in cfg.used_mods if m in _COUNT_MODALITIES]  # methylation: its own stream
    shifts = {
        m: rng.normal(scale=p["batch_effect"], size=(n_batches, len(features.var[m]))) for m in used
    }
    library_scale = np.exp(rng.normal(scale=p["library_batch_sd"], size=(n_batches, 3)))
    factors = {
        "rna": (p["rna_library_size"], p["rna_library_sd"]),
        "atac": (1.0, p["atac_depth_sd"]),
        "protein": (1.0, p["protein_library_sd"]),
    }
    factors = {
        m: _cell_factor(mean, sd, library_scale[:, MODALITIES.index(m)], cells.batch, rng)
        for m, (mean, sd) in factors.items()
    }
    draws = {
        "rna": partial(_draw_rna, dispersion=p["rna_dispersion"]),
        "atac": _draw_atac,
        "protein": partial(
            _draw_protein,
            background_prob=p["protein_background_prob"],
            dispersion=p["protein_dispersion"],
        ),
    }
    models = {
        m: _ModalityModel(
            var=features.var[m].copy(),
            loadings=features.loadings[m].astype(np.float32),
            baseline=features.baselines[m].astype(np.float32),
            shift=shifts[m].astype(np.float32),
            cell_factor=factors[m],
            draw=draws[m],
        )
        for m in used
    }
    offset = None
    if "atac" in models:
        atac = models["atac"]
        candidates = np.flatnonzero(np.isin(cells.batch, cfg.measured("atac")))
        offset = _calibrate_atac(atac, cells, candidates, p["atac_open_fraction"], rng)
        atac.baseline = (atac.baseline + offset).astype(np.float32)
    for model in models.values():
        model.var["true_baseline"] = model.baseline
    return models, library_scale, offset


def _generate_blocks(
    model: _ModalityModel,
    cells: _Cells,
    batch_ids: list[int],
    *,
    seed: int,
    mod_index: int,
    chunk_size: int,
    store_means: bool,
) -> dict[int, tuple[sp.csr_matrix, np.ndarray | None, dict[str, sp.csr_matrix]]]:
    """Values (CSR float32), means and extra layers (CSR; e.g. methylation coverage) for every
    cell of each batch in ``batch_ids``.

    Each (batch, modality) pair has its own random stream, so a batch's values do not depend
    on which other batches are generated; cells are drawn ``chunk_size`` at a time.
    """
    blocks = {}
    for b in batch_ids:
        rng = np.random.default_rng([seed, b, mod_index])
        rows = np.flatnonzero(cells.batch == b)
        xs, means, extra = [], [], {}
        for start in range(0, rows.size, chunk_size):
            chunk = rows[start : start + chunk_size]
            drawn = model.draw(
                model, cells.latent[chunk], model.cell_factor[chunk], model.shift[b], rng
            )
            xs.append(_dense_to_csr(drawn[0]))
            if store_means:
                means.append(drawn[1].astype(np.float32, copy=False))
            for key, values in (drawn[2] if len(drawn) > 2 else {}).items():
                extra.setdefault(key, []).append(_dense_to_csr(values))
        x = xs[0] if len(xs) == 1 else sp.vstack(xs, format="csr")
        layers = {k: sp.vstack(v, format="csr") for k, v in extra.items()}
        blocks[b] = (x, np.concatenate(means) if store_means else None, layers)
    return blocks

"""Parameters of the mosaic simulator: constants, batch specs (which modalities each batch
measures, its size, missing cell types) and the validated configuration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import InputError

MODALITIES = ("rna", "atac", "protein", "methylation")
DEFAULT_BATCHES: dict[str, tuple[str, ...]] = {
    "paired": ("rna", "atac"),
    "rna_only": ("rna",),
    "atac_only": ("atac",),
}

_AUTO_STORE_MEANS_MAX_CELLS = 20_000
# parameter checks: name -> minimum for integers; name -> allowed interval for floats
_INT_MIN = {
    "n_cells": 1,
    "n_genes": 1,
    "n_cell_types": 1,
    "latent_dim": 1,
    "n_chromosomes": 1,
    "prior_window": 0,
    "chunk_size": 1,
}
_FLOAT_RANGE = {
    **dict.fromkeys(
        (
            "trajectory_length",
            "within_type_sd",
            "batch_effect",
            "library_batch_sd",
            "rna_library_sd",
            "atac_depth_sd",
            "protein_library_sd",
            "links_per_gene",
            "link_noise",
            "protein_noise",
            "methylation_depth_sd",
        ),
        "[0, inf)",
    ),
    **dict.fromkeys(
        (
            "type_concentration",
            "rna_library_size",
            "rna_dispersion",
            "protein_background",
            "protein_foreground_fold",
            "protein_dispersion",
            "methylation_coverage",
            "methylation_concentration",
        ),
        "(0, inf)",
    ),
    "methylation_link_fraction": "[0, 1]",
    "double_link_fraction": "[0, 1]",
    "negative_link_fraction": "[0, 1]",
    "protein_background_prob": "[0, 1)",
    "atac_open_fraction": "(0, 1)",
}


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _check_int(name: str, value: object, minimum: int) -> int:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    _require(ok and value >= minimum, f"{name}={value!r} is invalid: pass an integer >= {minimum}")
    return int(value)


def _check_float(name: str, value: object, interval: str) -> float:
    """Check that ``value`` is a finite number in ``interval``, e.g. ``"[0, 1)"``."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    ok = ok and bool(np.isfinite(value))
    ok = ok and (value >= low if interval[0] == "[" else value > low)
    ok = ok and (value <= high if interval[-1] == "]" else value < high)
    _require(ok, f"{name}={value!r} is invalid: pass a finite number in {interval}")
    return float(value)


def _check_batches(batches: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    if batches is None:
        return dict(DEFAULT_BATCHES)
    _require(
        isinstance(batches, Mapping) and len(batches) > 0,
        "batches must be a non-empty dict batch name -> measured modalities, "
        "e.g. {'paired': ('rna', 'atac'), 'rna_only': ('rna',)}",
    )
    out: dict[str, tuple[str, ...]] = {}
    for name, mods in batches.items():
        _require(
            isinstance(name, str) and name != "",
            f"batch name {name!r} is invalid: use non-empty strings as batch names",
        )
        mods = (mods,) if isinstance(mods, str) else tuple(mods)
        unknown = [m for m in mods if m not in MODALITIES]
        if unknown:
            raise InputError(
                f"batch {name!r} lists unknown modality {unknown[0]!r}: "
                f"use a subset of {list(MODALITIES)}"
            )
        _require(
            len(mods) > 0,
            f"batch {name!r} measures no modality: give it at least one of {list(MODALITIES)}",
        )
        twice = sorted({m for m in mods if mods.count(m) > 1})
        _require(
            not twice,
            f"batch {name!r} lists modality {twice[0]!r} twice: list each modality once"
            if twice
            else "",
        )
        out[name] = tuple(m for m in MODALITIES if m in mods)
    return out


def _batch_counts(
    n_cells: int, names: list[str], batch_sizes: Mapping[str, float] | Sequence[float] | None
) -> np.ndarray:
    """Cells per batch from fractions (largest-remainder rounding)."""
    n_batches = len(names)
    if batch_sizes is None:
        fractions = np.full(n_batches, 1.0 / n_batches)
    elif isinstance(batch_sizes, Mapping):
        _require(
            set(batch_sizes) == set(names),
            f"batch_sizes keys {sorted(batch_sizes)} do not match the batches {names}: "
            "give one fraction per batch",
        )
        fractions = np.array([batch_sizes[n] for n in names], dtype=np.float64)
    else:
        fractions = np.asarray(list(batch_sizes), dtype=np.float64)
        _require(
            fractions.shape == (n_batches,),
            f"batch_sizes has {fractions.size} entries but there are {n_batches} batches: "
            "give one fraction per batch, in the order of batches",
        )
    _require(
        bool(np.all(np.isfinite(fractions)) and np.all(fractions > 0)),
        "batch_sizes must be positive fractions: give every batch a fraction > 0",
    )
    _require(
        abs(fractions.sum() - 1.0) < 1e-3,
        f"batch_sizes sum to {fractions.sum():.4g}, not 1: pass fractions that sum to 1",
    )
    raw = fractions * n_cells
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n_cells - counts.sum()]] += 1
    empty = [names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise InputError(
            f"batch {empty[0]!r} gets 0 of n_cells={n_cells} cells: "
            "increase n_cells or its fraction"
        )
    return counts


def _type_names(n_types: int) -> list[str]:
    width = len(str(n_types - 1))
    return [f"type_{k:0{width}d}" for k in range(n_types)]


def _type_index(batch: str, t: object, type_names: list[str]) -> int:
    if isinstance(t, int | np.integer) and not isinstance(t, bool) and 0 <= t < len(type_names):
        return int(t)
    if isinstance(t, str) and t in type_names:
        return type_names.index(t)
    raise InputError(
        f"missing_types[{batch!r}] names unknown cell type {t!r}: "
        f"use names {type_names[0]!r}..{type_names[-1]!r} or indices"
    )


def _check_missing_types(
    missing_types: Mapping[str, Sequence[str | int]] | None,
    batch_names: list[str],
    type_names: list[str],
) -> np.ndarray:
    """Boolean (n_batches, n_types) mask of the types present in each batch."""
    present = np.ones((len(batch_names), len(type_names)), dtype=bool)
    if missing_types is None:
        return present
    _require(
        isinstance(missing_types, Mapping),
        "missing_types must be a dict batch name -> cell types to leave out of that batch",
    )
    for batch, types in missing_types.items():
        _require(
            batch in batch_names,
            f"missing_types names unknown batch {batch!r}: use one of {batch_names}",
        )
        types = [types] if isinstance(types, str | int | np.integer) else list(types)
        for t in types:
            present[batch_names.index(batch), _type_index(batch, t, type_names)] = False
    empty = [batch_names[i] for i in np.flatnonzero(~present.any(axis=1))]
    if empty:
        raise InputError(
            f"missing_types removes every cell type from batch {empty[0]!r}: keep at least one"
        )
    absent = [type_names[k] for k in np.flatnonzero(~present.any(axis=0))]
    if absent:
        raise InputError(
            f"missing_types removes cell type {absent[0]!r} from every batch: "
            "keep it in at least one batch or lower n_cell_types"
        )
    return present


@dataclass(frozen=True)
class _Config:
    """Validated parameters."""

    batches: dict[str, tuple[str, ...]]
    batch_counts: np.ndarray  # cells per batch, in the order of ``batches``
    batch_order: list[int]  # order of the batches' cell blocks
    used_mods: list[str]
    type_names: list[str]
    present: np.ndarray  # (n_batches, n_types) cell types present per batch
    p: dict[str, int | float | bool]  # numeric parameters
    missing_types_given: bool

    @property
    def batch_names(self) -> list[str]:
        return list(self.batches)

    def measured(self, mod: str) -> list[int]:
        """Batches (in block order) that measure ``mod``."""
        return [b for b in self.batch_order if mod in self.batches[self.batch_names[b]]]


def _validate(params: dict[str, object]) -> _Config:
    batches = _check_batches(params["batches"])
    names = list(batches)
    used_mods = [m for m in MODALITIES if any(m in mods for mods in batches.values())]
    p: dict[str, int | float | bool] = {
        name: _check_int(name, params[name], low) for name, low in _INT_MIN.items()
    }
    p["n_peaks"] = _check_int("n_peaks", params["n_peaks"], int("atac" in used_mods))
    p["n_proteins"] = _check_int("n_proteins", params["n_proteins"], int("protein" in used_mods))
    p["n_regions"] = _check_int("n_regions", params["n_regions"], int("methylation" in used_mods))
    if "protein" in used_mods:
        _require(
            p["n_proteins"] <= p["n_genes"],
            f"n_proteins={p['n_proteins']} exceeds n_genes={p['n_genes']}: each protein is the "
            "product of a distinct gene; lower n_proteins or raise n_genes",
        )
    for mod, key in (("atac", "n_peaks"), ("protein", "n_proteins"), ("methylation", "n_regions")):
        if mod not in used_mods:
            p[key] = 0  # features of an unmeasured modality are not simulated
    for name, interval in _FLOAT_RANGE.items():
        p[name] = _check_float(name, params[name], interval)
    store_means = params["store_means"]
    _require(
        store_means is None or isinstance(store_means, bool),
        f"store_means={store_means!r} is invalid: pass True, False or None (automatic)",
    )
    _require(
        isinstance(params["return_full"], bool),
        f"return_full={params['return_full']!r} is invalid: pass True or False",
    )
    p["store_means"] = (
        p["n_cells"] <= _AUTO_STORE_MEANS_MAX_CELLS if store_means is None else store_means
    )
    type_names = _type_names(p["n_cell_types"])
    # cells are grouped by batch; batches are ordered by their first measured modality, so the
    # MuData (which lists cells modality by modality) keeps the grouping
    order = sorted(range(len(names)), key=lambda b: (used_mods.index(batches[names[b]][0]), b))
    return _Config(
        batches=batches,
        batch_counts=_batch_counts(p["n_cells"], names, params["batch_sizes"]),
        batch_order=order,
        used_mods=used_mods,
        type_names=type_names,
        present=_check_missing_types(params["missing_types"], names, type_names),
        p=p,
        missing_types_given=params["missing_types"] is not None,
    )

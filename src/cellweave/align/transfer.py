"""``transfer_features``: carry section b's features onto section a's spots through an alignment.

After ``align_sections(adata_a, adata_b)`` (e.g. a is RNA, b a protein panel of an adjacent
section), every spot of a that the matching reached gets the barycentric average of b's
features over its matched spots (weights: the plan's mass); a spot the (partial) matching left
out takes the nearest spot of b after alignment when one lies within ``radius`` spot
spacings, and NaN otherwise. The result is a spots x features DataFrame in
``adata_a.obsm[key_added]`` (default ``"protein"``), the form a mapping model reads as another
modality of the section (``modality_key="protein"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._params import params_entry
from ..errors import EmptyDataError, InputError, MissingKeyError
from ..graph import nearest_neighbors
from ..validate import check_finite, get_matrix

__all__ = ["SOURCES", "transfer_features"]

#: How each spot of a got its values, in ``obs[f"{key_added}_source"]``.
SOURCES = ("matched", "nearest", "none")


def transfer_features(
    adata_a: AnnData,
    adata_b: AnnData,
    *,
    features: Sequence[str] | None = None,
    key: str = "alignment",
    key_added: str = "protein",
    layer: str | None = None,
    radius: float = 1.0,
    copy: bool = False,
) -> AnnData | None:
    """Write section b's features onto section a's spots through the alignment's matching
    (barycentric average over the matched spots of b).

    Parameters
    ----------
    adata_a
        The reference section of the alignment (its spots receive the values).
    adata_b
        The aligned section, with ``uns[key]`` written by ``align_sections(adata_a, adata_b)``
        (its spots unchanged since).
    features
        Features of ``adata_b`` to carry (default: all).
    key
        ``key_added`` of the alignment (default: the latest one).
    key_added
        ``obsm[key_added]`` (DataFrame spots x features), ``obs[f"{key_added}_source"]``
        (``"matched"``, ``"nearest"`` or ``"none"``) and ``uns[key_added]`` (params and counts)
        of ``adata_a``.
    layer
        Read ``adata_b.layers[layer]`` instead of ``X`` (values carried as they are stored).
    radius
        Spots of a without a match take the nearest aligned spot of b within this many spot
        spacings (``0``: none; ``float("inf")``: every spot gets a value); the others get NaN.
    copy
        Return a changed copy of ``adata_a`` instead of writing into it.

    Returns
    -------
    The changed copy of ``adata_a`` with ``copy=True``, else ``None``.

    Raises
    ------
    MissingKeyError
        ``adata_b`` has no alignment under ``key`` (or one without a matching), or a feature is
        absent.
    InputError
        The alignment was made against other spots than ``adata_a``'s or ``adata_b``'s, or
        ``radius`` is not a number >= 0.
    EmptyDataError
        The matching matched no spot.
    """
    if isinstance(radius, bool) or not (isinstance(radius, int | float) and radius >= 0):
        raise InputError(f"radius={radius!r} is not a number >= 0: pass e.g. radius=1.0")
    info = _alignment(adata_a, adata_b, key)
    names = _features(adata_b, features)
    X = get_matrix(adata_b, layer=layer, name="adata_b")[:, adata_b.var_names.get_indexer(names)]
    X = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    check_finite(X, name="adata_b" if layer is None else f"adata_b.layers[{layer!r}]")
    weights = sp.csr_matrix(info["matching"], dtype=np.float64).T.tocsr()  # n_a x n_b
    mass = np.asarray(weights.sum(axis=1)).ravel()
    matched = mass > 0
    values = np.full((adata_a.n_obs, len(names)), np.nan)
    values[matched] = (weights[matched] @ X) / mass[matched, None]
    source = np.where(matched, SOURCES[0], SOURCES[2]).astype(object)
    nearest = _nearest(adata_a, adata_b, info, ~matched, radius)
    for spot, partner in nearest.items():
        values[spot], source[spot] = X[partner], SOURCES[1]
    target = adata_a.copy() if copy else adata_a
    target.obsm[key_added] = pd.DataFrame(values, index=target.obs_names, columns=names)
    target.obs[f"{key_added}_source"] = pd.Categorical(source, categories=list(SOURCES))
    counts = {name: int((source == name).sum()) for name in SOURCES}
    params = {"key": key, "layer": layer if layer is not None else "X", "radius": radius}
    params.update(n_features=len(names), key_added=key_added)
    target.uns[key_added] = params_entry(params, **{f"n_{k}": v for k, v in counts.items()})
    return target if copy else None


def _alignment(adata_a: AnnData, adata_b: AnnData, key: str) -> dict:
    """The alignment entry of ``adata_b``, checked against both sections."""
    info = adata_b.uns.get(key)
    if not isinstance(info, dict) or "matching" not in info:
        raise MissingKeyError(
            f"adata_b.uns[{key!r}] holds no alignment matching: run "
            "cellweave.tl.align_sections(adata_a, adata_b) first (or pass key= its key_added)"
        )
    matching = info["matching"]
    shape = (adata_b.n_obs, adata_a.n_obs)
    if not sp.issparse(matching) or matching.shape != shape:
        found = getattr(matching, "shape", None)
        raise InputError(
            f"the matching in adata_b.uns[{key!r}] has shape {found}, not spots of b x spots of "
            f"a {shape}: pass the sections as they were aligned (no spot added or removed)"
        )
    reference = info.get("reference_obs_names")
    if reference is not None and not np.array_equal(
        np.asarray(reference, dtype=str), np.asarray(adata_a.obs_names, dtype=str)
    ):
        raise InputError(
            f"adata_b.uns[{key!r}] was aligned onto other spots than adata_a's: pass the "
            "section it was aligned onto, with its spots in the same order"
        )
    if sp.csr_matrix(matching).count_nonzero() == 0:
        raise EmptyDataError(
            f"the matching in adata_b.uns[{key!r}] matched no spot: align the sections again "
            "(e.g. with a larger overlap)"
        )
    return info


def _features(adata_b: AnnData, features: Sequence[str] | None) -> list[str]:
    if features is None:
        return list(map(str, adata_b.var_names))
    names = [str(f) for f in features]
    missing = [f for f in names if f not in adata_b.var_names]
    if missing or not names:
        raise MissingKeyError(
            f"{len(missing)} of the {len(names)} features are not in adata_b.var_names (e.g. "
            f"{missing[:3]}): pass names of adata_b's features, or features=None for all"
        )
    return names


def _nearest(adata_a, adata_b, info: dict, unmatched: np.ndarray, radius: float) -> dict:
    """Unmatched spot of a -> the nearest aligned spot of b within ``radius`` spacings."""
    params = info.get("params", {})
    coords_key = params.get("key_added", "spatial_aligned")
    spatial_key = params.get("spatial_key", "spatial")
    if radius == 0 or not unmatched.any() or coords_key not in adata_b.obsm:
        return {}
    if spatial_key not in adata_a.obsm:
        return {}
    spots = np.flatnonzero(unmatched)
    query = np.asarray(adata_a.obsm[spatial_key], dtype=np.float64)[spots]
    aligned = np.asarray(adata_b.obsm[coords_key], dtype=np.float64)
    dist, idx = nearest_neighbors(aligned, 1, query=query)
    close = dist[:, 0] <= radius * float(info.get("spacing", 1.0))
    return dict(zip(spots[close].tolist(), idx[close, 0].tolist(), strict=True))

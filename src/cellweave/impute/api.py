"""``tl.impute``: denoise spatial counts with any registered method."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from anndata import AnnData
from scipy import sparse

from ..errors import InputError
from ..image import spot_image_features
from ..validate import check_adata, check_spatial
from .registry import get_method

__all__ = ["impute", "predict_proportions"]


def predict_proportions(
    adata: AnnData,
    *,
    method: str = "auto",
    layer: str | None = None,
    spatial_key: str = "spatial",
    random_state: int = 0,
    **params: Any,
) -> np.ndarray:
    """Expected expression proportions per spot (rows sum to 1) from a registered method.

    Validates the input as :func:`impute` does and returns ``P`` without writing anything.
    """
    spec = get_method(method)
    X = check_adata(adata, layer=layer, require_counts=True, allow_zero_cells=True)
    if isinstance(params.get("similarity_features"), str):
        params = _image_similarity(adata, spatial_key=spatial_key, **params)
    coords = None
    if spec.spatial or spatial_key in adata.obsm:
        coords = (
            check_spatial(adata, spatial_key=spatial_key)
            if spec.spatial
            else (np.asarray(adata.obsm[spatial_key], dtype=np.float64))
        )
    X1 = sparse.csr_matrix(X, dtype=np.float64)
    return spec.fn(X1, coords=coords, random_state=random_state, **params)


def _image_similarity(adata: AnnData, *, spatial_key: str, **params: Any) -> dict[str, Any]:
    """``similarity_features="image"``: gate by the histology under each spot."""
    source = params["similarity_features"]
    if source != "image":
        raise InputError(
            f"similarity_features={source!r} is unknown; pass 'image' (the histology in "
            "uns['spatial']) or an (n_spots, k) array"
        )
    params["similarity_features"] = spot_image_features(adata, spatial_key=spatial_key)
    params.setdefault("similarity", "gaussian")
    return params


def impute(
    adata: AnnData,
    *,
    method: str = "auto",
    layer: str | None = None,
    spatial_key: str = "spatial",
    key_added: str = "imputed",
    target_sum: float = 1e4,
    random_state: int = 0,
    copy: bool = False,
    **params: Any,
) -> AnnData | None:
    """Denoise spatial counts; write ``layers[key_added]`` on the log1p-normalized scale.

    Parameters
    ----------
    adata
        Spots x genes with raw counts in ``X`` (or ``layers[layer]``) and, for spatial
        methods, coordinates in ``obsm[spatial_key]``.
    method
        A registered method (``cellweave.impute.METHODS``); ``"auto"`` is the measured best
        default (see ``benchmarks/results/impute.md``).
    layer
        Layer holding the counts (``X`` when ``None``).
    spatial_key
        Key of the coordinates in ``obsm``.
    key_added
        Layer to write: ``log1p(target_sum * P)`` where ``P`` are the predicted expression
        proportions of each spot; the proportions themselves are not stored.
    target_sum
        Scale of the normalisation (as ``sc.pp.normalize_total``).
    random_state
        Seed; the same seed gives the same result.
    copy
        Return a modified copy instead of writing into ``adata``.
    **params
        Options of the method (e.g. ``spatial_weight``, ``n_latent``). For the spatial
        methods, ``similarity="gaussian"``/``"correlation"`` restricts smoothing to
        neighbours with similar expression; ``similarity_features="image"`` gates by the
        histology image in ``uns["spatial"]`` instead (colour under each spot, see
        :func:`cellweave.image.spot_image_features`; ``similarity`` then defaults to
        ``"gaussian"``), or pass an ``(n_spots, k)`` array of any features.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes ``layers[key_added]`` (float32)
    and ``uns["impute"]`` with ``params`` (method, options, seed, seconds).

    Raises
    ------
    InputError
        Not raw counts, NaN/inf, duplicate names, no coordinates for a spatial method, or an
        unknown method — each with a one-line message naming the fix.
    """
    start = time.perf_counter()
    if isinstance(params.get("similarity_features"), str):
        params.setdefault("similarity", "gaussian")
    P = predict_proportions(
        adata,
        method=method,
        layer=layer,
        spatial_key=spatial_key,
        random_state=random_state,
        **params,
    )
    adata = adata.copy() if copy else adata
    adata.layers[key_added] = np.log1p(target_sum * P).astype(np.float32)
    adata.uns["impute"] = {
        "params": {
            "method": method,
            "layer": "X" if layer is None else layer,
            "spatial_key": spatial_key,
            "key_added": key_added,
            "target_sum": float(target_sum),
            "random_state": int(random_state),
            **{k: _plain(v) for k, v in params.items() if k != "similarity_features"},
            **(
                {"similarity_features": params["similarity_features"]}
                if isinstance(params.get("similarity_features"), str)
                else {}
            ),
        },
        "seconds": float(time.perf_counter() - start),
    }
    return adata if copy else None


def _plain(value: Any) -> Any:
    """Parameters as h5ad-writable scalars/lists."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, str | int | float | bool) else str(value)

"""``tl.impute``: denoise spatial counts with any registered method.

Order of work: the method and its options are checked first (:meth:`Method.check_options`,
nothing read yet), then the data once (:func:`cellweave.validate.check_adata`: counts,
finite, names; the matrix becomes CSR float64 here and every function below trusts it),
then the method runs and the result is written under ``key_added``.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._params import jsonable
from ..errors import CellweaveWarning, InputError, InvalidOptionError, MissingKeyError
from ..image import spot_image_features
from ..train import checkpointing
from ..validate import check_adata, check_min_obs, check_seed, check_spatial
from .proportions import check_counts
from .registry import ImputeMethod, get_method

__all__ = ["DEFAULT_KEY", "DEFAULT_LAYER", "MIN_SPOTS", "impute", "predict_proportions"]

#: Layer ``impute`` writes when no ``key_added`` is given.
DEFAULT_LAYER = "imputed"
#: Key of the ``uns`` entry (``params``, ``seconds``) when no ``key_added`` is given.
DEFAULT_KEY = "impute"
#: Fewest spots ``impute`` accepts (one spot has nothing to borrow strength from).
MIN_SPOTS = 2


def predict_proportions(
    adata: AnnData,
    *,
    method: str = "auto",
    layer: str | None = None,
    spatial_key: str | None = "spatial",
    random_state: int = 0,
    **params: Any,
) -> np.ndarray:
    """Expected expression proportions per spot (rows sum to 1) from a registered method.

    Checks the method's options, then the input as :func:`impute` does, and returns ``P``
    without writing anything.
    """
    spec = get_method(method)
    params = spec.check_options(params)
    random_state = check_seed(random_state)
    _check_image_source(params)
    X, coords = _check_data(spec, adata, layer, spatial_key)
    return _predict(spec, adata, X, coords, spatial_key, random_state, params)[0]


def _check_data(
    spec: ImputeMethod, adata: AnnData, layer: str | None, spatial_key: str | None
) -> tuple[Any, np.ndarray | None]:
    """The counts and coordinates ``spec`` runs on, checked once, before any work: raw
    counts (not all zero), at least :data:`MIN_SPOTS` spots, and the coordinates of a
    method that uses them (:func:`_coordinates`)."""
    X = check_adata(
        adata, layer=layer, require_counts=True, allow_zero_cells=True, allow_all_zero=False
    )
    check_min_obs(adata, MIN_SPOTS, what="spots")
    return X, _coordinates(spec, adata, spatial_key)


def _coordinates(spec: ImputeMethod, adata: AnnData, spatial_key: str | None) -> np.ndarray | None:
    """The coordinates of a method that uses them, else ``None``.

    A spatial method (``spec.spatial``) requires them. ``auto`` (``spec.uses_coords``) requires
    them too unless ``spatial_key=None``, the explicit choice to run without its spatial
    loss, so a misspelt key is an error and never a silently dropped loss. Either way they
    must be finite, 2-D or 3-D and not all at one point.
    """
    if not spec.uses_coords:
        return None
    if spatial_key is None:
        if spec.spatial:
            raise MissingKeyError(
                f"method {spec.name!r} needs spot coordinates but spatial_key=None: pass the "
                "obsm key that holds them, e.g. spatial_key='spatial'"
            )
        warnings.warn(
            f"method {spec.name!r} runs without coordinates (spatial_key=None): no spatial "
            "loss, neighbouring spots are not used; pass the obsm key of the coordinates "
            "(CLI: --spatial-key, or --coords FILE) to use them",
            CellweaveWarning,
            stacklevel=4,
        )
        return None
    fix = None if spec.spatial else "or spatial_key=None to impute without the spatial loss"
    return check_spatial(adata, spatial_key=spatial_key, allow_degenerate=False, fix=fix)


def _predict(
    spec: ImputeMethod,
    adata: AnnData,
    X: Any,
    coords: np.ndarray | None,
    spatial_key: str | None,
    random_state: int,
    params: dict[str, Any],
) -> np.ndarray:
    """Run ``spec`` on data and options already checked: the proportions and what the
    method's inner split chose (``None`` for methods that choose nothing)."""
    if isinstance(params.get("similarity_features"), str):
        params = _image_similarity(adata, spatial_key=spatial_key or "spatial", **params)
    X = check_counts(X)
    if not spec.reports_choice:
        return spec.fn(X, coords=coords, random_state=random_state, **params), None
    P, info = spec.fn(X, coords=coords, random_state=random_state, return_info=True, **params)
    return P, info["chosen"]


def _check_image_source(params: dict[str, Any]) -> None:
    """A string ``similarity_features`` names the histology: only ``"image"`` does."""
    source = params.get("similarity_features")
    if isinstance(source, str) and source != "image":
        raise InputError(
            f"similarity_features={source!r} is unknown; pass 'image' (the histology in "
            "uns['spatial']) or an (n_spots, k) array"
        )


def _image_similarity(adata: AnnData, *, spatial_key: str, **params: Any) -> dict[str, Any]:
    """``similarity_features="image"``: gate by the histology under each spot."""
    params["similarity_features"] = spot_image_features(adata, spatial_key=spatial_key)
    params.setdefault("similarity", "gaussian")
    return params


def _check_target_sum(target_sum: Any) -> float:
    ok = not isinstance(target_sum, bool | str) and isinstance(target_sum, int | float)
    if not ok or not math.isfinite(target_sum) or target_sum <= 0:
        raise InvalidOptionError(
            f"target_sum={target_sum!r} is invalid; pass a positive number, e.g. 1e4"
        )
    return float(target_sum)


def _names(adata: AnnData, layer: str | None) -> dict[str, str]:
    """A hash of the spots' and genes' names, the shape and the counts (what a checkpoint
    belongs to)."""
    h = hashlib.sha256(repr(adata.shape).encode())
    for names in (adata.obs_names, adata.var_names):
        h.update("\x1f".join(map(str, names)).encode() + b"\x1e")
    X = adata.X if layer is None else adata.layers.get(layer)
    parts = (X.data, X.indices, X.indptr) if sparse.issparse(X) else (X,)
    for part in parts:
        h.update(np.ascontiguousarray(np.asarray(part)).tobytes())
    return {"data": h.hexdigest()}


def impute(
    adata: AnnData,
    *,
    method: str = "auto",
    layer: str | None = None,
    spatial_key: str | None = "spatial",
    key_added: str | None = None,
    target_sum: float = 1e4,
    random_state: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    copy: bool = False,
    **params: Any,
) -> AnnData | None:
    """Denoise spatial counts; write the imputed layer on the log1p-normalized scale.

    Parameters
    ----------
    adata
        Spots x genes with raw counts in ``X`` (or ``layers[layer]``) and, for spatial
        methods, coordinates in ``obsm[spatial_key]``.
    method
        A registered method (``cellweave.impute.METHODS``; ``cellweave impute
        --list-methods``); ``"auto"`` is the measured best default (see
        ``benchmarks/results/impute.md``).
    layer
        Layer holding the counts (``X`` when ``None``).
    spatial_key
        Key of the coordinates in ``obsm``. The spatial methods (``mf``, ``ae``,
        ``rings``, ``spatial_knn``) require them; ``auto`` uses them for its spatial loss and
        requires them too unless ``spatial_key=None`` (run without the spatial loss, an
        explicit choice: a misspelt key is an error). The others ignore them. Used
        coordinates must be finite, 2-D or 3-D and hold more than one distinct point.
    key_added
        Names every key the call writes: ``layers[key_added]`` and ``uns[key_added]``.
        ``None`` (default): ``layers["imputed"]`` and ``uns["impute"]``.
    target_sum
        Scale of the normalisation (as ``sc.pp.normalize_total``), positive.
    random_state
        Seed; the same seed gives the same result.
    checkpoint_dir, resume
        Trained methods (``mf``, ``ae``, ``auto`` ...) write a checkpoint of every model
        they fit after every epoch, one subfolder per fit (``fit-000``, ``fit-001``, ... in
        call order); ``resume=True`` continues a killed run from there (finished fits are
        restored, not retrained) and gives the result of an uninterrupted run. Methods that
        do not train ignore them.
    copy
        Return a modified copy instead of writing into ``adata``.
    **params
        Options of the method (e.g. ``spatial_weight``, ``n_latent``; the registry declares
        each with its type and range, and an unknown or invalid one is refused before any
        work). For the spatial methods, ``similarity="gaussian"``/``"correlation"``
        restricts smoothing to neighbours with similar expression;
        ``similarity_features="image"`` gates by the histology image in ``uns["spatial"]``
        instead (colour under each spot, see :func:`cellweave.image.spot_image_features`;
        ``similarity`` then defaults to ``"gaussian"``), or pass an ``(n_spots, k)`` array
        of any features.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes the layer
    ``log1p(target_sum * P)`` (float32; ``P``: the predicted expression proportions of
    each spot, not stored) and the ``uns`` entry with ``params`` (method, options, seed)
    and ``seconds``.

    Raises
    ------
    InvalidOptionError
        Unknown method, unknown option or a value of the wrong type or out of range.
    InputError
        Not raw counts, NaN/inf, all zero, duplicate names, fewer than :data:`MIN_SPOTS`
        spots, missing, non-finite, not 2-/3-D or degenerate coordinates for a method that
        uses them — each with a one-line message naming the fix, before any work.
    """
    start = time.perf_counter()
    spec = get_method(method)
    params = spec.check_options(params)
    target_sum = _check_target_sum(target_sum)
    random_state = check_seed(random_state)
    layer_key = DEFAULT_LAYER if key_added is None else key_added
    uns_key = DEFAULT_KEY if key_added is None else key_added
    image = isinstance(params.get("similarity_features"), str)
    if image:
        params.setdefault("similarity", "gaussian")
    _check_image_source(params)
    X, coords = _check_data(spec, adata, layer, spatial_key)  # before any work
    run = None
    if checkpoint_dir is not None:
        run = {"method": method, "params": jsonable(params), "random_state": random_state}
        run.update(_names(adata, layer))
    with checkpointing(checkpoint_dir, resume=resume, fingerprint=run):
        P, chosen = _predict(spec, adata, X, coords, spatial_key, random_state, dict(params))
    if chosen is not None:  # what the inner split chose, and whether a spatial loss was on
        chosen = {**chosen, "spatial_loss": coords is not None}
    adata = adata.copy() if copy else adata
    adata.layers[layer_key] = imputed_layer(P, target_sum)
    adata.uns[uns_key] = uns_entry(
        method, params, layer=layer, spatial_key=spatial_key, key_added=layer_key,
        target_sum=target_sum, random_state=random_state, start=start, chosen=chosen,
    )  # fmt: skip
    return adata if copy else None


def imputed_layer(P: np.ndarray, target_sum: float) -> np.ndarray:
    """The imputed layer of proportions ``P``: ``log1p(target_sum * P)`` as float32."""
    return np.log1p(target_sum * P).astype(np.float32)


def uns_entry(
    method: str,
    params: dict[str, Any],
    *,
    layer: str | None,
    spatial_key: str,
    key_added: str,
    target_sum: float,
    random_state: int,
    start: float,
    chosen: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``uns[key_added]`` of an imputation: ``params`` (method, inputs, options, seed; the
    ``similarity_features`` array left out unless it was ``"image"``; ``chosen``: what the
    method's inner split chose, e.g. ``{"alpha": 0.1, "spatial_weight": 0.1}``, when it
    reports it) and ``seconds`` since ``start`` (a ``time.perf_counter()`` value)."""
    image = isinstance(params.get("similarity_features"), str)
    recorded = {
        "method": method,
        "layer": "X" if layer is None else layer,
        "spatial_key": spatial_key,
        "key_added": key_added,
        "target_sum": target_sum,
        "random_state": random_state,
        **{k: v for k, v in params.items() if k != "similarity_features" or image},
    }
    if chosen is not None:
        recorded["chosen"] = chosen
    return {"params": jsonable(recorded), "seconds": float(time.perf_counter() - start)}

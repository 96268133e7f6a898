"""The views of a spot that the attention mapper fuses, as dense per-spot arrays.

``"panel"``: the spot's own shared-gene expression (``log1p`` of counts scaled to a mean of 1
per gene, z-scored per gene within the section); ``"neighbours"``: the same for the
ring-weighted mean of its order-1 / order-2 neighbours' scaled expression (the project's
spatial graph, :func:`cellweave.graph.neighbor_rings`); ``"histology"``: colour features of
the image under the spot (:func:`cellweave.image.spot_image_features`) when ``uns["spatial"]``
holds an image; ``"modality"``: another modality measured on the section
(``obsm[modality_key]``, ``log1p`` when non-negative, z-scored). A view a spot lacks (no
neighbours, no image) is masked out of the fusion. Every view is standardized with the
training section's statistics (:meth:`SpotViews.standardize`), so that a new section of the
same platform is encoded as the training one was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from anndata import AnnData
from scipy import sparse

from ...errors import InputError, MissingKeyError, NonFiniteError
from ...graph import neighbor_rings, ring_weights
from ...image import has_image, spot_image_features
from ...validate import check_spatial

__all__ = ["VIEWS", "SpotViews", "fit_views", "log_panel", "spot_views", "zscore"]

#: Every view the attention mapper knows, in the order of the fusion.
VIEWS = ("panel", "neighbours", "histology", "modality")


@dataclass
class SpotViews:
    """Per-spot inputs of the views (rows: the mapped spots).

    Attributes
    ----------
    inputs
        View name -> ``(n_spots, d_view)`` float32 (zeros where the view is absent).
    mask
        ``(n_spots, len(VIEWS))`` bool: the view is present at the spot.
    """

    inputs: dict[str, np.ndarray]
    mask: np.ndarray

    def dims(self) -> dict[str, int]:
        """Input width of every view present somewhere."""
        return {name: int(x.shape[1]) for name, x in self.inputs.items()}

    def statistics(self) -> dict[str, np.ndarray]:
        """``{f"{view}/mean", f"{view}/sd"}`` of every view over the spots that have it."""
        stats = {}
        for i, name in enumerate(VIEWS):
            if name in self.inputs:
                X = self.inputs[name][self.mask[:, i]].astype(np.float64)
                if not len(X):
                    X = np.zeros((1, self.inputs[name].shape[1]))
                stats[f"{name}/mean"], stats[f"{name}/sd"] = X.mean(axis=0), X.std(axis=0)
        return stats

    def standardize(self, stats: dict[str, np.ndarray]) -> SpotViews:
        """The views z-scored with ``stats`` (:meth:`statistics` of the training section);
        absent entries stay zero."""
        inputs = {}
        for i, name in enumerate(VIEWS):
            if name in self.inputs:
                mean, sd = stats[f"{name}/mean"], stats[f"{name}/sd"]
                z = np.divide(
                    self.inputs[name] - mean,
                    sd,
                    where=sd > 0,
                    out=np.zeros_like(self.inputs[name], dtype=np.float64),
                )
                inputs[name] = np.where(self.mask[:, [i]], z, 0.0).astype(np.float32)
        return SpotViews(inputs=inputs, mask=self.mask)


def zscore(X: np.ndarray) -> np.ndarray:
    """Centre and scale every column (constant columns become zero), float32."""
    X = np.asarray(X, dtype=np.float64)
    sd = X.std(axis=0)
    out = np.divide(X - X.mean(axis=0), sd, out=np.zeros_like(X), where=sd > 0)
    return out.astype(np.float32)


def _scaled(counts: np.ndarray) -> np.ndarray:
    """Rows scaled to a total of ``n_genes`` (mean 1 per gene); zero rows stay zero."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts * counts.shape[1], totals, out=np.zeros_like(counts), where=totals > 0)


def log_panel(counts: np.ndarray) -> np.ndarray:
    """``log1p`` of count rows scaled to a mean of 1 per gene (z-score it for the panel)."""
    return np.log1p(_scaled(np.asarray(counts, dtype=np.float64)))


def _neighbours(
    counts: np.ndarray, coords: np.ndarray, weights: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour view and which spots have neighbours."""
    order, _ = neighbor_rings(coords, max_order=len(weights))
    W = ring_weights(order, weights=tuple(float(w) for w in weights), normalize="row")
    has = np.diff(W.indptr) > 0
    mean = np.asarray(sparse.csr_matrix(W) @ _scaled(np.asarray(counts, dtype=np.float64)))
    return np.log1p(mean), has


def modality_matrix(adata: AnnData, key: str, rows: np.ndarray | None = None) -> np.ndarray:
    """``adata.obsm[key]`` checked (present, one row per spot, finite) and transformed."""
    if key not in adata.obsm:
        raise MissingKeyError(
            f"adata_sp.obsm[{key!r}] is missing: pass modality_key naming the obsm entry of the "
            f"other modality ({', '.join(map(repr, adata.obsm)) or 'none stored'}), or None"
        )
    value = adata.obsm[key]
    X = value.to_numpy() if hasattr(value, "to_numpy") else value
    X = X.toarray() if sparse.issparse(X) else np.asarray(X)
    if X.ndim != 2 or X.shape[0] != adata.n_obs:
        raise InputError(
            f"adata_sp.obsm[{key!r}] has shape {X.shape} for {adata.n_obs} spots: store one row "
            "per spot (align the other modality to the spots first)"
        )
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise NonFiniteError(
            f"adata_sp.obsm[{key!r}] holds {int((~np.isfinite(X)).sum())} NaN/infinite "
            "value(s): fill or drop them before mapping"
        )
    if rows is not None:
        X = X[rows]
    return np.log1p(X) if (X >= 0).all() else X


def spot_views(
    adata_sp: AnnData,
    counts: np.ndarray,
    rows: np.ndarray,
    *,
    spatial_key: str | None,
    modality_key: str | None,
    histology: bool,
    ring_weights: Sequence[float],
) -> SpotViews:
    """The views of the spots ``rows`` of ``adata_sp`` (``counts``: their shared-gene
    counts), not yet standardized (:meth:`SpotViews.standardize`).

    Parameters
    ----------
    spatial_key
        Coordinates in ``obsm`` (``None``: no neighbour or histology view).
    modality_key
        ``obsm`` key of another modality (``None``: no modality view).
    histology
        Use the image in ``uns["spatial"]`` when there is one.
    ring_weights
        Weight of the order-1, order-2, ... neighbours.
    """
    n = len(rows)
    inputs = {"panel": log_panel(counts)}
    mask = np.zeros((n, len(VIEWS)), dtype=bool)
    mask[:, 0] = True
    if spatial_key is not None:
        coords = check_spatial(adata_sp, spatial_key=spatial_key, name="adata_sp")[rows]
        inputs["neighbours"], mask[:, 1] = _neighbours(counts, coords, ring_weights)
        if histology and has_image(adata_sp):
            feats = spot_image_features(adata_sp, spatial_key=spatial_key, standardize=False)
            inputs["histology"], mask[:, 2] = feats[rows], True
    if modality_key is not None:
        inputs["modality"], mask[:, 3] = modality_matrix(adata_sp, modality_key, rows), True
    return SpotViews(inputs=inputs, mask=mask)


def fit_views(views: SpotViews, dims: dict[str, int]) -> SpotViews:
    """A new section's views reduced to those the model was trained with: a view the model
    lacks is dropped, one the section lacks is masked out; a width mismatch is an error."""
    inputs, mask = {}, views.mask.copy()
    n = mask.shape[0]
    for i, name in enumerate(VIEWS):
        if name not in dims:
            mask[:, i] = False
            continue
        if name not in views.inputs:
            inputs[name] = np.zeros((n, dims[name]), dtype=np.float32)
            mask[:, i] = False
            continue
        if views.inputs[name].shape[1] != dims[name]:
            raise InputError(
                f"the {name} view of the new section has {views.inputs[name].shape[1]} "
                f"features, the model was trained on {dims[name]}: pass a section measured "
                "like the training one"
            )
        inputs[name] = views.inputs[name]
    return SpotViews(inputs=inputs, mask=mask)

"""Histology images stored with spatial data (scanpy/squidpy layout), and per-spot image
features.

Layout read here (as written by ``scanpy.read_visium`` and squidpy)::

    adata.uns["spatial"][library_id]["images"][img_key]             # H x W (x C) array
    adata.uns["spatial"][library_id]["scalefactors"]["tissue_<img_key>_scalef"]
    adata.uns["spatial"][library_id]["scalefactors"]["spot_diameter_fullres"]

``obsm["spatial"]`` holds full-resolution pixel coordinates (x = column, y = row); the image
pixel of a spot is its coordinates times the scale factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from anndata import AnnData

from .errors import InputError, MissingKeyError
from .graph import nearest_neighbors
from .validate import check_spatial

__all__ = ["SpatialImage", "get_image", "has_image", "spot_image_features"]


@dataclass(frozen=True)
class SpatialImage:
    """An image with the scale that maps spot coordinates onto its pixels."""

    pixels: np.ndarray  # (H, W, C) float in [0, 1]
    scale: float  # image pixels per coordinate unit
    spot_diameter: float | None  # in coordinate units, when known
    library_id: str
    img_key: str


def has_image(adata: AnnData) -> bool:
    """Whether ``adata.uns["spatial"]`` holds at least one image."""
    return bool(_image_libraries(adata))


def _image_libraries(adata: AnnData) -> list:
    """Keys of ``uns["spatial"]`` whose entry holds images."""
    spatial = adata.uns.get("spatial")
    if not isinstance(spatial, dict):
        return []
    return [k for k, v in spatial.items() if isinstance(v, dict) and v.get("images")]


def get_image(
    adata: AnnData, *, library_id: str | None = None, img_key: str | None = None
) -> SpatialImage:
    """The image of ``library_id`` (the only one when ``None``), ``hires`` preferred.

    Raises
    ------
    MissingKeyError
        No ``uns["spatial"]``, several libraries and none chosen, or no such image.
    """
    libraries = _image_libraries(adata)
    if not libraries:
        raise MissingKeyError(
            "adata.uns['spatial'] holds no image: store it as scanpy.read_visium does "
            "(uns['spatial'][library_id]['images']['hires'] with its scalefactors) or use "
            "expression similarity instead"
        )
    if library_id is None:
        if len(libraries) > 1:
            raise MissingKeyError(
                f"adata.uns['spatial'] has several libraries {libraries}; pass library_id="
            )
        library_id = libraries[0]
    if library_id not in libraries:
        raise MissingKeyError(
            f"adata.uns['spatial'][{library_id!r}] has no image; choose one of {libraries}"
        )
    entry = adata.uns["spatial"][library_id]
    images = entry["images"]
    if img_key is None:
        img_key = next((k for k in ("hires", "lowres") if k in images), next(iter(images)))
    if img_key not in images:
        raise MissingKeyError(
            f"adata.uns['spatial'][{library_id!r}]['images'] has no {img_key!r}; choose one "
            f"of {list(images)}"
        )
    factors = entry.get("scalefactors", {})
    scale = factors.get(f"tissue_{img_key}_scalef")
    if scale is None:
        raise MissingKeyError(
            f"adata.uns['spatial'][{library_id!r}]['scalefactors'] lacks "
            f"'tissue_{img_key}_scalef': add the factor from image pixels to coordinates"
        )
    pixels = np.asarray(images[img_key], dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or not np.isfinite(pixels).all():
        raise InputError(
            f"image {img_key!r} has shape {pixels.shape} or non-finite pixels; store an "
            "(H, W) or (H, W, C) finite array"
        )
    top = pixels.max()
    if top > 1.0:  # 8-bit (or 16-bit) images
        pixels = pixels / (255.0 if top <= 255 else top)
    diameter = factors.get("spot_diameter_fullres")
    return SpatialImage(
        pixels=pixels,
        scale=float(scale),
        spot_diameter=None if diameter is None else float(diameter),
        library_id=str(library_id),
        img_key=str(img_key),
    )


def spot_image_features(
    adata: AnnData,
    *,
    spatial_key: str = "spatial",
    library_id: str | None = None,
    img_key: str | None = None,
    radius: float | None = None,
    standardize: bool = True,
) -> np.ndarray:
    """Colour features of the image under every spot: mean and standard deviation of each
    channel over the square of half-width ``radius`` around the spot centre.

    Parameters
    ----------
    adata
        Spatial data with coordinates in ``obsm[spatial_key]`` and an image in
        ``uns["spatial"]`` (see the module docstring).
    radius
        Half-width of the patch in coordinate units; default: half the spot diameter (or,
        without it, half the median nearest-neighbour distance). At least one pixel.
    standardize
        Z-score every feature over the spots (features with no variation become 0).

    Returns
    -------
    ``(n_spots, 2 * channels)`` float64. Spots outside the image get the features of the
    nearest pixels (their patch is clipped to the image).
    """
    coords = check_spatial(adata, spatial_key=spatial_key)[:, :2]
    image = get_image(adata, library_id=library_id, img_key=img_key)
    if radius is None:
        radius = 0.5 * image.spot_diameter if image.spot_diameter else _half_spacing(coords)
    if not (np.isfinite(radius) and radius > 0):
        raise InputError(f"radius={radius!r} must be a positive number of coordinate units")
    H, W = image.pixels.shape[:2]
    r = max(1, round(radius * image.scale))
    col = np.clip(np.round(coords[:, 0] * image.scale).astype(int), 0, W - 1)
    row = np.clip(np.round(coords[:, 1] * image.scale).astype(int), 0, H - 1)
    c0, c1 = np.clip(col - r, 0, W), np.clip(col + r + 1, 0, W)
    r0, r1 = np.clip(row - r, 0, H), np.clip(row + r + 1, 0, H)
    area = ((c1 - c0) * (r1 - r0)).astype(np.float64)[:, None]
    total = _box_sums(_integral(image.pixels), r0, r1, c0, c1)
    squares = _box_sums(_integral(image.pixels**2), r0, r1, c0, c1)
    mean = total / area
    sd = np.sqrt(np.maximum(squares / area - mean**2, 0.0))
    features = np.hstack([mean, sd])
    if standardize:
        centred = features - features.mean(axis=0)
        spread = features.std(axis=0)
        features = np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)
    return features


def _integral(pixels: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column, ``(H + 1, W + 1, C)``."""
    out = np.zeros((pixels.shape[0] + 1, pixels.shape[1] + 1, pixels.shape[2]))
    out[1:, 1:] = pixels.cumsum(axis=0).cumsum(axis=1)
    return out


def _box_sums(table, r0, r1, c0, c1) -> np.ndarray:
    return table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]


def _half_spacing(coords: np.ndarray) -> float:
    if coords.shape[0] < 2:
        return 1.0
    dist, _ = nearest_neighbors(coords, 2)
    return 0.5 * float(np.median(dist[:, 1]))

"""A histology-like image for a simulated tissue, stored the way scanpy/squidpy store Visium
images (``uns["spatial"][library_id]``), so that image-aware methods can be tested against
the simulator's known domains."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .._utils import RandomState, check_random_state
from ..graph import nearest_neighbors
from ..validate import check_obs_key, check_spatial

__all__ = ["render_histology"]


def render_histology(
    adata: AnnData,
    *,
    domain_key: str = "domain",
    spatial_key: str = "spatial",
    library_id: str = "sim",
    pixels_per_unit: float = 8.0,
    spot_diameter: float = 0.8,
    noise: float = 0.08,
    margin: float = 1.5,
    random_state: RandomState = 0,
) -> None:
    """Draw an H&E-like RGB image whose colour follows the tissue domains.

    Every pixel takes the colour of the domain of its nearest spot (a random pink/purple hue
    per domain) plus Gaussian noise; pixels farther than one spot spacing from every spot are
    background (near white). Written in place as
    ``adata.uns["spatial"][library_id] = {"images": {"hires": img}, "scalefactors":
    {"tissue_hires_scalef": pixels_per_unit, "spot_diameter_fullres": spot_diameter}}``,
    i.e. ``obsm[spatial_key]`` are the full-resolution coordinates and ``hires`` pixels are
    those times ``pixels_per_unit`` (x = column, y = row).

    Parameters
    ----------
    adata
        A simulated tissue (``cellweave.sim.simulate_spatial``) or any AnnData with domains.
    domain_key
        ``obs`` column with the domains.
    spatial_key
        Coordinates in ``obsm`` (in units of the spot spacing for the simulator).
    library_id
        Key under ``uns["spatial"]``.
    pixels_per_unit
        Image pixels per coordinate unit.
    spot_diameter
        Spot diameter in coordinate units (``spot_diameter_fullres``).
    noise
        Standard deviation of the pixel noise (colours are in ``[0, 1]``).
    margin
        Background beyond the largest coordinates, in coordinate units (the image starts
        at the origin).
    random_state
        Seed of the colours and the noise.
    """
    coords = check_spatial(adata, spatial_key=spatial_key)[:, :2]
    domains = check_obs_key(adata, domain_key)
    rng = check_random_state(random_state)
    levels, codes = np.unique(np.asarray(domains).astype(str), return_inverse=True)
    # pink (eosin) to purple (haematoxylin) hues, one per domain
    t = rng.uniform(0, 1, len(levels))
    palette = np.c_[0.85 - 0.35 * t, 0.45 - 0.15 * t, 0.75 + 0.1 * t]
    # pixel (col, row) shows the point (col, row) / pixels_per_unit, from the origin
    size = np.ceil((np.maximum(coords.max(axis=0), 0) + margin) * pixels_per_unit).astype(int)
    yy, xx = np.mgrid[0 : size[1] + 1, 0 : size[0] + 1]
    pixels = np.c_[xx.ravel(), yy.ravel()] / pixels_per_unit
    dist, nearest = nearest_neighbors(coords, 1, query=pixels)
    dist, nearest = dist[:, 0], nearest[:, 0]
    img = palette[codes[nearest]]
    img[dist > 1.0] = (0.96, 0.95, 0.97)
    img = img + rng.normal(0.0, noise, img.shape)
    img = np.clip(img, 0.0, 1.0).reshape(size[1] + 1, size[0] + 1, 3).astype(np.float32)
    adata.uns.setdefault("spatial", {})[library_id] = {
        "images": {"hires": img},
        "scalefactors": {
            "tissue_hires_scalef": float(pixels_per_unit),
            "spot_diameter_fullres": float(spot_diameter),
        },
        "metadata": {"source": "cellweave.sim.render_histology"},
    }

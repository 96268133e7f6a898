"""Simulators with ground truth: a spatial tissue with a matched scRNA-seq reference, and a
multi-omics mosaic."""

from ._counts import thin_counts
from .histology import render_histology
from .mosaic import simulate_mosaic
from .pseudo import pseudo_spots, split_reference
from .spaceranger import write_spaceranger
from .spatial import simulate_spatial

__all__ = [
    "pseudo_spots",
    "render_histology",
    "simulate_mosaic",
    "simulate_spatial",
    "split_reference",
    "thin_counts",
    "write_spaceranger",
]

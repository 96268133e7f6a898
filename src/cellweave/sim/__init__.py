"""Simulators with ground truth: a spatial tissue with a matched scRNA-seq reference, and a
multi-omics mosaic."""

from .histology import render_histology
from .mosaic import simulate_mosaic
from .spatial import simulate_spatial

__all__ = ["render_histology", "simulate_mosaic", "simulate_spatial"]

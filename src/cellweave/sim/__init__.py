"""Simulators with ground truth: a spatial tissue with a matched scRNA-seq reference, and a
multi-omics mosaic."""

from .mosaic import simulate_mosaic
from .spatial import simulate_spatial

__all__ = ["simulate_mosaic", "simulate_spatial"]

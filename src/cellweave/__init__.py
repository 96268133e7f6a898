"""cellweave: weave single-cell and spatial multi-omics data together."""

from __future__ import annotations

__version__ = "0.1.0"

from . import errors, graph, image, impute, io, mapping, metrics, mosaic, pp, sim, tl, validate
from . import plotting as pl

__all__ = [
    "__version__",
    "errors",
    "graph",
    "image",
    "impute",
    "io",
    "mapping",
    "metrics",
    "mosaic",
    "pl",
    "pp",
    "sim",
    "tl",
    "validate",
]

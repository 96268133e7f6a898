"""cellweave: weave single-cell and spatial multi-omics data together.

The subpackages load on first use (``cellweave.tl``, ``cellweave.pl``, ...), scanpy style:
``import cellweave`` stays cheap (the CLI's ``--help`` and ``--version`` do not load torch),
and the package root imports nothing, so a module that reads ``cellweave.__version__`` does
not appear to depend on every layer above it (the import contract in ``pyproject.toml``
checks the real layering).
"""

from __future__ import annotations

import importlib as _importlib
from types import ModuleType as _ModuleType

__version__ = "0.1.0"

#: Attribute -> submodule loaded on first access (``pl`` is :mod:`cellweave.plotting`).
_SUBMODULES = {
    "align": "align",
    "device": "device",
    "errors": "errors",
    "graph": "graph",
    "image": "image",
    "impute": "impute",
    "io": "io",
    "links": "links",
    "mapping": "mapping",
    "metrics": "metrics",
    "mosaic": "mosaic",
    "ot": "ot",
    "pl": "plotting",
    "pp": "pp",
    "registry": "registry",
    "sim": "sim",
    "tl": "tl",
    "validate": "validate",
}

__all__ = ["__version__", *sorted(_SUBMODULES)]


def __getattr__(name: str) -> _ModuleType:
    if name in _SUBMODULES:
        module = _importlib.import_module(f".{_SUBMODULES[name]}", __name__)
        globals()[name] = module  # later lookups skip __getattr__
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return list(__all__)

"""One JSON-safe encoder for parameters and scores written to ``uns`` and to JSON files.

anndata (>= 0.11) and JSON both store ``None``, plain numbers, strings, lists and string-keyed
dicts; :func:`jsonable` turns everything else into one of those, the same way everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["jsonable", "params_entry"]


def jsonable(value: Any) -> Any:
    """``value`` as JSON/h5ad-safe data.

    numpy scalars and arrays become Python numbers and lists, NaN and infinities ``None``,
    tuples and ranges lists, mappings string-keyed dicts, paths and any other object its
    ``str``; ``None``, ``bool``, ``int`` and ``str`` stay as they are.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | range | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return str(value)


def params_entry(params: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``uns[key_added]`` entry of a call: ``{"params": ..., **extra}``, all JSON-safe."""
    return {"params": jsonable(params), **{k: jsonable(v) for k, v in extra.items()}}

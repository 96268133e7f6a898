"""Short listings of names and keys for one-line error messages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_N_SHOWN = 5


def _shown(items: Iterable[Any], n: int = _N_SHOWN) -> str:
    """Format the first ``n`` items as a short list, with ``...`` when there are more."""
    items = list(items)
    text = ", ".join(repr(str(x)) for x in items[:n])
    return f"[{text}{', ...' if len(items) > n else ''}]"


def _keys_hint(keys: Iterable[Any]) -> str:
    keys = list(keys)
    return f"available: {_shown(keys, 10)}" if keys else "there are none"

"""The multi-view attention mapping model (``map_cells(method="attention")``).

:class:`AttentionMapper` (the user class: train, map a section or a new one by inference,
latent, view weights, save / load) on :mod:`.module` (the torch module), :mod:`.views` (the
views of a spot), :mod:`.reference` (reference profiles and candidate cells),
:mod:`.options` (the declared options, importable without torch) and :mod:`.persist` (the
model folder). The class is loaded on first access, so declaring the solver loads no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AttentionMapper"]


def __getattr__(name: str) -> Any:
    if name == "AttentionMapper":
        from .model import AttentionMapper

        return AttentionMapper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

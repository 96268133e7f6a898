"""Modality kinds of the mosaic model as plug-ins (see :mod:`.base`).

Every kind is one object registered in :data:`MODALITY_KINDS`, one
:class:`cellweave.registry.Registry` (``kind="modality"``; the runner is the kind object; its
options are what a modality of the kind can be configured with). Adding a kind is one file:
define a :class:`ModalityKind` and call :func:`register_kind` at its end, then add the
file's name to :data:`BUILTIN` (the order sets which kind claims a modality name first).
"""

from __future__ import annotations

from importlib import import_module

from ...errors import InputError
from ...registry import Registry
from .base import Head, ModalityKind

__all__ = [
    "MODALITY_KINDS",
    "Head",
    "ModalityKind",
    "get_head",
    "get_kind",
    "infer_kind",
    "kind_names",
    "likelihood_names",
    "register_kind",
]

MODALITY_KINDS = Registry("modality kind")


def register_kind(kind: ModalityKind) -> ModalityKind:
    """Register ``kind`` (its name, description, typed options, identifying words)."""
    MODALITY_KINDS.add(
        kind.name,
        kind,
        kind="modality",
        description=kind.description,
        options=kind.options(),
        words=kind.words,
    )
    return kind


def get_kind(name: str) -> ModalityKind:
    """The registered kind ``name`` (``InvalidOptionError`` listing the kinds otherwise)."""
    return MODALITY_KINDS.get(name).runner


def kind_names() -> tuple[str, ...]:
    """Names of the registered kinds, in registration order."""
    return tuple(MODALITY_KINDS)


def infer_kind(name: str) -> str:
    """The kind whose words occur in the modality name ``name`` (first registered wins)."""
    for kind in kind_names():
        if get_kind(kind).identifies(name):
            return kind
    names = kind_names()
    raise InputError(
        f"cannot tell the kind of modality {name!r}: pass modality_types={{{name!r}: "
        f"'{names[0]}'}} (or {' / '.join(repr(k) for k in names[1:])})"
    )


def likelihood_names() -> tuple[str, ...]:
    """Every likelihood some registered kind accepts."""
    out: dict[str, None] = {}
    for kind in kind_names():
        out.update(dict.fromkeys(get_kind(kind).likelihoods))
    return tuple(out)


def get_head(likelihood: str) -> Head:
    """The decoder head of ``likelihood`` (from the first kind that accepts it)."""
    for kind in kind_names():
        heads = get_kind(kind).heads
        if likelihood in heads:
            return heads[likelihood]
    raise InputError(
        f"likelihood {likelihood!r} is unknown: use one of {', '.join(likelihood_names())}"
    )


#: the kinds' modules, imported (each registers itself) in the order they claim modality names
BUILTIN = ("rna", "atac", "protein", "methylation")
for _module in BUILTIN:
    import_module(f"{__name__}.{_module}")

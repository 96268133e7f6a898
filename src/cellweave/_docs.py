"""Shared docstring fragments and :func:`doc_params`, which puts them into docstrings.

The pattern is scanpy's (``scanpy._utils._doc_params`` with the fragments of
``scanpy._docs``): a parameter described the same way in several functions is written once,
here (or, for one capability's own parameters, in that capability), and a docstring names it
as a ``{placeholder}``::

    @doc_params(adata=doc_adata)
    def check(adata, *, layer=None):
        \"\"\"Check ``adata``.

        Parameters
        ----------
        {adata}
        layer
            ...
        \"\"\"

A docstring given to :func:`doc_params` is a :meth:`str.format` template: a literal brace
in it is written twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from textwrap import indent
from typing import TypeVar

__all__ = ["doc_adata", "doc_adata_name", "doc_features_ab", "doc_params"]

_T = TypeVar("_T", bound=Callable)
_LEADING = re.compile(r"^( *)\S", re.MULTILINE)


def doc_params(**fragments: str) -> Callable[[_T], _T]:
    """Decorator filling the ``{name}`` placeholders of a docstring with ``fragments``.

    Each fragment is written unindented; its lines after the first are indented like the
    docstring's body (the placeholder itself stands indented). Docstrings stripped by
    ``python -OO`` are left as they are.
    """

    def decorate(obj: _T) -> _T:
        doc = obj.__doc__
        if doc is None:
            return obj
        body = doc[doc.find("\n") + 1 :]
        width = min((len(m.group(1)) for m in _LEADING.finditer(body)), default=0)
        pad = " " * width
        filled = {key: indent(text, pad)[width:] for key, text in fragments.items()}
        obj.__doc__ = doc.format_map(filled)
        return obj

    return decorate


# ----------------------------------------------------------------------------- fragments

doc_adata = """\
adata
    The data."""

doc_adata_name = """\
name
    How to call ``adata`` in the message."""

doc_features_ab = """\
A, B
    ``(n, d)`` and ``(m, d)`` features."""

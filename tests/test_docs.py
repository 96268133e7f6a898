"""cellweave._docs: shared docstring fragments filled in by doc_params (scanpy's pattern)."""

from __future__ import annotations

import inspect

from cellweave._docs import doc_adata, doc_params
from cellweave.ot import cosine_cost
from cellweave.validate import check_nonempty


def test_fragment_is_indented_like_the_docstring_body():
    @doc_params(adata=doc_adata, extra="x\n    More text.")
    def f():
        """Summary.

        Parameters
        ----------
        {adata}
        {extra}
        """

    assert inspect.cleandoc(f.__doc__).splitlines()[4:] == [
        "adata",
        "    The data.",
        "x",
        "    More text.",
    ]


def test_doubled_braces_stay_literal_and_stripped_docstrings_are_left_alone():
    @doc_params(adata=doc_adata)
    def f():
        """Writes ``{{"key": 1}}``.

        {adata}
        """

    assert '``{"key": 1}``' in f.__doc__

    def g():
        pass

    g.__doc__ = None  # as under python -OO
    assert doc_params(adata=doc_adata)(g) is g and g.__doc__ is None


def test_decorated_public_functions_have_no_placeholders_left():
    for fn in (cosine_cost, check_nonempty):
        assert "{" not in fn.__doc__
    assert "``(n, d)`` and ``(m, d)`` features" in cosine_cost.__doc__
    assert "name\n        How to call ``adata`` in the message." in check_nonempty.__doc__

"""The gene predictors of the leave-gene-out evaluation (:mod:`.evaluate`), all entries of
:data:`cellweave.mapping.api.METHODS`: cellweave's solvers (kind ``"solver"`` there, run
through :func:`~cellweave.mapping.api.predict_genes` and reported as ``"cellweave"``), the
baselines (kind ``"baseline"``, :mod:`.baselines`) and the peers that
:func:`register_method` adds at run time (kind ``"peer"``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from anndata import AnnData

from ..errors import InputError
from ..registry import Option
from . import api
from . import features as _features
from .genes import _columns, _mapped_genes

__all__ = [
    "Kind",
    "MappingMethod",
    "Predictor",
    "available_methods",
    "checked_options",
    "register_method",
]

Kind = Literal["cellweave", "peer", "baseline"]


class Predictor(Protocol):
    """A gene predictor: ``predict(adata_sc, adata_sp, genes, *, random_state=0, **params)``.

    ``adata_sp`` holds only the fold's training genes (raw values as given, ``obsm`` kept),
    ``adata_sc`` the full scRNA-seq data; returns an ``(adata_sp.n_obs, len(genes))`` array
    (or DataFrame / sparse matrix) with the predicted values of ``genes`` at every spot, or
    a dict ``{"normalized": P, "raw": P}`` when the method predicts each scheme's target
    differently (relative expression for the normalized scheme, values on the spatial data's
    own scale for the raw one).
    """

    def __call__(
        self, adata_sc: AnnData, adata_sp: AnnData, genes: Sequence[str], *, random_state: int
    ) -> Any: ...


@dataclass(frozen=True)
class MappingMethod:
    """A named gene predictor and what it is (``"cellweave"``, ``"peer"`` or ``"baseline"``)."""

    name: str
    kind: Kind
    predict: Callable[..., Any]
    params: Mapping[str, Any] = field(default_factory=dict)


#: Keywords of :func:`~cellweave.mapping.api.predict_genes` itself (not solver options) that
#: ``method_params`` of a cellweave method may hold.
_PREDICT_KEYS = ("scale", "layer_sc", "layer_sp", "device")


def register_method(name: str, predict: Callable[..., Any], *, kind: Kind = "peer") -> None:
    """Make ``predict`` (a :class:`Predictor`) part of ``methods="all"`` under ``name``: an
    entry of kind ``kind`` in :data:`cellweave.mapping.api.METHODS`, its options read from
    its keyword parameters.

    Used by ``benchmarks/peers_mapping.py`` to add the peers (Tangram, gimVI, novoSpaRc) when
    they are installed; the package itself never imports them. Re-registering a name
    replaces it.
    """
    if kind not in ("cellweave", "peer", "baseline"):
        raise InputError(f"kind={kind!r} must be 'cellweave', 'peer' or 'baseline'")
    options, open_ended = _signature_options(predict)
    api.METHODS.add(
        name,
        predict,
        kind=kind,
        description=(inspect.getdoc(predict) or name).splitlines()[0],
        options=options,
        replace=True,
        open_ended=open_ended,
    )


def _signature_options(predict: Callable[..., Any]) -> tuple[list[Option], bool]:
    """Options of a predictor from its keyword parameters (any type, checked by it), and
    whether it takes ``**kwargs`` (then its options cannot be checked up front)."""
    try:
        parameters = list(inspect.signature(predict).parameters.values())
    except (TypeError, ValueError):
        return [], True
    options = [
        Option(p.name, object, None if p.default is p.empty else p.default)
        for p in parameters[3:]
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "random_state"
    ]
    return options, any(p.kind is p.VAR_KEYWORD for p in parameters)


def _cellweave_predictor(method: str) -> Callable[..., Any]:
    """A gene predictor running the solver ``method`` through ``api.predict_genes``."""

    def predict(adata_sc, adata_sp, genes, *, random_state=0, **params):
        predict_genes = api.predict_genes
        if "scale" in params:
            return predict_genes(
                adata_sc, adata_sp, genes, method=method, random_state=random_state, **params
            )
        # relative expression for the normalized scheme; times each spot's total over the
        # mapped genes (predict_genes' scale="counts") for the raw one
        rel = predict_genes(
            adata_sc,
            adata_sp,
            genes,
            method=method,
            random_state=random_state,
            scale="proportions",
            **params,
        )
        mapped = _mapped_genes(adata_sc, adata_sp, genes)
        totals = _features.row_totals(_columns(adata_sp, mapped, params.get("layer_sp")))
        return {"normalized": rel, "raw": rel * totals[:, None]}

    predict.__name__ = f"cellweave_{method}"
    return predict


def available_methods() -> dict[str, MappingMethod]:
    """Every method ``methods="all"`` evaluates, from :data:`cellweave.mapping.api.METHODS`:
    cellweave's solvers (through ``api.predict_genes``), the baselines, registered peers."""
    out = {}
    for name in api.METHODS:
        entry = api.METHODS[name]
        if entry.kind == api.SOLVER:
            out[name] = MappingMethod(name, "cellweave", _cellweave_predictor(name))
        else:
            out[name] = MappingMethod(name, entry.kind, entry.runner)
    return out


def checked_options(name: str, method: MappingMethod, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` of an evaluated method checked against its registry entry, before any
    work (a predictor passed in as a callable, or one taking ``**kwargs``, checks its own)."""
    options = dict(options)
    entry = api.METHODS[name] if name in api.METHODS else None
    if entry is None:
        return options
    if entry.kind == api.SOLVER:
        if getattr(method.predict, "__name__", "") == f"cellweave_{name}":
            api.check_params(name, {k: v for k, v in options.items() if k not in _PREDICT_KEYS})
        return options
    if method.predict is not entry.runner or entry.meta.get("open_ended"):
        return options
    return entry.check_options(options)

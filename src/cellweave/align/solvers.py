"""The align solvers in the shared registry, with their typed options and ranges.

Two kinds of solver make one alignment: a **matching** solver (which spots correspond) and one
or two **transform** solvers (how section b moves). ``align_sections`` picks them from its
switches: ``structure_only`` chooses ``"structure"`` over ``"fgw"``; ``rigid`` and
``nonrigid`` add ``"rigid"`` and ``"nonrigid"``. Every option of ``align_sections`` that
tunes a solver is declared here once and checked by :func:`check_options` before any work.

To add a solver: write its runner beside the others of its kind (a matching runner in
:mod:`~cellweave.align.plan`, a transform in :mod:`~cellweave.align.rigid` or
:mod:`~cellweave.align.nonrigid`), add its row to :data:`TABLE` (options declared above it)
and its line to :data:`DESCRIPTIONS`, and select it in
:func:`~cellweave.align.api.align_sections`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidOptionError
from ..registry import Bool, Float, Int, Method, Option, Registry
from .nonrigid import fit_nonrigid
from .plan import match_features, match_structure
from .rigid import fit_rigid

__all__ = ["SOLVERS", "SWITCHES", "check_options", "selected"]

#: The align solvers: ``SOLVERS.table()`` is what ``cellweave align --list-methods`` prints.
SOLVERS = Registry("align solver")

_OVERLAP = Float("overlap", 0.7, low=0, high=1, allow_none=True, doc="fraction matched (> 0)")
_EPSILON = Float("epsilon", None, low=0, allow_none=True, doc="entropic FGW (> 0); None: exact")
_N_INIT = Int("n_init", None, low=1, allow_none=True, doc="FGW starts (None: 1, structure: 8)")
_MAX_SPOTS = Int("max_spots", 2000, low=10, doc="spots of the plan; larger are subsampled")
_N_PCS = Int("n_pcs", 30, low=1, doc="principal components of the expression")

#: Options of each solver (typed, with ranges; checked by :func:`check_options`).
FGW_OPTIONS = [
    Float("alpha", 0.1, low=0, high=1, doc="weight of geometry against expression"),
    _OVERLAP,
    _EPSILON,
    _N_INIT,
    _MAX_SPOTS,
    _N_PCS,
    Int("n_top_genes", 2000, low=1, doc="most variable features kept"),
]
STRUCTURE_OPTIONS = [_OVERLAP, _EPSILON, _N_INIT, _MAX_SPOTS, _N_PCS]
RIGID_OPTIONS = [
    Int("refine", 5, low=0, doc="rounds of local re-matching; 0 to skip"),
    Bool("reflection", False, doc="allow a mirror image"),
    Bool("allow_scale", False, doc="also fit a scale factor"),
]
NONRIGID_OPTIONS = [
    Float("nonrigid_bandwidth", 3.0, low=0, doc="kernel width in spot spacings (> 0)"),
    Float("nonrigid_smoothness", 0.1, low=0, doc="ridge penalty; larger is smoother"),
]

#: Every solver: name, runner, kind, the switch of ``align_sections`` that selects it, options.
TABLE: list[tuple[str, Callable[..., Any], str, str, list[Option]]] = [
    ("fgw", match_features, "matching", "structure_only=False", FGW_OPTIONS),
    ("structure", match_structure, "matching", "structure_only=True", STRUCTURE_OPTIONS),
    ("rigid", fit_rigid, "transform", "rigid=True", RIGID_OPTIONS),
    ("nonrigid", fit_nonrigid, "transform", "nonrigid=True", NONRIGID_OPTIONS),
]
#: One line per solver for ``--list-methods`` and the docs.
DESCRIPTIONS = {
    "fgw": "fused Gromov-Wasserstein on shared features (or feature_pairs) and geometry, "
    "partial (PASTE-like; the default)",
    "structure": "Gromov-Wasserstein on each section's own structure, no shared features "
    "(structure_only=True, --structure-only)",
    "rigid": "weighted Procrustes of the plan, refined by ICP-style local re-matching "
    "(rigid=True, the default)",
    "nonrigid": "smooth displacement field (Gaussian kernel ridge of the residual matches) "
    "on top (nonrigid=True, --nonrigid)",
}
for _name, _runner, _kind, _switch, _options in TABLE:
    SOLVERS.add(
        _name,
        _runner,
        kind=_kind,
        description=DESCRIPTIONS[_name],
        options=_options,
        selected_by=_switch,
    )

#: The switches of ``align_sections`` that choose the solvers.
SWITCHES: dict[str, Option] = {
    option.name: option
    for option in (
        Bool("rigid", True, doc="fit a rigid transform"),
        Bool("nonrigid", False, doc="add a smooth displacement field"),
        Bool("structure_only", False, doc="compare no features across the sections"),
    )
}

# options whose lower bound is excluded, and what a valid value is then
_POSITIVE = {
    "overlap": "pass a number in (0, 1], or None for a balanced plan",
    "epsilon": "pass a number > 0, or None for exact FGW",
    "nonrigid_bandwidth": "pass a number > 0",
}


def _owners() -> dict[str, Method]:
    """Option name -> the first solver declaring it."""
    owners: dict[str, Method] = {}
    for name in SOLVERS:
        method = SOLVERS.get(name)
        for option in method.options:
            owners.setdefault(option, method)
    return owners


def option_names() -> list[str]:
    """Every option ``align_sections`` checks through the registry (and the switches)."""
    return sorted({*_owners(), *SWITCHES})


def check_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` (solver options and switches) checked and converted.

    Raises
    ------
    InvalidOptionError
        For an unknown option (naming the valid ones), a value of the wrong type or out of
        range, or switches that select no transform.
    """
    owners = _owners()
    unknown = sorted(set(params) - set(owners) - set(SWITCHES))
    if unknown:
        raise InvalidOptionError(
            f"unknown option {unknown[0]!r} for align_sections; valid options: "
            f"{', '.join(option_names())}"
        )
    checked: dict[str, Any] = {}
    for key, value in params.items():
        if key in SWITCHES:
            checked[key] = SWITCHES[key].check(value, owner="align_sections")
            continue
        method = owners[key]
        checked[key] = method.check_options({key: value})[key]
        if key in _POSITIVE and checked[key] is not None and not checked[key] > 0:
            raise InvalidOptionError(
                f"{method.what} {method.name!r} option {key}={value!r} is invalid; {_POSITIVE[key]}"
            )
    return checked


def selected(*, structure_only: bool, rigid: bool, nonrigid: bool) -> tuple[Method, ...]:
    """The solvers the switches choose: the matching one first, then the transforms."""
    if not rigid and not nonrigid:
        raise InvalidOptionError(
            "rigid=False and nonrigid=False leave nothing to fit: enable one of them"
        )
    names = ["structure" if structure_only else "fgw"]
    names += [name for name, on in (("rigid", rigid), ("nonrigid", nonrigid)) if on]
    return tuple(SOLVERS.get(name) for name in names)

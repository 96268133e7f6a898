"""The imputation methods behind ``tl.impute``: one registry, every method in this file.

Each entry of :data:`METHODS` (a :class:`cellweave.registry.Registry`) names a method, its
kind (``"reference"``, ``"baseline"`` or ``"model"``), whether it needs coordinates
(``spatial``), a one-line description, its options with types and ranges, and its runner
``fn(X1, *, coords, random_state, **options) -> P`` (see :mod:`.proportions`).
``tl.impute`` checks the options against these declarations before any work, and
``cellweave impute --list-methods`` prints this table.

Adding a method: write its runner (one module of :mod:`cellweave.impute`), then add its row
to :data:`TABLE` (options declared above it) and its line to :data:`DESCRIPTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..device import device_option
from ..registry import Choice, Float, Int, Method, Option, Registry
from . import auto as _auto
from . import autoencoder as _ae
from . import baselines as _bl
from . import mf as _mf
from . import mixture as _mixture

__all__ = ["METHODS", "ImputeMethod", "Values", "get_method"]

#: Arguments every runner takes besides its options.
FIXED = ("coords", "random_state")


@dataclass(frozen=True)
class ImputeMethod(Method):
    """A registered imputation method (:class:`cellweave.registry.Method` plus two views)."""

    @property
    def fn(self) -> Callable[..., np.ndarray]:
        """The runner ``fn(X1, *, coords, random_state, **options) -> P``."""
        return self.runner

    @property
    def spatial(self) -> bool:
        """Whether the method needs spot coordinates."""
        return bool(self.meta.get("spatial", False))

    @property
    def reports_choice(self) -> bool:
        """Whether the runner takes ``return_info=True`` and then returns ``(P, info)`` with
        ``info["chosen"]``: what its inner split chose (``tl.impute`` records it)."""
        return bool(self.meta.get("reports_choice", False))

    @property
    def uses_coords(self) -> bool:
        """Whether the method uses spot coordinates: the spatial ones, and ``auto`` (its
        spatial loss; required unless ``tl.impute(spatial_key=None)``)."""
        return self.spatial or bool(self.meta.get("uses_coords", False))


@dataclass(frozen=True)
class Values(Option):
    """An option that takes ``"auto"`` (``auto``: search a grid), one number (``scalar``)
    and/or a list of numbers to search (``many``), each of ``type`` within ``low``/``high``."""

    auto: bool = False
    scalar: bool = True
    many: bool = False

    def check(self, value: Any, *, owner: str) -> Any:
        """``value`` checked (numbers converted; a list stays a list)."""
        if isinstance(value, str):
            if self.auto and value == "auto":
                return value
            raise self._error(value, owner)
        if isinstance(value, list | tuple | np.ndarray):
            if not self.many or len(value) == 0:
                raise self._error(value, owner)
            return [self._one(v, owner) for v in value]
        if value is not None and not self.scalar:
            raise self._error(value, owner)
        return self._one(value, owner)

    def _one(self, value: Any, owner: str) -> Any:
        return Option.check(self, value, owner=owner)

    def expects(self) -> str:
        """What a valid value looks like, in words."""
        bounds = Option(
            self.name, self.type, low=self.low, high=self.high, low_open=self.low_open
        ).expects()
        bounds = bounds.removeprefix("pass an integer").removeprefix("pass a number")
        bounds = bounds.removeprefix("pass a finite number")
        one, several = ("an integer", "integers") if self.type is int else ("a number", "numbers")
        forms = (["'auto'"] if self.auto else []) + ([one + bounds] if self.scalar else [])
        if self.many:
            forms.append(f"a list of {several}{bounds}")
        if self.allow_none:
            forms.append("None")
        return "pass " + " or ".join(forms)


def _values(name, type_, default, *, low=None, high=None, **how) -> Values:
    allow_none = how.pop("allow_none", False)
    return Values(name, type_, default, low, high, None, allow_none, "", **how)


def _positive(name: str, default: float, **how: Any) -> Option:
    """A finite number > 0 (learning rates, scales)."""
    return Float(name, default, low=0, low_open=True, **how)


# ----------------------------------------------------------------------------- options

_PRIOR = Float("prior", 30.0, low=0, doc="pseudo-molecules of the pooled profile per spot")
_AVERAGE = Choice("average", "counts", ("counts", "proportions"))
_SHRINK = Float("prior", None, low=0, allow_none=True, doc="None: chosen by an inner split")
_N_COMPS = Int("n_comps", 30, low=1, doc="principal components of the expression space")
_PSEUDOCOUNT = Float("pseudocount", _bl.RAW_PSEUDOCOUNT, low=0)
_SIMILARITY = [
    Choice("similarity", None, ("gaussian", "correlation"), allow_none=True),
    Option("similarity_features", object, None, doc="'image' or an (n_spots, k) array"),
]
_GATE = [
    *_SIMILARITY,
    _positive("similarity_scale", 1.0),
    Float("similarity_threshold", 0.0),
    _N_COMPS,
]
_WEIGHTS = _values("weights", float, (1.0, 0.5), low=0, scalar=False, many=True)
_LIKELIHOOD = Choice("likelihood", "poisson", ("poisson", "multinomial", "nb", "zinb", "mse"))
#: ``auto``'s: ``"auto"`` tests the counts for technical dropout (:mod:`.zeros`).
_AUTO_LIKELIHOOD = Choice("likelihood", "auto", ("auto", *_LIKELIHOOD.choices))
_SPACE = Choice("space", "latent", ("genes", "latent"))
_POSTERIOR = Choice(
    "posterior", "auto", ("auto", "on", "off"), doc="each spot's own counts on top of the blend"
)
_DEVICE = device_option("device", "auto")
#: Options of the models' spatial loss (:func:`.spatial_loss.build_spatial_loss`).
_SPATIAL_LOSS = [_WEIGHTS, *_SIMILARITY, Int("n_neighbors", 6, low=1)]

#: Options of the neural matrix factorisation (``mf``; ``auto`` forwards them too).
MF_OPTIONS = [
    Int("n_latent", 64, low=1),
    _values("alpha", float, "auto", low=0, auto=True, many=True),
    _values("spatial_weight", float, "auto", low=0, auto=True, many=True),
    _SPACE,
    *_SPATIAL_LOSS,
    _LIKELIHOOD,
    Int("max_epochs", 15, low=1),
    _positive("lr", 0.05),
    _values("batch_size", int, "auto", low=1, auto=True, allow_none=True),
    _DEVICE,
]
#: Options of the spatial autoencoder (``ae``).
AE_OPTIONS = [
    Int("n_latent", 16, low=1),
    _values("hidden", int, (128,), low=1, scalar=False, many=True),
    Float("dropout", 0.1, low=0, high=1, high_open=True),
    Float("spatial_weight", 0.01, low=0),
    _SPACE,
    *_SPATIAL_LOSS,
    _LIKELIHOOD,
    Int("max_epochs", 100, low=1),
    Int("patience", 5, low=1),
    _positive("lr", 3e-3),
    Int("batch_size", None, low=1, allow_none=True),
    _DEVICE,
]
#: Options of the mixture of programs (``mixture``; ``auto`` forwards all but ``max_iter``).
MIXTURE_OPTIONS = [
    _values("rank", int, "auto", low=1, auto=True),
    Int("max_rank", 40, low=1),
    _values("prior", float, "auto", low=0, auto=True, many=True),
    Int("max_iter", _mixture.INNER_ITER, low=1),
]


def _without(options: list[Option], *names: str) -> list[Option]:
    return [o for o in options if o.name not in names]


#: Options of the baselines with more than one.
KNN_OPTIONS = [Int("n_neighbors", 15, low=1), _N_COMPS, _AVERAGE, _PRIOR]
SPATIAL_KNN_OPTIONS = [Int("n_neighbors", 7, low=1), _AVERAGE, _PRIOR, *_GATE]
DIFFUSION_OPTIONS = [
    Int("n_neighbors", 15, low=1),
    Int("ka", 5, low=1),
    Int("t", 2, low=1),
    _N_COMPS,
    _AVERAGE,
    Float("prior", 5.0, low=0),
]
RINGS_OPTIONS = [
    _WEIGHTS,
    Float("self_weight", 1.0, low=0),
    Choice("graph", "auto", ("auto", "grid", "knn", "radius")),
    Int("n_neighbors", 6, low=1),
    _AVERAGE,
    _PRIOR,
    *_GATE,
]
NMF_OPTIONS = [Int("rank", 10, low=1), Int("max_iter", 100, low=1), Float("prior", 10.0, low=0)]
#: Options of ``auto``: the blend, then what it forwards to ``mf`` and ``mixture``.
AUTO_OPTIONS = [
    _values("blend", float, "auto", low=0, high=1, auto=True, many=True),
    _values("smooth", float, "auto", low=0, high=1, auto=True, many=True),
    _POSTERIOR,
    *_without(MF_OPTIONS, "likelihood"),
    _AUTO_LIKELIHOOD,
    *_without(MIXTURE_OPTIONS, "max_iter"),
]

# ----------------------------------------------------------------------------- registry

#: Every method, in the order ``--list-methods`` shows them: name, runner, kind, whether it
#: needs spot coordinates (``spatial``), and its options.
TABLE: list[tuple[str, Callable[..., np.ndarray], str, bool, list[Option]]] = [
    ("raw", _bl.raw, "reference", False, [_PSEUDOCOUNT]),
    ("gene_mean", _bl.gene_mean, "reference", False, [_PSEUDOCOUNT]),
    ("shrinkage", _bl.shrinkage, "baseline", False, [_SHRINK]),
    ("knn", _bl.knn, "baseline", False, KNN_OPTIONS),
    ("diffusion", _bl.diffusion, "baseline", False, DIFFUSION_OPTIONS),
    ("spatial_knn", _bl.spatial_knn, "baseline", True, SPATIAL_KNN_OPTIONS),
    ("rings", _bl.rings, "baseline", True, RINGS_OPTIONS),
    ("nmf", _bl.nmf, "baseline", False, NMF_OPTIONS),
    ("mf", _mf.mf, "model", True, MF_OPTIONS),
    ("mf_nospatial", _mf.mf_nospatial, "model", False, _without(MF_OPTIONS, "spatial_weight")),
    ("ae", _ae.ae, "model", True, AE_OPTIONS),
    ("ae_nospatial", _ae.ae_nospatial, "model", False, _without(AE_OPTIONS, "spatial_weight")),
    ("mixture", _mixture.mixture, "model", False, MIXTURE_OPTIONS),
    ("auto", _auto.auto, "model", False, AUTO_OPTIONS),
]

#: One line per method for ``--list-methods`` and the docs.
DESCRIPTIONS = {
    "raw": "observed proportions of X1 (pseudocount 1e-3 per entry)",
    "gene_mean": "one profile for all spots: pooled proportions of X1",
    "shrinkage": "each spot's counts shrunk towards the gene mean (strength from an inner split)",
    "knn": "mean over the k nearest spots in expression space (PCA, cosine, self included)",
    "diffusion": "MAGIC-like diffusion of proportions over the expression kNN graph",
    "spatial_knn": "mean over the k spatially nearest spots (self included)",
    "rings": "order-weighted ring smoothing (self 1, order 1 weight 1, order 2 weight 0.5)",
    "nmf": "non-negative matrix factorization with KL (Poisson) loss",
    "mf": "neural matrix factorisation (Poisson; likelihood='zinb' for dropout) with the "
    "spatial loss; penalties chosen by an inner molecular split",
    "mf_nospatial": "neural matrix factorisation without the spatial loss (mf, spatial_weight=0)",
    "ae": "autoencoder (Poisson) with the spatial loss, early-stopped on an inner molecular split",
    "ae_nospatial": "autoencoder without the spatial loss (ae, spatial_weight=0)",
    "mixture": "Poisson NMF (mixture of programs) with rank and shrinkage chosen by an "
    "inner molecular split",
    "auto": "the measured best default: a blend of MF with the spatial loss, the "
    "mixture of programs and the expression-space smoother, tuned and blended by an inner "
    "molecular split, then each spot's own counts on top (Gamma-Poisson posterior); where "
    "the counts show technical dropout (zeros a negative binomial rules out), MF with the "
    "ZINB likelihood instead",
}

#: Methods that do not need coordinates but use them (``auto``: its spatial loss); they
#: require them too unless ``tl.impute(spatial_key=None)`` (see ``ImputeMethod.uses_coords``).
USES_COORDS = ("auto",)
#: Methods whose runner reports what its inner split chose (``ImputeMethod.reports_choice``).
REPORTS_CHOICE = ("mf", "mf_nospatial", "auto")

METHODS = Registry("imputation method", entry=ImputeMethod)
for _name, _runner, _kind, _spatial, _options in TABLE:
    METHODS.add(
        _name,
        _runner,
        kind=_kind,
        spatial=_spatial,
        uses_coords=_name in USES_COORDS,  # or spatial: ImputeMethod.uses_coords
        reports_choice=_name in REPORTS_CHOICE,
        description=DESCRIPTIONS[_name],
        options=_options,
    )


def get_method(name: str) -> ImputeMethod:
    """The registered method called ``name`` (``InvalidOptionError`` listing the choices)."""
    return METHODS.get(name)

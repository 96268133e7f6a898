"""Technical dropout, detected from the counts: zeros where a negative binomial rules them out.

UMI counts are not zero-inflated: given each spot's expected counts, their zeros are those
of a negative binomial (Svensson 2020, *Droplet scRNA-seq is not zero-inflated*).
Technical dropout (an entry lost whatever its expected count) empties entries where a
molecule was all but certain; a smooth mean that misses some biology (a cell unlike its
neighbours) adds zeros too, but where the expected count is low, not where it is high.
So the test looks only where the NB leaves no room for a zero (:func:`excess_zeros`):

1. a smooth mean ``mu_ij = s_i P_ij`` of every entry, from the expression-space diffusion
   (:func:`.baselines.neighbours.diffusion`: each spot's proportions averaged with those of
   similar spots, whose holes lie elsewhere) and the spot's library ``s_i``;
2. per gene, the NB dispersion ``phi_j`` by the method of moments about that mean
   (:func:`.posterior.extra_poisson_variance`; dropout inflates it, which only makes the
   NB more generous with zeros, the test more conservative);
3. the NB's zero probability ``p0_ij = (1 + phi_j mu_ij)^(-1 / phi_j)``, and the entries
   where it is below :data:`ALPHA` (a zero there is significant at that level). On them,
   the moment estimate of a zero-inflated NB's dropout rate (``zeros = pi + (1 - pi) p0``)
   is

       ``pi = sum (1[x_ij = 0] - p0_ij) / sum (1 - p0_ij)``.

``pi`` (``excess_zeros``) estimates the share of molecule-bearing entries lost beyond the
NB: about 0 on UMI data, close to the dropout rate where entries are zeroed at random.
Dropout is declared when ``pi`` exceeds :data:`ALPHA` itself, i.e. when the unexpected
zeros on those entries outnumber the most the NB allows there, by more than
:data:`Z_THRESHOLD` standard errors (small data). The statistic on every benchmark data
set is in ``benchmarks/results/impute_dropout.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from .baselines.neighbours import diffusion
from .posterior import extra_poisson_variance

__all__ = [
    "ALPHA",
    "Z_THRESHOLD",
    "ZeroTest",
    "choose_likelihood",
    "excess_zeros",
    "nb_zero_probability",
    "tests_zeros",
]

#: Entries tested: those where the NB gives a zero less than this probability; dropout is
#: declared where the excess zeros on them exceed this share too.
ALPHA = 0.05
#: Standard errors by which the estimate must clear :data:`ALPHA` (small data).
Z_THRESHOLD = 3.0


@dataclass(frozen=True)
class ZeroTest:
    """Result of :func:`excess_zeros`: ``excess_zeros``, the estimated dropout rate ``pi``
    on the tested entries (module docstring; about 0, or slightly negative, without
    dropout), its binomial ``standard_error``, and ``tested``, the fraction of all entries
    tested (NB zero probability below :data:`ALPHA`)."""

    excess_zeros: float
    standard_error: float
    tested: float

    @property
    def dropout(self) -> bool:
        """Whether the zeros show technical dropout (module docstring)."""
        return bool(self.excess_zeros - Z_THRESHOLD * self.standard_error > ALPHA)

    def summary(self) -> dict[str, float]:
        """The statistic, rounded, as recorded in ``uns[key]["params"]["chosen"]``."""
        return {
            "excess_zeros": round(self.excess_zeros, 4),
            "excess_zeros_se": round(self.standard_error, 4),
        }


def nb_zero_probability(mu: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``(1 + phi mu)^(-1/phi)`` per entry (``phi`` per gene, > 0; Poisson's ``exp(-mu)``
    as ``phi -> 0``), computed in place of ``mu``."""
    mu *= phi
    np.log1p(mu, out=mu)
    mu /= -phi
    return np.exp(mu, out=mu)


def excess_zeros(X, P: np.ndarray | None = None, *, random_state: int = 0) -> ZeroTest:
    """Zeros of ``X`` where a negative binomial at a smooth mean rules them out.

    Parameters
    ----------
    X
        Spots x genes counts (CSR).
    P
        Smooth proportions (rows sum to 1) to test against; default: the expression-space
        diffusion of ``X`` (:func:`.baselines.neighbours.diffusion`).
    random_state
        Seed of the diffusion's PCA.

    Returns
    -------
    :class:`ZeroTest`; ``.dropout`` is the decision.
    """
    X = sparse.csr_matrix(X, dtype=np.float64)
    if P is None:
        P = diffusion(X, random_state=random_state)
    s = np.asarray(X.sum(axis=1)).ravel()
    p0 = nb_zero_probability(P * s[:, None], extra_poisson_variance(X, P))
    tested = p0 < ALPHA
    zero = np.ones(X.shape, dtype=bool)
    zero[np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)), X.indices] = X.data == 0
    n = int(np.count_nonzero(tested))
    if n == 0:
        return ZeroTest(0.0, 0.0, 0.0)
    observed = np.count_nonzero(zero & tested)
    expected = float(p0[tested].sum())
    bearing = n - expected  # entries the NB expects to hold molecules, > 0.95 n
    rate = observed / n
    se = np.sqrt(rate * (1.0 - rate) / n) * n / bearing
    return ZeroTest(float((observed - expected) / bearing), float(se), n / p0.size)


def tests_zeros(params: dict[str, Any]) -> bool:
    """Whether :func:`choose_likelihood` runs the test for ``params`` (``likelihood`` is
    ``"auto"`` or absent)."""
    return params.get("likelihood", "auto") == "auto"


def choose_likelihood(
    X, params: dict[str, Any], *, random_state: int = 0, smooth: np.ndarray | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``likelihood="auto"`` (or absent) resolved by :func:`excess_zeros`: ``"zinb"`` where
    the counts show technical dropout, else left out (the Poisson default). Any other
    value is the user's and stands, untested.

    ``smooth``: the diffusion of ``X`` when the caller has it (``auto`` blends the same
    smoother in later), else computed here.

    Returns the options to fit with and what to record in ``chosen`` (``{}`` when the
    user chose).
    """
    if not tests_zeros(params):
        return params, {}
    params = {k: v for k, v in params.items() if k != "likelihood"}
    test = excess_zeros(X, smooth, random_state=random_state)
    if test.dropout:
        params["likelihood"] = "zinb"
    return params, {"likelihood": params.get("likelihood", "poisson"), **test.summary()}

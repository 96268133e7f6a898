"""The result of :func:`~cellweave.mapping.api.map_cells`: a sparse cells x spots plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._params import jsonable
from ..errors import InputError, InvalidOptionError, MissingKeyError

__all__ = ["FRACTIONS_KEY", "UNS_KEY", "VIEWS_KEY", "Mapping", "output_keys", "result_keys"]

#: Key of the mapping in ``adata_sp.uns`` when ``map_cells`` gets no ``key_added``.
UNS_KEY = "mapping"
#: Key of the fractions in ``adata_sp.obsm`` when ``map_cells`` gets no ``key_added``.
FRACTIONS_KEY = "cell_type_fractions"


#: Key of a model solver's per-spot view weights in ``adata_sp.obsm`` without ``key_added``.
VIEWS_KEY = "view_weights"


def result_keys(key_added: str | None) -> tuple[str, str]:
    """``(uns key, obsm key of the fractions)`` of ``map_cells``: both from ``key_added``."""
    if key_added is None:
        return UNS_KEY, FRACTIONS_KEY
    if not isinstance(key_added, str) or not key_added:
        raise InvalidOptionError(f"key_added={key_added!r} is invalid; pass a non-empty string")
    return key_added, f"{key_added}_fractions"


def output_keys(key_added: str | None) -> dict[str, str]:
    """The ``obsm`` keys ``map_cells(..., key_added=key_added)`` writes its per-spot outputs
    under: ``{"fractions_key": ..., "views_key": ...}`` (``cell_type_fractions`` /
    ``view_weights``, or ``f"{key_added}_fractions"`` / ``f"{key_added}_view_weights"``).

    The one rule from ``key_added`` to these names; its keys are the keyword arguments of
    :func:`cellweave.plotting.mapping_plots`, so ``mapping_plots(adata, path,
    **output_keys(key_added))`` draws what that call wrote.
    """
    _, fractions_key = result_keys(key_added)
    views_key = VIEWS_KEY if key_added is None else f"{key_added}_{VIEWS_KEY}"
    return {"fractions_key": fractions_key, "views_key": views_key}


@dataclass
class Mapping:
    """A mapping of reference cells onto spots.

    Attributes
    ----------
    plan
        ``(n_cells, n_spots)`` sparse CSR matrix of non-negative masses: ``plan[i, j]`` is how
        much of cell ``i`` is placed at spot ``j``. Only the cells' nearest candidates are
        stored, never a dense matrix beyond a size limit.
    cell_names, spot_names
        Names of the rows (``adata_sc.obs_names``) and columns (``adata_sp.obs_names``).
    genes
        The shared genes the mapping was computed on.
    cell_totals, spot_totals
        Totals of every cell / spot over ``genes`` (input scale); used to predict genes as
        ratios (see :meth:`predict`).
    method
        The method that produced the plan.
    params
        Its parameters (and the feature options).
    outputs
        What else the method computed per spot or cell (the attention mapper's ``latent``,
        ``view_weights`` and ``cell_latent``), kept in memory only (not in :meth:`to_uns`).
    """

    plan: sparse.csr_matrix
    cell_names: pd.Index
    spot_names: pd.Index
    genes: pd.Index
    cell_totals: np.ndarray
    spot_totals: np.ndarray
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _weights: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.plan = sparse.csr_matrix(self.plan, dtype=np.float64)
        self.cell_names = pd.Index(self.cell_names).astype(str)
        self.spot_names = pd.Index(self.spot_names).astype(str)
        self.genes = pd.Index(self.genes).astype(str)
        self.cell_totals = np.asarray(self.cell_totals, dtype=np.float64)
        self.spot_totals = np.asarray(self.spot_totals, dtype=np.float64)
        if self.plan.shape != (len(self.cell_names), len(self.spot_names)):
            raise InputError(
                f"plan has shape {self.plan.shape} but there are {len(self.cell_names)} cells "
                f"and {len(self.spot_names)} spots"
            )

    # ------------------------------------------------------------------ shape
    @property
    def n_cells(self) -> int:
        return self.plan.shape[0]

    @property
    def n_spots(self) -> int:
        return self.plan.shape[1]

    @property
    def spot_mass(self) -> np.ndarray:
        """Mass received by each spot (column sums)."""
        return np.asarray(self.plan.sum(axis=0)).ravel()

    @property
    def cell_mass(self) -> np.ndarray:
        """Mass sent by each cell (row sums)."""
        return np.asarray(self.plan.sum(axis=1)).ravel()

    def spot_weights(self) -> sparse.csr_matrix:
        """``(n_spots, n_cells)`` weights of the cells in every spot (rows sum to 1; all-zero
        rows for spots that received no mass)."""
        if self._weights is None or self._weights[0] is not self.plan:
            mass = self.spot_mass
            scale = np.divide(1.0, mass, out=np.zeros_like(mass), where=mass > 0)
            W = self.plan.T.tocsr()
            W.data *= np.repeat(scale, np.diff(W.indptr))
            self._weights = (self.plan, W)
        return self._weights[1]

    # ------------------------------------------------------------------ projections
    def project(self, X_sc: Any) -> np.ndarray:
        """Average of the cells' rows of ``X_sc`` in every spot, weighted by the plan.

        Parameters
        ----------
        X_sc
            ``(n_cells, n_features)`` values of the reference cells (dense or sparse).

        Returns
        -------
        ``(n_spots, n_features)`` array; spots without mass get the average over all cells.
        """
        X = _rows(X_sc, self.n_cells, "X_sc")
        W = self.spot_weights()
        out = W @ X
        out = out.toarray() if sparse.issparse(out) else np.asarray(out, dtype=np.float64)
        empty = self.spot_mass <= 0
        if empty.any():
            out[empty] = np.asarray(X.mean(axis=0), dtype=np.float64).ravel()
        return out

    def predict(self, X_sc: Any, *, scale: str = "counts") -> np.ndarray:
        """Predict genes at every spot from the reference cells' values ``X_sc``.

        The relative expression of a gene at spot ``j`` is the ratio of the plan-weighted
        sums ``sum_i w_ji x_ig / sum_i w_ji t_i`` (``t_i``: the cell's total over the mapped
        genes), which pools sparse reference counts before dividing.

        Parameters
        ----------
        X_sc
            ``(n_cells, n_genes)`` reference values of the genes to predict.
        scale
            ``"counts"`` (default): relative expression times the spot's total over the
            mapped genes, i.e. the expected value on the spatial data's own scale;
            ``"proportions"``: the relative expression only (depth-free).

        Returns
        -------
        ``(n_spots, n_genes)`` float64 array.
        """
        if scale not in ("counts", "proportions"):
            raise InputError(f"scale must be 'counts' or 'proportions', got {scale!r}")
        num = self.project(X_sc)
        den = self.project(self.cell_totals[:, None]).ravel()
        rel = num / np.where(den > 0, den, 1.0)[:, None]
        if scale == "proportions":
            return rel
        return rel * self.spot_totals[:, None]

    def cell_type_fractions(self, labels: Sequence[Any] | pd.Series) -> pd.DataFrame:
        """Fraction of every label among the cells mapped to each spot (rows sum to 1).

        Parameters
        ----------
        labels
            One label per reference cell (e.g. ``adata_sc.obs["cell_type"]``); missing
            labels (NaN) are ignored.

        Returns
        -------
        DataFrame ``(n_spots, n_labels)`` indexed by spot name; spots without mass get the
        labels' overall frequencies.
        """
        labels = pd.Series(np.asarray(labels, dtype=object), dtype="category")
        if len(labels) != self.n_cells:
            raise InputError(
                f"labels has {len(labels)} values for {self.n_cells} cells: pass one label "
                "per reference cell, e.g. adata_sc.obs['cell_type']"
            )
        codes = labels.cat.codes.to_numpy()
        ok = codes >= 0
        n_types = len(labels.cat.categories)
        onehot = sparse.csr_matrix(
            (np.ones(ok.sum()), (np.flatnonzero(ok), codes[ok])), shape=(self.n_cells, n_types)
        )
        mass = np.asarray((self.plan.T @ onehot).todense(), dtype=np.float64)
        total = mass.sum(axis=1, keepdims=True)
        overall = np.bincount(codes[ok], minlength=n_types).astype(np.float64)
        overall /= max(overall.sum(), 1.0)
        frac = np.where(total > 0, mass / np.where(total > 0, total, 1.0), overall[None, :])
        return pd.DataFrame(
            frac, index=self.spot_names, columns=pd.Index(labels.cat.categories).astype(str)
        )

    def assign(self) -> np.ndarray:
        """Most likely spot (column index) of every cell; ``-1`` for unmapped cells."""
        best = np.asarray(self.plan.argmax(axis=1)).ravel()
        return np.where(self.cell_mass > 0, best, -1)

    def cell_location(self, coords: np.ndarray | None = None) -> pd.DataFrame:
        """Per cell: the spot holding the largest share of its mass, that share (column
        ``probability``: ``plan[cell, spot] / plan[cell].sum()``, a mass share, not a
        confidence), and the spot's coordinates.

        Parameters
        ----------
        coords
            ``(n_spots, d)`` spot coordinates to report (optional).
        """
        best = self.assign()
        mass = self.cell_mass
        top = np.asarray(self.plan.max(axis=1).todense()).ravel()
        share = np.divide(top, mass, out=np.zeros_like(mass), where=mass > 0)
        frame = pd.DataFrame(
            {
                "spot": pd.Categorical(
                    np.where(best >= 0, self.spot_names.to_numpy()[best], None),
                    categories=self.spot_names,
                ),
                "probability": share,
            },
            index=self.cell_names,
        )
        if coords is not None:
            coords = np.asarray(coords, dtype=np.float64)
            xy = np.full((self.n_cells, coords.shape[1]), np.nan)
            xy[best >= 0] = coords[best[best >= 0]]
            for d in range(coords.shape[1]):
                frame["xyz"[d] if d < 3 else f"dim{d}"] = xy[:, d]
        return frame

    # ------------------------------------------------------------------ storage
    def to_uns(self) -> dict[str, Any]:
        """The mapping as a dict storable in ``adata_sp.uns[key_added]`` (h5ad-writable;
        ``params`` JSON-safe, ``None`` kept as the string ``"None"`` as mapping entries have
        always stored it)."""
        return {
            "method": self.method,
            "params": _none_as_string(jsonable(self.params)),
            "plan": self.plan,
            "cell_names": self.cell_names.to_numpy(dtype=str),
            "genes": self.genes.to_numpy(dtype=str),
            "cell_totals": self.cell_totals,
            "spot_totals": self.spot_totals,
        }

    @classmethod
    def from_adata(cls, adata_sp: AnnData, *, key: str = UNS_KEY) -> Mapping:
        """Rebuild the mapping stored by ``map_cells`` in ``adata_sp.uns[key]``."""
        if key not in adata_sp.uns or "plan" not in adata_sp.uns[key]:
            raise MissingKeyError(
                f"adata_sp.uns[{key!r}] holds no mapping: run cellweave.tl.map_cells(adata_sc, "
                "adata_sp) first, or pass the Mapping it returned"
            )
        d = adata_sp.uns[key]
        return cls(
            plan=d["plan"],
            cell_names=pd.Index(np.asarray(d["cell_names"]).astype(str)),
            spot_names=adata_sp.obs_names,
            genes=pd.Index(np.asarray(d["genes"]).astype(str)),
            cell_totals=np.asarray(d["cell_totals"]),
            spot_totals=np.asarray(d["spot_totals"]),
            method=str(d.get("method", "unknown")),
            params=dict(d.get("params", {})),
        )

    def __repr__(self) -> str:
        return (
            f"Mapping(method={self.method!r}, {self.n_cells} cells x {self.n_spots} spots, "
            f"{self.plan.nnz} entries, {len(self.genes)} genes)"
        )


def _rows(X: Any, n: int, name: str) -> Any:
    if isinstance(X, pd.DataFrame):
        X = X.to_numpy()
    if sparse.issparse(X):
        X = sparse.csr_matrix(X, dtype=np.float64)
    else:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[:, None]
    if X.shape[0] != n:
        raise InputError(f"{name} has {X.shape[0]} rows for {n} reference cells")
    return X


def _none_as_string(value: Any) -> Any:
    """JSON-safe params with ``None`` as the string ``"None"``, as mapping entries have always
    stored it."""
    if value is None:
        return "None"
    if isinstance(value, dict):
        return {k: _none_as_string(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_none_as_string(v) for v in value]
    return value

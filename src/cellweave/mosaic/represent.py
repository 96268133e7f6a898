"""Per-modality encoder inputs, fitted once on (a sample of) the cells and applied to any rows.

Each representation turns a block of raw count rows (CSR) into a dense float32 block the
modality's encoder reads. The fitted parameters are plain arrays (:meth:`state`), so a saved
model applies exactly the same transform to new or streamed data.

``"lognorm"``
    ``log1p(1e4 * x / total)`` over all (selected) features (RNA; the scVI/MultiVI input).
``"pca"``
    ``lognorm`` centred and projected on its top principal axes (RNA; smaller encoder input).
``"lsi"``
    TF-IDF (``log1p(1e4 * tf * idf)``, ``tf = x / total`` of the binarized row, ``idf =
    n_cells / (1 + cells open)``) projected on a truncated SVD; the first component (tracks
    depth) is dropped and each component standardized (ATAC; Signac/GLUE practice).
``"clr"``
    Centred log ratio per cell, ``log1p(x) - mean_f log1p(x)`` (protein; muon's ``pp.clr``).
``"binary"``
    ``x > 0`` as 0/1 (ATAC; MultiVI's input), dense.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ..errors import InputError
from ..pp import log_normalize

__all__ = ["REPRESENTATIONS", "Representation"]

REPRESENTATIONS = ("lognorm", "pca", "lsi", "clr", "binary")
_TARGET_SUM = 1e4


def _row_scale(X: sparse.csr_matrix, target: float) -> sparse.csr_matrix:
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target, totals, out=np.zeros_like(totals), where=totals > 0)
    return sparse.csr_matrix(sparse.diags(scale.astype(np.float32)) @ X)


def _tfidf(X: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    B = sparse.csr_matrix(X, dtype=np.float32, copy=True)
    B.data = (B.data > 0).astype(np.float32)
    Y = _row_scale(B, 1.0) @ sparse.diags(idf.astype(np.float32))
    Y = sparse.csr_matrix(Y)
    Y.data = np.log1p(_TARGET_SUM * Y.data)
    return Y


def _svd(Y: sparse.csr_matrix, n_comps: int, seed: int, center: np.ndarray | None) -> np.ndarray:
    """Top right singular vectors of ``Y - center`` (``(n_comps, n_features)``) by a randomized
    SVD (Halko et al. 2011) that centres implicitly, so ``Y`` stays sparse."""
    rng = np.random.default_rng(seed)
    mu = np.zeros(Y.shape[1]) if center is None else np.asarray(center, dtype=np.float64)

    def right(X: np.ndarray) -> np.ndarray:  # (Y - 1 mu) @ X
        return np.asarray(Y @ X) - np.outer(np.ones(Y.shape[0]), mu @ X)

    def left(X: np.ndarray) -> np.ndarray:  # (Y - 1 mu).T @ X
        return np.asarray(Y.T @ X) - np.outer(mu, X.sum(0))

    k = min(n_comps + 10, min(Y.shape))
    Q, _ = np.linalg.qr(right(rng.standard_normal((Y.shape[1], k))))
    for _ in range(4):
        Q, _ = np.linalg.qr(left(Q))
        Q, _ = np.linalg.qr(right(Q))
    B = left(Q).T  # (k, n_features) = Q.T @ (Y - 1 mu)
    _, _, vt = np.linalg.svd(B, full_matrices=False)
    return vt[:n_comps].astype(np.float32)


class Representation:
    """A fitted map from raw count rows to the encoder input of one modality.

    Parameters
    ----------
    kind
        One of ``"lognorm"``, ``"pca"``, ``"lsi"``, ``"clr"``, ``"binary"``.
    n_comps
        Components of ``"pca"`` / ``"lsi"`` (capped by the data's size).
    """

    def __init__(self, kind: str, *, n_comps: int = 50) -> None:
        if kind not in REPRESENTATIONS:
            raise InputError(
                f"representation {kind!r} is unknown: choose one of {', '.join(REPRESENTATIONS)}"
            )
        self.kind = kind
        self.n_comps = int(n_comps)
        self.arrays: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ fit / transform
    def fit(self, X: sparse.csr_matrix, *, random_state: int = 0) -> Representation:
        """Fit on the count rows ``X`` (cells that measured the modality)."""
        X = sparse.csr_matrix(X)
        n, p = X.shape
        if self.kind == "pca":
            Y = log_normalize(X)
            mean = np.asarray(Y.mean(axis=0)).ravel().astype(np.float32)
            k = max(1, min(self.n_comps, n - 1, p - 1))
            comps = _svd(Y, k, random_state, mean)
            proj = np.asarray(Y @ comps.T) - mean @ comps.T
            # one scale for all components: keeps their variance ranking
            scale = np.float32(max(float(np.sqrt((proj**2).mean())), 1e-8))
            self.arrays = {"mean": mean, "components": comps, "std": np.full(k, scale)}
        elif self.kind == "lsi":
            opened = np.asarray((X > 0).sum(axis=0)).ravel().astype(np.float64)
            idf = (n / (1.0 + opened)).astype(np.float32)
            Y = _tfidf(X, idf)
            k = max(1, min(self.n_comps + 1, n - 1, p - 1))
            comps = _svd(Y, k, random_state, None)
            comps = comps[1:] if k > 1 else comps
            proj = np.asarray(Y @ comps.T)
            self.arrays = {
                "idf": idf,
                "components": comps,
                "mean": proj.mean(0).astype(np.float32),
                "std": _std(proj),
            }
        return self

    def transform(self, X: sparse.csr_matrix) -> np.ndarray:
        """Encoder input of the count rows ``X``, dense ``(n, n_dims)`` float32."""
        X = sparse.csr_matrix(X)
        if self.kind == "lognorm":
            return log_normalize(X).toarray()
        if self.kind == "binary":
            return (X > 0).astype(np.float32).toarray()
        if self.kind == "clr":
            L = np.log1p(X.astype(np.float32).toarray())
            return L - L.mean(axis=1, keepdims=True)
        a = self.arrays
        if self.kind == "pca":
            proj = np.asarray(log_normalize(X) @ a["components"].T) - a["mean"] @ a["components"].T
            return (proj / a["std"]).astype(np.float32)
        proj = np.asarray(_tfidf(X, a["idf"]) @ a["components"].T)
        return ((proj - a["mean"]) / a["std"]).astype(np.float32)

    def n_dims(self, n_features: int) -> int:
        """Width of the transformed rows."""
        if self.kind in ("pca", "lsi"):
            return int(self.arrays["components"].shape[0])
        return int(n_features)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, np.ndarray]:
        """Fitted arrays (to save next to the weights)."""
        return dict(self.arrays)

    @classmethod
    def from_state(
        cls, kind: str, arrays: dict[str, np.ndarray], *, n_comps: int = 50
    ) -> Representation:
        """Rebuild a fitted representation from :meth:`state`."""
        rep = cls(kind, n_comps=n_comps)
        rep.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        return rep


def _std(proj: np.ndarray) -> np.ndarray:
    sd = np.asarray(proj).std(axis=0)
    return np.where(sd > 0, sd, 1.0).astype(np.float32)

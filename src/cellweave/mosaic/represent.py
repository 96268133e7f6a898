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

__all__ = [
    "Representation",
    "Transform",
    "centred_svd",
    "register_representation",
    "representation_names",
]

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


class Transform:
    """One kind of encoder input: how to fit its arrays and apply them.

    Subclass and register with :func:`register_representation` to add one (a modality kind
    that needs a new input, e.g. methylation rates, does so in its own file). ``layers`` holds
    the modality's extra matrices (rows aligned with ``X``) for kinds that have them."""

    #: extra matrices (``adata.layers``) the transform reads besides ``X``
    layers: tuple[str, ...] = ()

    def fit(
        self, X: sparse.csr_matrix, n_comps: int, seed: int, layers: dict | None
    ) -> dict[str, np.ndarray]:
        """Fitted arrays of the rows ``X`` (none by default)."""
        return {}

    def transform(
        self, arrays: dict[str, np.ndarray], X: sparse.csr_matrix, layers: dict | None
    ) -> np.ndarray:
        """Dense ``(n, n_dims)`` float32 encoder input of the rows ``X``."""
        raise NotImplementedError

    def n_dims(self, arrays: dict[str, np.ndarray], n_features: int) -> int:
        """Width of the transformed rows."""
        return int(n_features)


class _LogNorm(Transform):
    def transform(self, arrays, X, layers):
        return log_normalize(X).toarray()


class _Binary(Transform):
    def transform(self, arrays, X, layers):
        return (X > 0).astype(np.float32).toarray()


class _CLR(Transform):
    def transform(self, arrays, X, layers):
        L = np.log1p(X.astype(np.float32).toarray())
        return L - L.mean(axis=1, keepdims=True)


class _Projected(Transform):
    """A projection on fitted ``components``: ``n_dims`` is their number."""

    def n_dims(self, arrays, n_features):
        return int(arrays["components"].shape[0])


class _PCA(_Projected):
    def fit(self, X, n_comps, seed, layers):
        n, p = X.shape
        Y = log_normalize(X)
        mean = np.asarray(Y.mean(axis=0)).ravel().astype(np.float32)
        k = max(1, min(n_comps, n - 1, p - 1))
        comps = _svd(Y, k, seed, mean)
        proj = np.asarray(Y @ comps.T) - mean @ comps.T
        # one scale for all components: keeps their variance ranking
        scale = np.float32(max(float(np.sqrt((proj**2).mean())), 1e-8))
        return {"mean": mean, "components": comps, "std": np.full(k, scale)}

    def transform(self, arrays, X, layers):
        a = arrays
        proj = np.asarray(log_normalize(X) @ a["components"].T) - a["mean"] @ a["components"].T
        return (proj / a["std"]).astype(np.float32)


class _LSI(_Projected):
    def fit(self, X, n_comps, seed, layers):
        n, p = X.shape
        opened = np.asarray((X > 0).sum(axis=0)).ravel().astype(np.float64)
        idf = (n / (1.0 + opened)).astype(np.float32)
        Y = _tfidf(X, idf)
        k = max(1, min(n_comps + 1, n - 1, p - 1))
        comps = _svd(Y, k, seed, None)
        comps = comps[1:] if k > 1 else comps
        proj = np.asarray(Y @ comps.T)
        return {
            "idf": idf,
            "components": comps,
            "mean": proj.mean(0).astype(np.float32),
            "std": _std(proj),
        }

    def transform(self, arrays, X, layers):
        a = arrays
        proj = np.asarray(_tfidf(X, a["idf"]) @ a["components"].T)
        return ((proj - a["mean"]) / a["std"]).astype(np.float32)


_TRANSFORMS: dict[str, Transform] = {
    "lognorm": _LogNorm(),
    "pca": _PCA(),
    "lsi": _LSI(),
    "clr": _CLR(),
    "binary": _Binary(),
}


def register_representation(name: str, transform: Transform) -> Transform:
    """Make ``Representation(name)`` use ``transform`` (a modality kind's own input)."""
    if name in _TRANSFORMS:
        raise RuntimeError(f"representation {name!r} registered twice")
    _TRANSFORMS[name] = transform
    return transform


def representation_names() -> tuple[str, ...]:
    """Every registered representation (the built-in ones first)."""
    return tuple(_TRANSFORMS)


class Representation:
    """A fitted map from raw count rows to the encoder input of one modality.

    Parameters
    ----------
    kind
        A registered representation: ``"lognorm"``, ``"pca"``, ``"lsi"``, ``"clr"``,
        ``"binary"``, or one a modality kind adds (:func:`register_representation`).
    n_comps
        Components of ``"pca"`` / ``"lsi"`` (capped by the data's size).
    """

    def __init__(self, kind: str, *, n_comps: int = 50) -> None:
        if kind not in _TRANSFORMS:
            raise InputError(
                f"representation {kind!r} is unknown: choose one of "
                f"{', '.join(representation_names())}"
            )
        self.kind = kind
        self.n_comps = int(n_comps)
        self.arrays: dict[str, np.ndarray] = {}

    @property
    def transform_(self) -> Transform:
        return _TRANSFORMS[self.kind]

    # ------------------------------------------------------------------ fit / transform
    def fit(
        self, X: sparse.csr_matrix, *, random_state: int = 0, layers: dict | None = None
    ) -> Representation:
        """Fit on the count rows ``X`` (cells that measured the modality; ``layers``: the
        same rows of the modality's extra matrices)."""
        self.arrays = self.transform_.fit(sparse.csr_matrix(X), self.n_comps, random_state, layers)
        return self

    def transform(self, X: sparse.csr_matrix, layers: dict | None = None) -> np.ndarray:
        """Encoder input of the count rows ``X``, dense ``(n, n_dims)`` float32."""
        return self.transform_.transform(self.arrays, sparse.csr_matrix(X), layers)

    def n_dims(self, n_features: int) -> int:
        """Width of the transformed rows."""
        return self.transform_.n_dims(self.arrays, n_features)

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


#: public name of the implicitly centred randomized SVD, for kinds that fit their own input
centred_svd = _svd


def _std(proj: np.ndarray) -> np.ndarray:
    sd = np.asarray(proj).std(axis=0)
    return np.where(sd > 0, sd, 1.0).astype(np.float32)

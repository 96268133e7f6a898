"""A mosaic MuData as arrays the model indexes by row: presence masks, batches, labels,
per-modality counts (global cell order, empty rows for cells that lack the modality), library
sizes and encoder inputs.

Everything is built once from the MuData (no per-cell slicing): each modality's CSR is
re-ordered to the global cell order by one row gather, and its encoder input computed by a
fitted :class:`~.represent.Representation`. With backed modalities (``mudata.read_h5mu(...,
backed=True)``) only the library sizes are read up front; rows are read from disk in blocks
when a batch asks for them (:meth:`MosaicData.read_rows`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from .._utils import check_random_state
from ..errors import EmptyDataError, InputError, MissingKeyError
from ..pp import log_normalize
from ..validate import check_counts, check_finite, check_mudata, check_sparse
from .kinds import Head, ModalityKind, get_kind, infer_kind, kind_names, likelihood_names
from .represent import Representation

__all__ = [
    "ModalityData",
    "MosaicData",
    "UnknownLabelError",
    "default_n_comps",
    "infer_kind",
]

_FIT_CELLS = 20_000
_READ_BLOCK = 20_000


class UnknownLabelError(InputError):
    """Labels name classes the model does not know."""


def _pick(option: Any, name: str, kind: str, key: str) -> Any:
    """A per-modality option given as a value or a mapping by modality name or kind."""
    if isinstance(option, Mapping):
        if name in option:
            return option[name]
        if kind in option:
            return option[kind]
        return get_kind(kind).default(key)
    return get_kind(kind).default(key) if option is None else option


def _top_variable(X: sparse.csr_matrix, n_top: int) -> np.ndarray:
    """Indices (sorted) of the ``n_top`` features with the highest binned normalized dispersion
    of log-normalized expression (scanpy's ``flavor="seurat"``)."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(log_normalize(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(tmp, n_top_genes=int(n_top), flavor="seurat")
    return np.flatnonzero(tmp.var["highly_variable"].to_numpy())


@dataclass
class ModalityData:
    """One modality of a mosaic, in the global cell order.

    Attributes
    ----------
    name, kind, likelihood
        Modality name in the MuData, its kind and its count likelihood.
    features
        Names of the features the model uses (a selection of the modality's ``var_names``).
    feature_index
        Their positions in the modality's ``var_names``.
    present
        ``(n_cells,)`` bool: the cell measured this modality.
    rows
        ``(n_cells,)`` int: the cell's row in ``mdata.mod[name]`` (``-1`` when absent).
    library
        ``(n_cells,)`` float32: total counts (Bernoulli: open features) of the used features.
    representation
        The fitted encoder-input transform.
    counts
        In-memory CSR ``(n_cells, n_features)`` (empty rows for absent cells), ``None`` when
        the modality is read from a backed file.
    inputs
        In-memory encoder inputs ``(n_cells, n_dims)`` float32 (zeros when absent), ``None``
        when backed.
    layers
        The kind's extra matrices by name (e.g. methylation's ``"total"`` coverage), CSR in
        the global cell order like ``counts``; empty for one-matrix kinds.
    """

    name: str
    kind: str
    likelihood: str
    features: pd.Index
    feature_index: np.ndarray
    present: np.ndarray
    rows: np.ndarray
    library: np.ndarray
    representation: Representation
    counts: sparse.csr_matrix | None = None
    inputs: np.ndarray | None = None
    source: Any = field(default=None, repr=False)
    layers: dict[str, sparse.csr_matrix] = field(default_factory=dict, repr=False)

    @property
    def kind_spec(self) -> ModalityKind:
        """The kind object (identifying words, defaults, heads)."""
        return get_kind(self.kind)

    @property
    def head(self) -> Head:
        """The decoder head of the modality's likelihood."""
        return self.kind_spec.head(self.likelihood)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_inputs(self) -> int:
        return self.representation.n_dims(self.n_features)

    def read_counts(self, cells: np.ndarray) -> sparse.csr_matrix:
        """Count rows of ``cells`` (global indices; absent cells get empty rows)."""
        if self.counts is not None:
            return self.counts[cells]
        return _read_backed(self.source, self.rows[cells], self.feature_index, self.head.prepare)

    def read_layers(self, cells: np.ndarray) -> dict[str, sparse.csr_matrix]:
        """Rows of ``cells`` of the kind's extra matrices (in memory)."""
        return {name: X[cells] for name, X in self.layers.items()}


def default_n_comps(n_features: int) -> int:
    """Components of a ``pca``/``lsi`` input by default: a tenth of the features, within
    20..100.

    Measured (docs/mosaic.md): on MOp (1,677 genes, 25,734 peaks) 100 components beat 50 on
    three seeds (Total 0.612 against 0.598); on a small simulated mosaic (80 genes, 200 peaks)
    20 beat 50 and 100 (components near the feature count keep the noise)."""
    return int(np.clip(int(n_features) // 10, 20, 100))


def _read_backed(source: Any, rows: np.ndarray, cols: np.ndarray, prepare):
    """Rows ``rows`` (``-1``: an empty row) of a backed matrix, features ``cols``."""
    out_rows = np.flatnonzero(rows >= 0)
    want = rows[out_rows]
    order = np.argsort(want, kind="stable")
    sorted_rows = want[order]
    if sorted_rows.size == 0:
        block = sparse.csr_matrix((0, len(cols)), dtype=np.float32)
    elif sorted_rows[-1] - sorted_rows[0] + 1 == sorted_rows.size:  # one contiguous run
        block = sparse.csr_matrix(source[int(sorted_rows[0]) : int(sorted_rows[-1]) + 1])
    else:
        block = sparse.csr_matrix(source[sorted_rows])
    check_sparse(block, what="a block of rows read from the backed file")  # before any slicing
    if block.shape[1] != len(cols) or not np.array_equal(cols, np.arange(len(cols))):
        block = block[:, cols]
    block = prepare(sparse.csr_matrix(block, dtype=np.float32))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return _embed_rows(block[inverse], out_rows, rows.size)


def _embed_rows(block: sparse.csr_matrix, where: np.ndarray, n: int) -> sparse.csr_matrix:
    """An ``(n, p)`` CSR whose rows ``where`` are ``block``'s rows and the others empty."""
    block = sparse.csr_matrix(block)
    lengths = np.zeros(n, dtype=np.int64)
    lengths[where] = np.diff(block.indptr)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return sparse.csr_matrix((block.data, block.indices, indptr), shape=(n, block.shape[1]))


def _iter_row_blocks(source: Any, n_rows: int, step: int | None = None):
    step = _READ_BLOCK if step is None else step
    for start in range(0, n_rows, step):
        yield start, sparse.csr_matrix(source[start : min(start + step, n_rows)])


class MosaicData:
    """The arrays of a mosaic (see the module docstring); build with :meth:`from_mudata`."""

    def __init__(
        self,
        *,
        obs_names: pd.Index,
        modalities: list[ModalityData],
        batch_codes: np.ndarray,
        batch_names: list[str],
        label_codes: np.ndarray,
        label_classes: list[str],
        backed: bool,
    ) -> None:
        self.obs_names = obs_names
        self.modalities = modalities
        self.batch_codes = batch_codes
        self.batch_names = batch_names
        self.label_codes = label_codes
        self.label_classes = label_classes
        self.backed = backed

    @property
    def n_cells(self) -> int:
        return len(self.obs_names)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modalities]

    @property
    def present(self) -> np.ndarray:
        """``(n_cells, n_modalities)`` presence mask."""
        return np.stack([m.present for m in self.modalities], axis=1)

    def __getitem__(self, name: str) -> ModalityData:
        for m in self.modalities:
            if m.name == name:
                return m
        raise MissingKeyError(
            f"the model has no modality {name!r}: use one of {', '.join(self.names)}"
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mudata(
        cls,
        mdata: Any,
        *,
        batch_key: str | None,
        label_key: str | None = None,
        modalities: Sequence[str] | None = None,
        modality_types: Mapping[str, str] | None = None,
        likelihoods: Mapping[str, str] | str | None = None,
        representations: Mapping[str, str] | str | None = None,
        max_features: Mapping[str, int | None] | int | None = None,
        n_comps: int | None = None,
        label_classes: Sequence[str] | None = None,
        batch_names: Sequence[str] | None = None,
        fitted: Mapping[str, Any] | None = None,
        random_state: int = 0,
    ) -> MosaicData:
        """Check a mosaic MuData and build its arrays.

        Parameters
        ----------
        mdata
            MuData whose modalities hold the cells that measured them.
        batch_key
            ``mdata.obs`` column of batches (``None``: one batch).
        label_key
            ``mdata.obs`` column of labels, NaN for unlabelled cells (``None``: no labels).
        modalities
            Modalities to use (default: all).
        modality_types
            Modality name -> a registered kind (``"rna"`` / ``"atac"`` / ``"protein"`` /
            ``"methylation"``, see :mod:`.kinds`; default: from the name).
        likelihoods, representations, max_features
            Per modality (mapping by name or kind, or one value for all): likelihood (one its
            kind accepts: ``"nb"``, ``"zinb"``, ``"bernoulli"`` for counts, ``"binomial"``,
            ``"betabinomial"`` for methylation), encoder input (see :mod:`.represent`),
            number of most variable features kept (``None``: all). Defaults by kind: RNA
            ``nb``/``pca``/4000, ATAC ``bernoulli``/``lsi``/all, protein ``nb``/``clr``/all,
            methylation ``betabinomial``/``rate_pca``/all (coverage in ``layers["total"]``).
        n_comps
            Components of the ``pca``/``lsi`` inputs; ``None``: :func:`default_n_comps` of
            each modality's (selected) feature count.
        label_classes
            The known classes (default: the labels present). Labels outside raise
            :class:`UnknownLabelError`.
        batch_names
            The known batches (a loaded model's); other batches raise :class:`InputError`.
        fitted
            Per modality ``{"features": names, "representation": kind, "arrays": {...},
            "likelihood": ..., "kind": ...}`` from a trained model: reuse them instead of
            selecting and fitting.
        random_state
            Seed of the fitting subsample and the SVDs.
        """
        # the structure (and, in memory, finite values) checked once by validate; count
        # checks follow on each modality's fitting sample
        names = list(
            check_mudata(
                mdata,
                modalities=modalities,
                values=not getattr(mdata, "isbacked", False),
                hint="or an AnnData with modality=<kind> for one-modality batch integration",
            )
        )
        obs_names = pd.Index(mdata.obs_names)
        n = len(obs_names)
        if n == 0:
            raise EmptyDataError("mdata has no cells: pass a MuData with cells")
        rng = check_random_state(random_state)
        mods = []
        for name in names:
            info = None if fitted is None else fitted.get(name)
            kind = (
                info["kind"]
                if info is not None
                else (modality_types or {}).get(name) or infer_kind(name)
            )
            if kind not in kind_names():
                raise InputError(
                    f"modality type {kind!r} of {name!r} is unknown: use one of "
                    f"{', '.join(kind_names())}"
                )
            mods.append(
                _build_modality(
                    mdata.mod[name],
                    name=name,
                    kind=kind,
                    obs_names=obs_names,
                    likelihood=info["likelihood"]
                    if info
                    else _pick(likelihoods, name, kind, "likelihood"),
                    representation=info["representation"]
                    if info
                    else _pick(representations, name, kind, "representation"),
                    max_features=_pick(max_features, name, kind, "max_features"),
                    n_comps=n_comps,
                    fitted=info,
                    rng=rng,
                )
            )
        present = np.stack([m.present for m in mods], axis=1)
        orphans = ~present.any(axis=1)
        if orphans.any():
            raise EmptyDataError(
                f"{int(orphans.sum())} cell(s) are in no modality (e.g. "
                f"{obs_names[orphans][0]!r}): drop them, e.g. mdata = mdata[mask].copy() with "
                "mask = cells present in at least one of mdata.obsm[mod]"
            )
        batch_codes, batches = _batches(mdata.obs, batch_key, n, batch_names)
        label_codes, classes = _labels(mdata.obs, label_key, n, label_classes)
        return cls(
            obs_names=obs_names,
            modalities=mods,
            batch_codes=batch_codes,
            batch_names=batches,
            label_codes=label_codes,
            label_classes=classes,
            backed=any(m.counts is None for m in mods),
        )

    def fitted_state(self) -> dict[str, Any]:
        """What :meth:`from_mudata` needs (``fitted=``) to rebuild the same arrays."""
        return {
            m.name: {
                "kind": m.kind,
                "likelihood": m.likelihood,
                "representation": m.representation.kind,
                "n_comps": m.representation.n_comps,
                "features": list(map(str, m.features)),
                "arrays": m.representation.state(),
            }
            for m in self.modalities
        }


def _presence(adata: Any, obs_names: pd.Index, name: str) -> tuple[np.ndarray, np.ndarray]:
    rows = pd.Index(adata.obs_names).get_indexer(obs_names)
    present = rows >= 0
    extra = adata.n_obs - int(present.sum())
    if extra:
        raise InputError(
            f"mdata['{name}'] holds {extra} cell(s) absent from mdata.obs_names: call "
            "mdata.update() after changing a modality"
        )
    return present, rows.astype(np.int64)


def _check_options(spec: ModalityKind, name: str, likelihood: str, representation: str) -> None:
    """The likelihood and encoder input are ones the modality's kind accepts."""
    if likelihood not in spec.likelihoods:
        known = likelihood_names()
        why = "is unknown" if likelihood not in known else f"does not fit a {spec.name} modality"
        raise InputError(
            f"likelihood {likelihood!r} of modality {name!r} {why}: use one of "
            f"{', '.join(spec.likelihoods)}"
        )
    if representation not in spec.representations:
        Representation(representation)  # an unknown name: the usual message
        raise InputError(
            f"representation {representation!r} of modality {name!r} does not fit a "
            f"{spec.name} modality: use one of {', '.join(spec.representations)}"
        )


def _layer_sources(adata: Any, spec: ModalityKind, name: str, backed: bool) -> dict[str, Any]:
    """The kind's extra matrices of ``adata`` (``adata.layers``), in memory."""
    if spec.layers and backed:
        raise InputError(
            f"modality {name!r} ({spec.name}) has matrices in layers "
            f"({', '.join(spec.layers)}); read the file in memory (backed=False) for it"
        )
    missing = [k for k in spec.layers if k not in adata.layers]
    if missing:
        raise MissingKeyError(
            f"mdata[{name!r}] has no layers[{missing[0]!r}], which a {spec.name} modality needs "
            f"next to X (layers: {', '.join(adata.layers) or 'none'}): add it"
        )
    return {k: sparse.csr_matrix(adata.layers[k], dtype=np.float32) for k in spec.layers}


def _features(
    adata: Any,
    sample: sparse.csr_matrix,
    *,
    name: str,
    representation: str,
    max_features: int | None,
    n_comps: int | None,
    fitted: Mapping[str, Any] | None,
) -> tuple[pd.Index, np.ndarray, Representation]:
    """The features used (saved ones, or the most variable) and the (unfitted or saved)
    representation."""
    var_names = pd.Index(adata.var_names)
    if fitted is not None:
        features = pd.Index(fitted["features"])
        feature_index = var_names.get_indexer(features)
        if (feature_index < 0).any():
            lost = features[feature_index < 0]
            raise MissingKeyError(
                f"modality {name!r} lacks {len(lost)} feature(s) the model was trained on "
                f"(e.g. {lost[0]!r}): pass data with the same features"
            )
        rep = Representation.from_state(
            fitted["representation"], fitted["arrays"], n_comps=fitted.get("n_comps", n_comps)
        )
        return features, feature_index, rep
    if max_features is not None and adata.n_vars > int(max_features):
        feature_index = _top_variable(sample, int(max_features))
    else:
        feature_index = np.arange(adata.n_vars)
    features = var_names[feature_index]
    n = default_n_comps(len(features)) if n_comps is None else n_comps
    return features, feature_index, Representation(representation, n_comps=n)


def _build_modality(
    adata: Any,
    *,
    name: str,
    kind: str,
    obs_names: pd.Index,
    likelihood: str,
    representation: str,
    max_features: int | None,
    n_comps: int | None,
    fitted: Mapping[str, Any] | None,
    rng: np.random.Generator,
) -> ModalityData:
    spec = get_kind(kind)
    _check_options(spec, name, likelihood, representation)
    head = spec.head(likelihood)
    present, rows = _presence(adata, obs_names, name)
    backed = bool(getattr(adata, "isbacked", False))
    source = adata.X
    extra = _layer_sources(adata, spec, name, backed)
    sample_rows = np.sort(rng.choice(adata.n_obs, min(adata.n_obs, _FIT_CELLS), replace=False))
    # in memory: one CSR conversion of the whole matrix, shared by the sample and the counts
    full = None if backed else sparse.csr_matrix(source, dtype=np.float32)
    sample = sparse.csr_matrix(
        source[sample_rows] if backed else full[sample_rows], dtype=np.float32
    )
    where = f"mdata['{name}'].X"
    if backed:  # in memory, validate.check_mudata has checked every value
        check_finite(sample, name=where)
    check_counts(sample, name=where)  # every likelihood is a count likelihood
    head.check(sample, {k: v[sample_rows] for k, v in extra.items()}, where=where)
    features, feature_index, rep = _features(
        adata,
        sample,
        name=name,
        representation=representation,
        max_features=max_features,
        n_comps=n_comps,
        fitted=fitted,
    )
    all_features = np.array_equal(feature_index, np.arange(adata.n_vars))
    pick = (lambda X: X) if all_features else (lambda X: X[:, feature_index])
    layers: dict[str, sparse.csr_matrix] = {}
    if backed:
        library = np.zeros(len(obs_names), dtype=np.float32)
        per_row = np.zeros(adata.n_obs, dtype=np.float32)
        for start, block in _iter_row_blocks(source, adata.n_obs):
            block = head.prepare(sparse.csr_matrix(pick(block), dtype=np.float32))
            per_row[start : start + block.shape[0]] = head.totals(block, {})
        library[present] = per_row[rows[present]]
        counts = inputs = None
    else:
        cells = np.flatnonzero(present)
        X = sparse.csr_matrix(pick(full)[rows[present]])
        counts = _embed_rows(head.prepare(X), cells, len(obs_names))
        layers = {
            k: _embed_rows(sparse.csr_matrix(pick(v)[rows[present]]), cells, len(obs_names))
            for k, v in extra.items()
        }
        library = head.totals(counts, layers)
        inputs = None
    if fitted is None:
        fit_layers = {k: pick(v[sample_rows]) for k, v in extra.items()}
        rep.fit(pick(sample), random_state=int(rng.integers(2**31 - 1)), layers=fit_layers)
    if counts is not None:
        inputs = np.zeros((len(obs_names), rep.n_dims(len(features))), dtype=np.float32)
        inputs[present] = rep.transform(counts[present], {k: v[present] for k, v in layers.items()})
    return ModalityData(
        name=name,
        kind=kind,
        likelihood=likelihood,
        features=features,
        feature_index=np.asarray(feature_index, dtype=np.int64),
        present=present,
        rows=rows,
        library=library,
        representation=rep,
        counts=counts,
        inputs=inputs,
        source=source if backed else None,
        layers=layers,
    )


def _column(obs: pd.DataFrame, key: str, what: str) -> pd.Series:
    if key not in obs.columns:
        hint = ", ".join(map(str, list(obs.columns)[:8])) or "none"
        raise MissingKeyError(
            f"mdata.obs has no {what} column {key!r} (columns: {hint}): pass an existing "
            f"column as {what}_key"
        )
    return obs[key]


def _batches(
    obs: pd.DataFrame, key: str | None, n: int, known: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    if key is None:
        names = list(known) if known is not None else ["batch"]
        return np.zeros(n, dtype=np.int64), names
    col = _column(obs, key, "batch")
    if col.isna().any():
        raise InputError(
            f"mdata.obs[{key!r}] has {int(col.isna().sum())} missing batch(es): give every "
            "cell a batch"
        )
    values = col.astype(str).to_numpy()
    if known is None:
        cats = col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype) else None
        names = [str(c) for c in cats if (values == str(c)).any()] if cats is not None else []
        names = names or sorted(np.unique(values).tolist())
    else:
        names = list(map(str, known))
        unknown = sorted(set(np.unique(values)) - set(names))
        if unknown:
            raise InputError(
                f"batch {unknown[0]!r} of mdata.obs[{key!r}] was not seen in training "
                f"(known: {', '.join(names)}): train a model that includes it"
            )
    codes = pd.Index(names).get_indexer(values)
    return codes.astype(np.int64), names


def _labels(
    obs: pd.DataFrame, key: str | None, n: int, known: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    if key is None:
        return np.full(n, -1, dtype=np.int64), list(map(str, known or []))
    col = _column(obs, key, "label")
    labelled = ~col.isna().to_numpy()
    values = col.astype(object).where(labelled, None).to_numpy()
    seen = sorted({str(v) for v in values[labelled]})
    if known is None:
        cats = col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype) else None
        classes = [str(c) for c in cats if str(c) in seen] if cats is not None else seen
    else:
        classes = list(map(str, known))
        unknown = sorted(set(seen) - set(classes))
        if unknown:
            raise UnknownLabelError(
                f"mdata.obs[{key!r}] has label(s) {', '.join(map(repr, unknown[:3]))} outside "
                f"the known classes ({', '.join(classes[:6])}{'...' if len(classes) > 6 else ''}):"
                " set those cells to NaN (unlabelled) or add the classes to label_classes"
            )
    codes = np.full(n, -1, dtype=np.int64)
    codes[labelled] = pd.Index(classes).get_indexer([str(v) for v in values[labelled]])
    return codes, classes

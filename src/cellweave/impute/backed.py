"""Imputation streamed from disk (``cellweave impute --backed``): the MF model on a backed file.

Only the neural matrix factorisation streams (``mf``, ``mf_nospatial``): its per-spot state
is an embedding row, so the counts can be read in blocks of rows. The other methods need the
whole matrix (kNN graphs, diffusion, NMF, the mixture inside ``auto``) and are refused in
one line. Order of work, with ``X`` left on disk (``backed="r"``):

1. **One pass** over ``X`` in blocks of rows: counts checked per block, library sizes and
   gene totals, and the rows of a *selection window* kept in memory.
2. **Penalties** chosen by :func:`.mf.mf_select` (the in-memory code, unchanged) on the
   window: all spots when ``n_spots x n_genes <= WINDOW_ENTRIES`` (then this is exactly the
   in-memory run, refit included, in at most ``WINDOW_ENTRIES`` dense entries), else the
   ``WINDOW_ENTRIES // n_genes`` spots nearest a seeded random spot (a spatial window keeps
   the neighbourhoods of the spatial loss). Penalties are per molecule of a typical spot,
   rescaled to the full data's library sizes.
3. **Refit** on all spots through :func:`cellweave.train.fit`: minibatches of the in-memory
   size (:func:`.mf._auto_batch_size`) made of random blocks of ``BLOCK_SPOTS`` consecutive
   spots, each block one contiguous read (:class:`BackedCounts`); gene embeddings and the
   window's spot embeddings warm-started from the selection, ``max_epochs`` epochs.
4. **Output** written block by block (:func:`cellweave.io.write_with_layer`): the input's
   ``X`` and annotations plus ``layers[key_added]`` = ``log1p(target_sum * P)`` float32.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anndata import AnnData
from lightning import LightningDataModule
from scipy import sparse
from torch.utils.data import DataLoader, Sampler

from .. import io
from .._params import jsonable
from ..errors import InputError
from ..train import checkpointing, fit
from ..validate import (
    check_counts,
    check_finite,
    check_seed,
    check_spatial,
    check_unique_names,
    matrix_label,
)
from .api import (
    DEFAULT_KEY,
    DEFAULT_LAYER,
    _check_target_sum,
    _image_similarity,
    imputed_layer,
    uns_entry,
)
from .mf import (
    FULL_BATCH_ENTRIES,
    MFModule,
    MFSelection,
    _auto_batch_size,
    _with_penalties,
    mf_refit,
    mf_select,
)
from .proportions import check_counts as as_counts
from .proportions import to_proportions
from .registry import get_method
from .spatial_loss import build_spatial_loss

__all__ = ["BLOCK_SPOTS", "STREAMING_METHODS", "WINDOW_ENTRIES", "BackedCounts", "impute_backed"]

#: Methods that stream from a backed file.
STREAMING_METHODS = ("mf", "mf_nospatial")
#: Matrix entries of the in-memory selection window (all spots below it).
WINDOW_ENTRIES = FULL_BATCH_ENTRIES
#: Consecutive spots read at once in a training step.
BLOCK_SPOTS = 1024
_PREDICT_ROWS = 4096


def check_streams(method: str) -> Any:
    """The registered ``method`` (an unknown one: the registry's message); a one-line
    :class:`InputError` unless it can stream from a backed file."""
    spec = get_method(method)
    if method not in STREAMING_METHODS:
        raise InputError(
            f"method {method!r} needs the data in memory: drop --backed (or pass --no-backed), "
            f"or use a method that streams ({', '.join(STREAMING_METHODS)})"
        )
    return spec


class BackedCounts:
    """Counts of a model read from a backed matrix: rows on demand, runs read contiguously.

    Has what :class:`.models.ProportionModule` asks of its data (``shape``, ``total``,
    ``library``, :meth:`to`, :meth:`rows`). ``rows(None)`` (all rows: only when one batch
    is every spot, which the streamed refit's batch size never is on data above the
    window) reads them all.
    """

    def __init__(self, source: Any, library: np.ndarray) -> None:
        self.source = source
        self.shape = tuple(int(s) for s in source.shape)
        self.library = torch.as_tensor(library, dtype=torch.float32)
        self.total = float(np.sum(library, dtype=np.float64))
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> BackedCounts:
        self.device = torch.device(device)
        self.library = self.library.to(self.device)
        return self

    def rows(self, index: torch.Tensor | None) -> torch.Tensor:
        """Dense float32 rows ``index`` (sorted runs of consecutive spots read at once)."""
        idx = np.arange(self.shape[0]) if index is None else index.cpu().numpy()
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        cuts = np.flatnonzero(np.diff(sorted_idx) != 1) + 1
        parts = [
            sparse.csr_matrix(self.source[int(run[0]) : int(run[-1]) + 1], dtype=np.float32)
            for run in np.split(sorted_idx, cuts)
            if run.size
        ]
        block = sparse.vstack(parts, format="csr") if len(parts) > 1 else parts[0]
        dense = np.empty((idx.size, self.shape[1]), dtype=np.float32)
        dense[order] = block.toarray()
        return torch.as_tensor(dense, device=self.device)


class _BlockSampler(Sampler[list[int]]):
    """Each step: ``per_step`` random blocks of ``block`` consecutive spots (sorted, so
    neighbouring blocks are one read); a fresh seeded order every epoch (Lightning calls
    :meth:`set_epoch`, so a resumed run draws the same)."""

    def __init__(self, n: int, batch_size: int, block: int, seed: int) -> None:
        self.n, self.block, self.seed = int(n), max(1, int(block)), int(seed)
        self.per_step = max(1, -(-int(batch_size) // self.block))
        self.n_blocks = -(-self.n // self.block)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.n_blocks // self.per_step)

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_blocks)
        for s in range(0, self.n_blocks, self.per_step):
            starts = np.sort(order[s : s + self.per_step]) * self.block
            yield [i for a in starts for i in range(a, min(a + self.block, self.n))]


class _BlockBatches(LightningDataModule):
    """Training steps of random blocks of consecutive spots (see :class:`_BlockSampler`)."""

    def __init__(self, n: int, batch_size: int, block: int, seed: int) -> None:
        super().__init__()
        self.sampler = _BlockSampler(n, batch_size, block, seed)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            range(self.sampler.n),
            batch_sampler=self.sampler,
            collate_fn=lambda spots: torch.as_tensor(spots, dtype=torch.long),
            num_workers=0,
        )


# ----------------------------------------------------------------------------- one pass


def _window(coords: np.ndarray | None, n: int, size: int, seed: int) -> np.ndarray:
    """Sorted spots of the selection window: all, or the ``size`` nearest a random spot
    (consecutive rows without coordinates)."""
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if coords is None:
        start = int(rng.integers(0, n - size + 1))
        return np.arange(start, start + size)
    center = coords[int(rng.integers(0, n))]
    d = ((coords - center) ** 2).sum(axis=1)
    return np.sort(np.argpartition(d, size - 1)[:size])


def _scan(source: Any, window: np.ndarray, where: str) -> dict[str, Any]:
    """One pass in blocks: checks, library sizes, gene totals, the window's rows."""
    n, g = source.shape
    library = np.zeros(n, dtype=np.float64)
    genes = np.zeros(g, dtype=np.float64)
    kept = []
    for start, block in io.row_blocks(source):
        check_finite(block, name=where)
        check_counts(block, name=where)
        stop = start + block.shape[0]
        library[start:stop] = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
        genes += np.asarray(block.sum(axis=0), dtype=np.float64).ravel()
        lo, hi = np.searchsorted(window, [start, stop])
        if hi > lo:
            kept.append(block[window[lo:hi] - start])
    X_window = sparse.vstack(kept, format="csr") if kept else sparse.csr_matrix((0, g))
    return {"library": library, "genes": genes, "X_window": as_counts(X_window)}


def _fingerprint(adata: AnnData, library: np.ndarray) -> str:
    """Names, shape and library sizes (what a checkpoint of a backed run belongs to)."""
    h = hashlib.sha256(repr(adata.shape).encode())
    for names in (adata.obs_names, adata.var_names):
        h.update("\x1f".join(map(str, names)).encode() + b"\x1e")
    h.update(np.ascontiguousarray(library).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- refit


def _streamed_refit(
    source: Any,
    scan: dict[str, Any],
    selection: MFSelection,
    window: np.ndarray,
    coords: np.ndarray | None,
    *,
    params: dict[str, Any],
    method: str,
    random_state: int,
    epochs: int | None,
) -> MFModule:
    """Refit on all spots, streamed (see the module docstring, step 3)."""
    if params.get("similarity") is not None:
        raise InputError(
            "similarity gating needs every spot's counts in memory, and this file is larger "
            "than the selection window: drop similarity=..., or drop --backed"
        )
    n, g = source.shape
    lib, lib_window = scan["library"], scan["library"][window]
    rescale = max(lib.mean(), 1.0) / max(lib_window.mean(), 1.0)
    settings = _with_penalties(selection.base, selection.chosen, selection.scale * rescale)
    totals = scan["genes"] + 0.5  # as models.gene_log_profile
    spatial = None
    if selection.spatial is not None:
        spatial = build_spatial_loss(
            sparse.csr_matrix((n, g)),
            coords,
            spatial_weight=settings.spatial_weight,
            weights=params.get("weights", (1.0, 0.5)),
            similarity=None,
            similarity_features=None,
            n_neighbors=params.get("n_neighbors", 6),
            random_state=random_state,
            method=method,
        )
    module = MFModule(
        BackedCounts(source, lib),
        n_latent=settings.n_latent,
        alpha=settings.alpha,
        spatial=spatial,
        spatial_weight=settings.spatial_weight,
        space=settings.space,
        bias=np.log(totals / totals.sum()),
        likelihood=settings.likelihood,
        val_data=None,
        lr=settings.lr,
        seed=random_state,
    )
    if selection.warm is not None:
        with torch.no_grad():
            for name, value in selection.warm.items():
                target = module.state_dict()[name]
                if name == "U":
                    target[torch.as_tensor(window)] = value
                elif target.shape == value.shape:
                    target.copy_(value)
    batch = settings.batch_size
    if not isinstance(batch, int):
        batch = _auto_batch_size(n, g) or max(256, FULL_BATCH_ENTRIES // g)
    fit(
        module,
        datamodule=_BlockBatches(n, batch, min(BLOCK_SPOTS, batch), random_state),
        max_epochs=settings.max_epochs if epochs is None else int(epochs),
        early_stopping=False,
        device=settings.device,
        seed=random_state,
    )
    return module


@torch.no_grad()
def _module_blocks(module: MFModule, n: int, target_sum: float):
    """``(start, log1p(target_sum * P))`` per block of spots of a streamed module."""
    module.eval()
    for start in range(0, n, _PREDICT_ROWS):
        index = torch.arange(start, min(start + _PREDICT_ROWS, n), device=module.device)
        P = torch.softmax(module.logits(index).double(), 1).cpu().numpy()
        P = to_proportions(P, floor=1e-12)
        yield start, imputed_layer(P, target_sum)


def _array_blocks(P: np.ndarray, target_sum: float):
    for start in range(0, P.shape[0], _PREDICT_ROWS):
        rows = P[start : start + _PREDICT_ROWS]
        yield start, imputed_layer(rows, target_sum)


# ----------------------------------------------------------------------------- entry


def impute_backed(
    adata: AnnData,
    out: str | Path,
    *,
    overwrite: bool = False,
    method: str = "mf",
    random_state: int = 0,
    key_added: str | None = None,
    layer: str | None = None,
    spatial_key: str = "spatial",
    target_sum: float = 1e4,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    refit_epochs: int | None = None,
    timings: dict[str, float] | None = None,
    **params: Any,
) -> Path:
    """Impute an AnnData read with ``backed=True`` and write the result to ``out``.

    The counts stay on disk and are read in blocks of rows (see the module docstring); the
    output ``.h5ad`` holds what :func:`cellweave.impute.impute` writes into an AnnData
    (``layers[key_added]``, ``uns[key_added]``), written atomically block by block. On data
    of at most ``WINDOW_ENTRIES`` matrix entries the result equals the in-memory run's.

    Parameters
    ----------
    adata
        Spots x genes, ``X`` backed (``cellweave.io.read(path, backed=True)``); never
        modified on disk.
    out
        Output ``.h5ad``.
    overwrite
        Replace an existing ``out``.
    method
        ``"mf"`` or ``"mf_nospatial"`` (:data:`STREAMING_METHODS`); others raise
        :class:`~cellweave.errors.InputError`.
    random_state, key_added, layer, spatial_key, target_sum, checkpoint_dir, resume
        As for :func:`cellweave.impute.impute`.
    refit_epochs
        Epochs of the streamed refit (default: the method's ``max_epochs``); benchmarks
        time fewer.
    timings
        Filled with the seconds of each stage (``scan_s``, ``select_s``, ``refit_s``,
        ``write_s``) and the window size.
    **params
        The method's options (checked by the registry before any work).
    """
    start = time.perf_counter()
    spec = check_streams(method)
    params = spec.check_options(params)
    target_sum = _check_target_sum(target_sum)
    random_state = check_seed(random_state)
    stages = {} if timings is None else timings
    check_unique_names(adata, axis="obs")
    check_unique_names(adata, axis="var")
    source = adata.X if layer is None else adata.layers[layer]
    n, g = source.shape
    if n == 0 or g == 0:
        raise InputError(f"the count matrix has shape {(n, g)}; pass at least one spot and gene")
    coords = check_spatial(adata, spatial_key=spatial_key) if spec.spatial else None
    given = dict(params)  # recorded as given ("image", not the features)
    if isinstance(params.get("similarity_features"), str):
        given.setdefault("similarity", "gaussian")
        params = _image_similarity(adata, spatial_key=spatial_key, **params)
    size = n if n * g <= WINDOW_ENTRIES else max(1, WINDOW_ENTRIES // g)
    window = _window(coords, n, size, random_state)
    where = matrix_label("adata", layer)
    t = time.perf_counter()
    scan = _scan(source, window, where)
    stages.update(scan_s=time.perf_counter() - t, window=int(window.size))
    run = None
    if checkpoint_dir is not None:
        run = {"method": method, "params": jsonable(given), "random_state": random_state}
        run["data"] = _fingerprint(adata, scan["library"])
    sel_params = dict(params)
    sel_coords = None if coords is None else coords[window]
    if method == "mf_nospatial":
        sel_params["spatial_weight"], sel_coords = 0.0, None
    with checkpointing(checkpoint_dir, resume=resume, fingerprint=run):
        t = time.perf_counter()
        X_window = scan.pop("X_window")
        selection = mf_select(
            X_window, coords=sel_coords, random_state=random_state, method=method, **sel_params
        )
        stages["select_s"] = time.perf_counter() - t
        t = time.perf_counter()
        if window.size == n:  # everything fits the window: the in-memory refit
            P = mf_refit(X_window, selection, random_state=random_state)
            blocks = lambda: _array_blocks(P, target_sum)  # noqa: E731
        else:
            del X_window
            module = _streamed_refit(
                source, scan, selection, window, coords, params=sel_params,
                method=method, random_state=random_state, epochs=refit_epochs,
            )  # fmt: skip
            blocks = lambda: _module_blocks(module, n, target_sum)  # noqa: E731
        stages["refit_s"] = time.perf_counter() - t
    layer_key = DEFAULT_LAYER if key_added is None else key_added
    uns_key = DEFAULT_KEY if key_added is None else key_added
    entry = uns_entry(
        method, given, layer=layer, spatial_key=spatial_key, key_added=layer_key,
        target_sum=target_sum, random_state=random_state, start=start,
        chosen={**selection.chosen, "spatial_loss": coords is not None},
    )  # fmt: skip
    entry["backed"] = {"window": int(window.size), "streamed_refit": bool(window.size < n)}
    adata.uns[uns_key] = entry
    if layer_key in adata.layers:  # replaced, as in memory (the file read is not touched)
        del adata.layers[layer_key]
    t = time.perf_counter()
    path = io.write_with_layer(
        adata, out, layer=layer_key, n_vars=g, blocks=blocks, overwrite=overwrite
    )
    stages["write_s"] = time.perf_counter() - t
    return path

"""Batches of a :class:`~.data.MosaicData` as tensors on the training device.

In memory, everything lives on the device once: encoder inputs as dense tensors, counts as
CSR arrays (``crow``, ``col``, ``val``) densified per batch by a vectorised gather (no
per-cell Python, works on CPU and CUDA). For backed data, a batch's rows are read from disk
(:meth:`ModalityData.read_counts`, encoder inputs computed from them) and moved over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse

from .data import MosaicData

__all__ = ["Batch", "SparseRows", "TensorData"]


class SparseRows:
    """CSR rows on a device, densified per batch of row indices."""

    def __init__(self, X: sparse.csr_matrix) -> None:
        X = sparse.csr_matrix(X, dtype=np.float32)
        self.shape = X.shape
        self.crow = torch.as_tensor(X.indptr.astype(np.int64))
        self.col = torch.as_tensor(X.indices.astype(np.int64))
        self.val = torch.as_tensor(X.data)

    def to(self, device: torch.device) -> SparseRows:
        self.crow, self.col, self.val = (t.to(device) for t in (self.crow, self.col, self.val))
        return self

    def dense(self, index: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``index`` as a dense ``(len(index), n_cols)`` float32 tensor (only the columns
        ``cols``, in that order, when given)."""
        start, stop = self.crow[index], self.crow[index + 1]
        lengths = stop - start
        width = self.shape[1] if cols is None else cols.numel()
        out = torch.zeros(index.numel(), width, device=self.val.device)
        total = int(lengths.sum())
        if total == 0:
            return out
        row = torch.repeat_interleave(torch.arange(index.numel(), device=index.device), lengths)
        first = torch.cumsum(lengths, 0) - lengths
        pos = torch.repeat_interleave(start - first, lengths) + torch.arange(
            total, device=index.device
        )
        col = self.col[pos]
        if cols is not None:
            where = torch.full((self.shape[1],), -1, dtype=torch.long, device=col.device)
            where[cols] = torch.arange(cols.numel(), device=col.device)
            col = where[col]
            keep = col >= 0
            row, col, pos = row[keep], col[keep], pos[keep]
        out[row, col] = self.val[pos]
        return out


@dataclass
class Batch:
    """Tensors of a batch of cells (one entry per modality in the lists)."""

    cells: torch.Tensor
    present: torch.Tensor  # (B, M) bool
    batch: torch.Tensor  # (B,) long
    label: torch.Tensor  # (B,) long, -1 unlabelled
    inputs: list[torch.Tensor]
    sources: list[tuple[SparseRows, torch.Tensor]]  # count rows and each cell's row in them
    library: list[torch.Tensor]
    # per modality, the kind's extra matrices (e.g. methylation coverage) by name
    layers: list[dict[str, SparseRows]] | None = None

    def layer_values(
        self, modality: int, positions: torch.Tensor, cols: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Dense rows of the modality's extra matrices at ``positions`` (features ``cols``)."""
        if not self.layers or not self.layers[modality]:
            return {}
        where = self.sources[modality][1][positions]
        return {k: rows.dense(where, cols) for k, rows in self.layers[modality].items()}

    total: int = 0  # cells of the whole split (validation batches: the loss is a share of it)

    def __len__(self) -> int:
        return int(self.cells.numel())

    def counts(
        self, modality: int, positions: torch.Tensor, cols: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Dense counts of the batch's cells at ``positions`` (features ``cols``)."""
        rows, where = self.sources[modality]
        return rows.dense(where[positions], cols)


class TensorData:
    """The arrays of a :class:`MosaicData` as tensors; :meth:`batch` gathers rows."""

    def __init__(self, data: MosaicData) -> None:
        self.data = data
        self.device = torch.device("cpu")
        self.present = torch.as_tensor(data.present)
        self.batch_codes = torch.as_tensor(data.batch_codes)
        self.label_codes = torch.as_tensor(data.label_codes)
        self.library = [torch.as_tensor(m.library) for m in data.modalities]
        self.inputs = None if data.backed else [torch.as_tensor(m.inputs) for m in data.modalities]
        self.counts = None if data.backed else [SparseRows(m.counts) for m in data.modalities]
        self.layers = [{k: SparseRows(v) for k, v in m.layers.items()} for m in data.modalities]

    def to(self, device: torch.device | str) -> TensorData:
        self.device = torch.device(device)
        move = lambda t: t.to(self.device)  # noqa: E731
        self.present, self.batch_codes, self.label_codes = map(
            move, (self.present, self.batch_codes, self.label_codes)
        )
        self.library = [move(t) for t in self.library]
        if self.inputs is not None:
            self.inputs = [move(t) for t in self.inputs]
            self.counts = [c.to(self.device) for c in self.counts]
        self.layers = [{k: v.to(self.device) for k, v in d.items()} for d in self.layers]
        return self

    def batch(self, cells: torch.Tensor, *, counts: bool = True) -> Batch:
        """Tensors of ``cells`` (global indices); ``counts=False`` skips the count rows."""
        cells = cells.to(self.device)
        if self.inputs is not None:
            inputs = [t[cells] for t in self.inputs]
            sources = [(c, cells) for c in self.counts] if counts else []
        else:  # backed: read each modality's rows once, derive the inputs from them
            idx = cells.cpu().numpy()
            inputs, sources = [], []
            local = torch.arange(idx.size, device=self.device)
            for m in self.data.modalities:
                X = m.read_counts(idx)
                block = np.zeros((idx.size, m.n_inputs), dtype=np.float32)
                keep = m.present[idx]
                if keep.any():
                    block[keep] = m.representation.transform(X[keep])
                inputs.append(torch.as_tensor(block).to(self.device))
                if counts:
                    sources.append((SparseRows(X).to(self.device), local))
        return Batch(
            cells=cells,
            present=self.present[cells],
            batch=self.batch_codes[cells],
            label=self.label_codes[cells],
            inputs=inputs,
            sources=sources,
            library=[t[cells] for t in self.library],
            layers=self.layers if counts else None,
        )

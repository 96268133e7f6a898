"""The mosaic model's data for Lightning: split, samplers, batches (in memory or backed).

:class:`MosaicDataModule` is a ``LightningDataModule``; :class:`~.vae.MosaicModule` holds only
parameters and losses and receives :class:`~.tensors.Batch` objects from it.

* **split** (``setup``): in memory, ``validation_fraction`` of every batch's cells is held
  out (:func:`~.sampling.split_cells`); backed (``mudata.read_h5mu(..., backed=True)``), the
  cells are cut into blocks of consecutive cells and a fraction of the blocks is held out,
  so a step reads a few contiguous runs from disk;
* **samplers**: the loaders yield cell indices drawn by :class:`~.sampling.UnitSampler`
  (a fresh batch-balanced table every epoch, :func:`~.sampling.balanced_table`, through
  Lightning's ``set_epoch``); in semi-supervised mode :class:`~.sampling.LabelledCells` adds
  labelled cells to every training step; with several processes (DDP) each takes its share
  of every step and of the validation cells (the samplers shard themselves by the trainer's
  rank, Lightning does not replace them);
* **batches**: ``transfer_batch_to_device`` turns the cell indices into a
  :class:`~.tensors.Batch` on the training device (in memory the data lives there once; backed
  rows are read from disk per batch), cells sorted by batch.

The model also uses :meth:`MosaicDataModule.batch` outside training (inference).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ..train import shard_of
from .data import MosaicData
from .sampling import LabelledCells, UnitSampler, balanced_table, blocks, split_cells
from .tensors import Batch, TensorData

__all__ = ["MosaicDataModule", "default_batch_size"]

_VAL_BATCH = 4096  # cells per validation step in memory
_BLOCKS_PER_STEP = 8  # blocks per step (training and validation) when backed


def default_batch_size(n_cells: int) -> int:
    """A sixteenth of the cells, between 64 and 512 (at least ~16 steps per epoch)."""
    return int(np.clip(n_cells // 16, 64, 512))


class _Units(Dataset):
    """Cells of a batch of unit ids: the ids themselves (in memory, a unit is a cell) or the
    cells of those rows of a ``-1``-padded table of blocks (backed)."""

    def __init__(self, n_units: int, table: torch.Tensor | None = None) -> None:
        self.n_units = int(n_units)
        self.table = table

    def __len__(self) -> int:
        return self.n_units

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.__getitems__([i])

    def __getitems__(self, ids: list[int]) -> torch.Tensor:
        ids = torch.as_tensor(ids, dtype=torch.long)
        if self.table is None:
            return ids
        cells = self.table[ids].reshape(-1)
        return cells[cells >= 0]


def _identity(batch: Any) -> Any:
    return batch


class MosaicDataModule(LightningDataModule):
    """Split, samplers and batches of a :class:`~.data.MosaicData`.

    Parameters
    ----------
    data
        The mosaic arrays (in memory, or backed: rows read from disk per batch).
    batch_size
        Cells per training step (plus ``labelled_per_batch`` labelled cells); default
        :func:`default_batch_size`. Backed: blocks of ``batch_size // 8`` consecutive
        cells, 8 blocks per step.
    validation_fraction
        Cells (backed: blocks) held out per batch for early stopping (``0``: none).
    labelled_per_batch
        Labelled training cells added to every step (semi-supervised mode; none without
        labels).
    balance_batches
        Draw every epoch's cells with equal shares per batch (in memory only).
    seed
        Seed of the split, the balanced tables and the order of the steps.
    tensors
        The data's tensors when already built (shared with another data module of the same
        data, e.g. the model's inference one).
    """

    def __init__(
        self,
        data: MosaicData,
        *,
        batch_size: int | None = None,
        validation_fraction: float = 0.1,
        labelled_per_batch: int = 32,
        balance_batches: bool = True,
        seed: int = 0,
        tensors: TensorData | None = None,
    ) -> None:
        super().__init__()
        self.data = data
        self.tensors = TensorData(data) if tensors is None else tensors
        self.batch_size = default_batch_size(data.n_cells) if batch_size is None else batch_size
        self.batch_size = int(self.batch_size)
        self.validation_fraction = float(validation_fraction)
        self.labelled_per_batch = int(labelled_per_batch)
        self.balance_batches = bool(balance_batches)
        self.seed = int(seed)
        self.table: torch.Tensor | None = None  # blocks of cells (backed)
        self.train_units: Any = None  # unit ids, or a function of the epoch giving them
        self.val_units: torch.Tensor | None = None
        self.train_cells: np.ndarray | None = None
        self.labelled: LabelledCells | None = None

    # ------------------------------------------------------------------ split
    def setup(self, stage: str | None = None) -> None:
        """Split the cells (once; the same split for the same seed)."""
        if self.train_units is not None:
            return
        data, rng = self.data, np.random.default_rng(self.seed)
        if data.backed:
            self._split_blocks(rng)
        else:
            self._split_cells(rng)
        labelled = np.intersect1d(np.flatnonzero(data.label_codes >= 0), self.train_cells)
        self.labelled = LabelledCells(labelled, self.labelled_per_batch, seed=self.seed)

    def _split_blocks(self, rng: np.random.Generator) -> None:
        self.table = blocks(np.arange(self.data.n_cells), max(1, self.batch_size // 8))
        n_blocks = self.table.shape[0]
        n_val = round(self.validation_fraction * n_blocks)
        order = torch.as_tensor(rng.permutation(n_blocks))
        self.train_units = torch.sort(order[n_val:]).values
        self.val_units = torch.sort(order[:n_val]).values
        train = self.table[self.train_units]
        self.train_cells = train[train >= 0].numpy()

    def _split_cells(self, rng: np.random.Generator) -> None:
        data, seed = self.data, self.seed
        train, val = split_cells(data.batch_codes, self.validation_fraction, rng, min_cells=2)
        self.train_cells = train
        if self.balance_batches and len(data.batch_names) > 1:
            codes = data.batch_codes
            self.train_units = lambda epoch: balanced_table(train, codes, seed, epoch)[:, 0]
        else:
            self.train_units = torch.as_tensor(train)
        self.val_units = torch.as_tensor(val)

    @property
    def n_val_cells(self) -> int:
        """Validation cells (after :meth:`setup`)."""
        if self.table is not None:
            return int((self.table[self.val_units] >= 0).sum())
        return int(self.val_units.numel())

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the training data and its sampling in a checkpoint: cells,
        features, batches and labels (hashed) and the sampling settings."""
        data = self.data
        h = hashlib.sha256()
        for names in (data.obs_names, data.batch_names, data.label_classes, data.names):
            h.update("\x1f".join(map(str, names)).encode() + b"\x1e")
        for m in data.modalities:
            h.update("\x1f".join(map(str, m.features)).encode() + b"\x1e")
            h.update(np.asarray(m.present).tobytes())
        h.update(np.asarray(data.batch_codes).tobytes() + np.asarray(data.label_codes).tobytes())
        settings = (self.batch_size, self.validation_fraction, self.labelled_per_batch)
        return {
            "data": h.hexdigest(),
            "sampling": [*settings, self.balance_batches, self.seed, bool(data.backed)],
        }

    # ------------------------------------------------------------------ loaders
    def _loader(self, units: Any, *, batch_size: int, shuffle: bool) -> DataLoader:
        sampler = UnitSampler(units, batch_size=batch_size, shuffle=shuffle, seed=self.seed)
        sampler.shard(*shard_of(self.trainer))  # this process's share of every step
        n_units = self.data.n_cells if self.table is None else self.table.shape[0]
        return DataLoader(
            _Units(n_units, self.table),
            batch_sampler=sampler,
            collate_fn=_identity,
            num_workers=0,
        )

    def train_dataloader(self) -> DataLoader:
        """Training steps: cell indices, a fresh balanced draw every epoch (with several
        processes, each its share of every step)."""
        self.setup("fit")
        if self.labelled is not None:
            self.labelled.shard(*shard_of(self.trainer))
        size = _BLOCKS_PER_STEP if self.data.backed else self.batch_size
        return self._loader(self.train_units, batch_size=size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation steps over the held-out cells, in order (no batch when none)."""
        self.setup("fit")
        size = _BLOCKS_PER_STEP if self.data.backed else _VAL_BATCH
        return self._loader(self.val_units, batch_size=size, shuffle=False)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int):
        """Cell indices -> a :class:`~.tensors.Batch` on ``device``; training steps get the
        labelled cells of :class:`~.sampling.LabelledCells` too."""
        cells = batch.to(device)
        training = self.trainer is not None and self.trainer.training
        if training and self.labelled is not None:
            cells = self.labelled.add(cells, int(self.trainer.global_step))
        b = self.batch(cells, sort=True)
        if not training:
            b.total = self.n_val_cells
        return b

    def teardown(self, stage: str | None = None) -> None:
        """Back to the CPU after fitting."""
        self.tensors.to("cpu")

    # ------------------------------------------------------------------ batches
    def batch(self, cells: torch.Tensor, *, counts: bool = True, sort: bool = False) -> Batch:
        """Tensors of ``cells`` (global indices) on ``cells``' device (``counts=False``: no
        count rows; ``sort``: cells reordered by batch, as the decoders need)."""
        if self.tensors.device != cells.device:
            self.tensors.to(cells.device)
        if sort:
            cells = cells[torch.argsort(self.tensors.batch_codes[cells])]
        return self.tensors.batch(cells, counts=counts)

    def sample(self, n: int = 2000, *, seed: int = 0) -> Batch:
        """A batch of ``n`` random cells (at most all), sorted by batch, on the CPU: what
        :class:`~.vae.MosaicModule` scales its initial likelihood by."""
        rng = np.random.default_rng(seed)
        size = min(n, self.data.n_cells)
        cells = np.sort(rng.choice(self.data.n_cells, size, replace=False))
        return self.batch(torch.as_tensor(cells).to(self.tensors.device), sort=True)

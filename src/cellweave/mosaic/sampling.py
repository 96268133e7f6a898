"""Which cells a training step sees: the validation split, batch-balanced tables, blocks.

Training batches are rows of a *unit table* (``(n_units, unit_size)`` cell indices, ``-1``
padding). In memory a unit is one cell and the table is redrawn every epoch so that each batch
(sample) contributes the same number of cells (small batches oversampled, at most
``max_oversampling`` times their size). With backed data a unit is a block of consecutive
cells, so a step reads a few contiguous runs from disk instead of scattered rows.

:class:`UnitSampler` draws the units of an epoch the way Lightning expects a sampler to
(``set_epoch`` before each epoch, a seeded generator) and, with several processes, gives each
its share of every batch (:class:`cellweave.train.IndexBatches`); :class:`LabelledCells` adds
labelled cells to every training step (semi-supervised mode) from its own seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from ..train import IndexBatches, rank_seed

__all__ = ["LabelledCells", "UnitSampler", "balanced_table", "blocks", "split_cells"]


def split_cells(
    batch_codes: np.ndarray, fraction: float, rng: np.random.Generator, *, min_cells: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted training and validation cells; ``fraction`` of every batch is held out (none
    when that leaves fewer than ``min_cells`` on either side)."""
    train, val = [], []
    for b in np.unique(batch_codes):
        cells = np.flatnonzero(batch_codes == b)
        n_val = round(fraction * cells.size)
        if n_val < 1 or cells.size - n_val < min_cells:
            train.append(cells)
            continue
        perm = rng.permutation(cells)
        val.append(perm[:n_val])
        train.append(perm[n_val:])
    train_cells = np.sort(np.concatenate(train))
    val_cells = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    return train_cells, val_cells


def balanced_table(
    cells: np.ndarray,
    batch_codes: np.ndarray,
    seed: int,
    epoch: int,
    *,
    max_oversampling: float = 10.0,
) -> torch.Tensor:
    """A ``(len(cells), 1)`` table of training cells with equal shares per batch.

    Each batch gets ``len(cells) / n_batches`` slots, filled without replacement when it has
    enough cells and with replacement otherwise (at most ``max_oversampling`` times its size;
    the spare slots go to the other batches in proportion to their size).
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    codes = batch_codes[cells]
    groups = [cells[codes == b] for b in np.unique(codes)]
    n = cells.size
    sizes = np.array([g.size for g in groups], dtype=np.float64)
    quota = np.minimum(np.full(len(groups), n / len(groups)), max_oversampling * sizes)
    spare = n - quota.sum()
    if spare > 0:
        quota += spare * sizes / sizes.sum()
    quota = np.floor(quota).astype(np.int64)
    quota[np.argmax(sizes)] += n - quota.sum()
    parts = [
        rng.choice(g, q, replace=q > g.size) for g, q in zip(groups, quota, strict=True) if q > 0
    ]
    table = rng.permutation(np.concatenate(parts))
    return torch.as_tensor(table, dtype=torch.long).unsqueeze(1)


def blocks(cells: np.ndarray, size: int) -> torch.Tensor:
    """``cells`` (sorted) cut into consecutive blocks of ``size``, ``-1``-padded."""
    size = max(1, int(size))
    n_blocks = -(-cells.size // size)
    table = np.full(n_blocks * size, -1, dtype=np.int64)
    table[: cells.size] = cells
    return torch.as_tensor(table.reshape(n_blocks, size))


class UnitSampler(Sampler[list[int]]):
    """The units of one epoch, batch by batch, in the order the steps see them (a batch
    sampler; this process's share of every batch with several processes, see
    :meth:`shard`).

    Parameters
    ----------
    units
        Unit ids (1-D: cells, or rows of the data module's table of blocks), or a function of
        the epoch giving them (a fresh batch-balanced draw every epoch); the count must not
        change.
    batch_size
        Units per step, over all processes.
    shuffle
        Seeded random order (a generator that carries on from epoch to epoch, as
        :func:`cellweave.train.index_loader`); sequential otherwise.
    seed
        Seed of the order (the same in every process).
    """

    def __init__(
        self,
        units: torch.Tensor | Callable[[int], torch.Tensor],
        *,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.units = units
        self.epoch = 0
        n = int(self._table().shape[0])
        self.batches = IndexBatches(n, batch_size=batch_size, shuffle=shuffle, seed=seed)
        self.batch_size = self.batches.batch_size

    @property
    def sampler(self) -> UnitSampler:
        """Itself (where a ``BatchSampler`` keeps the sampler whose ``set_epoch`` is called)."""
        return self

    @property
    def generator(self) -> torch.Generator | None:
        """The order's generator (a checkpoint stores its state)."""
        return self.batches.generator

    def _table(self) -> torch.Tensor:
        return self.units(self.epoch) if callable(self.units) else self.units

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before every epoch (the balanced draw depends on it)."""
        self.epoch = int(epoch)

    def shard(self, rank: int, world: int) -> None:
        """Yield process ``rank``'s share of every batch among ``world`` processes (every
        process draws the same table and order: same seed, same epoch)."""
        self.batches.shard(rank, world)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        table = self._table().reshape(-1).tolist()
        for batch in self.batches:
            yield [table[i] for i in batch]


class LabelledCells:
    """Labelled training cells added to every training step.

    Parameters
    ----------
    cells
        The labelled training cells.
    per_step
        Cells drawn (with replacement) per step over all processes; ``0`` or no labelled
        cells: none.
    seed
        Seed of the draws: step ``s`` of process ``rank`` draws from a generator seeded by
        ``(seed, rank, s)``, so the draws depend neither on torch's global random state nor
        on the steps before (a resumed run draws what the uninterrupted run drew).
    """

    def __init__(self, cells: np.ndarray, per_step: int, *, seed: int = 0) -> None:
        self.cells = torch.as_tensor(np.asarray(cells), dtype=torch.long)
        self.per_step = int(per_step) if self.cells.numel() else 0
        self.seed = int(seed)
        self.rank, self.world = 0, 1
        self.generator = torch.Generator()

    def __getstate__(self) -> dict:
        # no torch.Generator through ``spawn`` pickling (it is reseeded at every draw)
        return {k: v for k, v in self.__dict__.items() if k != "generator"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.generator = torch.Generator()

    def shard(self, rank: int, world: int) -> None:
        """Draw as process ``rank`` of ``world`` (its own stream, ``per_step / world`` cells
        rounded up per step)."""
        self.rank, self.world = int(rank), max(1, int(world))

    def add(self, cells: torch.Tensor, step: int = 0) -> torch.Tensor:
        """``cells`` followed by this process's labelled cells of the optimisation step
        ``step`` (on ``cells``' device)."""
        if not self.per_step:
            return cells
        self.generator.manual_seed(rank_seed(self.seed, self.rank, step))
        k = -(-self.per_step // self.world)
        pick = torch.randint(0, self.cells.numel(), (k,), generator=self.generator)
        return torch.cat([cells, self.cells[pick].to(cells.device)])

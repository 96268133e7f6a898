"""Batches of row indices for :func:`cellweave.train.fit`, shared out across processes.

:class:`IndexBatches` is the batch sampler of every cellweave training loader: the order of
an epoch's rows (a seeded generator that carries on from epoch to epoch, so a checkpoint
that stores its state resumes the same order), cut into batches of ``batch_size`` rows. With
several processes (data-parallel training, :meth:`IndexBatches.shard`) every process draws
the same order (same seed, same generator state) and takes the rank-strided share of every
batch, as ``torch.utils.data.DistributedSampler`` does: the shares are disjoint and cover
the batch, every process makes the same number of steps, and ``batch_size`` stays the
number of rows per optimisation step over all processes (so one step means the same with
one process or several; a batch with fewer rows than processes is padded cyclically from
the epoch's start).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["IndexBatches", "index_loader", "shard_batch"]


class _Rows(Dataset):
    """Row indices ``0..n-1``; a batch of them is fetched at once as one LongTensor."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return int(i)

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return torch.as_tensor(indices, dtype=torch.long)


def _identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


def shard_batch(batch: list[int], rank: int, world: int, *, pad: list[int]) -> list[int]:
    """Process ``rank``'s share of ``batch`` among ``world`` processes: ``batch[rank::world]``,
    the batch first padded cyclically from ``pad`` (the epoch's order) when it has fewer rows
    than processes, so that no process gets an empty batch."""
    if world <= 1:
        return batch
    if len(batch) < world:
        fill = (pad * (-(-world // max(len(pad), 1))))[: world - len(batch)]
        batch = batch + fill
    return batch[rank::world]


class IndexBatches(Sampler[list[int]]):
    """The batches of row indices of one epoch (a batch sampler), this process's share.

    Parameters
    ----------
    n
        Number of rows.
    batch_size
        Rows per optimisation step over all processes (``None``: full batch).
    shuffle
        Seeded random order, a fresh permutation each pass (else the rows in order, once).
    steps_per_epoch
        Batches per epoch (default: one pass over the rows); with full batches the whole set
        is repeated, so an "epoch" holds several steps.
    seed
        Seed of :attr:`generator` (the same in every process).
    """

    def __init__(
        self,
        n: int,
        *,
        batch_size: int | None = None,
        shuffle: bool = True,
        steps_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        self.n = int(n)
        size = self.n if batch_size is None else max(1, min(int(batch_size), self.n))
        self.batch_size = size
        self.steps = -(-self.n // size) if steps_per_epoch is None else max(1, int(steps_per_epoch))
        self.full = size == self.n
        self.shuffle = bool(shuffle)
        self.generator = (
            torch.Generator().manual_seed(int(seed)) if self.shuffle and not self.full else None
        )
        self.rank, self.world = 0, 1

    def __getstate__(self) -> dict:
        # a torch.Generator does not survive the ``spawn`` start method (its state tensor is
        # sent through shared memory and fails to rebuild): pickle the state as bytes
        state = dict(self.__dict__)
        if self.generator is not None:
            state["generator"] = bytes(self.generator.get_state().numpy())
        return state

    def __setstate__(self, state: dict) -> None:
        saved = state.get("generator")
        if isinstance(saved, bytes):
            generator = torch.Generator()
            generator.set_state(torch.frombuffer(bytearray(saved), dtype=torch.uint8))
            state["generator"] = generator
        self.__dict__.update(state)

    def shard(self, rank: int, world: int) -> None:
        """Draw process ``rank``'s share of every batch among ``world`` processes."""
        self.rank, self.world = int(rank), max(1, int(world))

    def order(self) -> list[int]:
        """The epoch's rows in step order, as one process draws them (advances the generator
        exactly as ``RandomSampler(num_samples=steps * batch_size)`` does)."""
        if self.full:
            return list(range(self.n)) * self.steps
        if self.generator is None:
            return list(range(self.n))
        total, rows = self.steps * self.batch_size, []
        for _ in range(total // self.n):
            rows += torch.randperm(self.n, generator=self.generator).tolist()
        rows += torch.randperm(self.n, generator=self.generator).tolist()[: total % self.n]
        return rows

    def __len__(self) -> int:
        if self.full or self.generator is not None:
            return self.steps
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rows, size = self.order(), self.batch_size
        for start in range(0, len(rows), size):
            yield shard_batch(rows[start : start + size], self.rank, self.world, pad=rows)


def index_loader(n: int, **options: Any) -> DataLoader:
    """A loader of row-index batches (LongTensors) whose batch sampler is an
    :class:`IndexBatches` (:meth:`IndexBatches.shard` it for data-parallel training).

    Parameters
    ----------
    n
        Number of rows.
    **options
        Those of :class:`IndexBatches`: ``batch_size`` (rows per batch; ``None`` is full
        batch), ``shuffle`` (a seeded random order, a fresh permutation each pass),
        ``steps_per_epoch`` (batches per epoch; with full batches the whole set is repeated,
        so an "epoch" can hold several optimisation steps) and ``seed``.
    """
    batches = IndexBatches(n, **options)
    return DataLoader(_Rows(n), batch_sampler=batches, collate_fn=_identity, num_workers=0)

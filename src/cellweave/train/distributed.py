"""Data-parallel training pieces of :func:`cellweave.train.fit` (Lightning DDP).

* :func:`strategy_for`: Lightning's DDP strategies by name, built without the buffer
  broadcast before every forward pass (cellweave's buffers are constants, e.g. the guidance
  graph's edges: nothing to send);
* :class:`Distributed`: a callback that, in every process, shards the row-index loaders
  (:meth:`~.data.IndexBatches.shard`), gives each process its own CPU threads and a random
  stream per rank, reseeded at every epoch and every step (so a run resumed from an epoch's
  checkpoint draws the same numbers: bit-identical), silences Lightning in
  spawned workers, and sends what :class:`~cellweave.train.FitResult` reports back from a
  spawned worker to the main process;
* :func:`shard_of`: the (rank, world size) a ``LightningDataModule`` shards its samplers by;
* :func:`training_options`: the device arguments of every ``fit`` inside a block (models
  that train several times inside a method, e.g. the imputation MF).

With ``strategy="ddp"`` Lightning re-runs the command (``sys.argv``) once per extra device
with ``LOCAL_RANK`` set: everything before ``fit`` runs in every process, and only the
process with :func:`is_global_zero` should write outputs.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer

from ..device import launched_rank
from .data import IndexBatches

__all__ = [
    "Distributed",
    "is_global_zero",
    "rank_seed",
    "shard_of",
    "strategy_for",
    "training_options",
]

_STEP_STREAM = 1 << 40  # step seeds (seed, rank, 2**40 + step) apart from epoch seeds
_SUMMARY = "cellweave_fit/"  # callback_metrics keys a spawned worker reports through
_OPTIONS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "cellweave_training_options", default=None
)


@contextlib.contextmanager
def training_options(**options: Any) -> Iterator[None]:
    """Defaults for :func:`~cellweave.train.fit` inside the block: ``accelerator``,
    ``devices``, ``strategy``, ``precision`` (explicit arguments of a call win).

    Example
    -------
    >>> with training_options(accelerator="cpu", devices=2, strategy="ddp"):  # doctest: +SKIP
    ...     cw.tl.impute(adata_sp, adata_sc, method="mf")
    """
    allowed = {"accelerator", "devices", "strategy", "precision"}
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"training_options() takes {sorted(allowed)}, not {sorted(unknown)}")
    token = _OPTIONS.set(_passed(options))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def chosen_options(**given: Any) -> dict[str, Any]:
    """The options of the enclosing :func:`training_options` block (none outside one),
    overridden by those ``given`` that are not ``None``."""
    return {**(_OPTIONS.get() or {}), **_passed(given)}


def _passed(options: dict[str, Any]) -> dict[str, Any]:
    """The options that were passed (not ``None``)."""
    return {k: v for k, v in options.items() if v is not None}


def is_global_zero() -> bool:
    """Whether this process is the first of a (possibly) data-parallel run: true in a
    plain process, false in the copies Lightning's ``ddp`` launcher starts (``LOCAL_RANK`` /
    ``RANK`` / ``NODE_RANK`` set and not 0) and in non-zero spawned workers."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return launched_rank() == 0


def shard_of(trainer: Trainer | None) -> tuple[int, int]:
    """``(global rank, world size)`` of ``trainer``'s process (``(0, 1)`` without one)."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), max(1, int(trainer.world_size))


def strategy_for(name: Any, n_processes: int) -> Any:
    """The ``Trainer(strategy=...)`` of a checked strategy name: a DDP strategy of
    Lightning's registry is built without the buffer broadcast before every forward pass
    (:func:`_no_buffer_sync`); ``"auto"`` with several processes is Lightning's choice
    (``"ddp"``, ``"ddp_fork"`` in a notebook) built so."""
    if not isinstance(name, str):
        return name
    from lightning.fabric.utilities.imports import _IS_INTERACTIVE
    from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

    if name == "auto":
        if n_processes <= 1:
            return "auto"
        name = "ddp_fork" if _IS_INTERACTIVE else "ddp"
    if name not in StrategyRegistry:
        return name
    entry = StrategyRegistry[name]
    cls = entry["strategy"]
    if isinstance(cls, type) and issubclass(cls, DDPStrategy):
        return cls(**entry["init_params"], **_no_buffer_sync())
    return name


def _no_buffer_sync() -> dict[str, bool]:
    """DDP's keyword that stops the buffer broadcast before every forward pass (named
    ``forward_sync_buffers`` since torch 2.13, ``broadcast_buffers`` before)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return {key: False}


def _spawned(trainer: Trainer) -> bool:
    """Whether the processes were started by Lightning's multiprocessing launcher
    (``ddp_spawn`` and friends), which ends each worker when ``fit`` returns."""
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def apply_torch_settings(num_threads: int | None, deterministic: bool) -> None:
    """Thread count (``None``: unchanged), flushed denormals (they make softmax tails very
    slow on CPU) and, when ``deterministic``, deterministic algorithms (warn-only)."""
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    torch.set_flush_denormal(True)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def rank_seed(seed: int, rank: int, step: int) -> int:
    """The seed of process ``rank``'s random stream at ``step`` (an epoch or an optimisation
    step) of a run seeded ``seed``: independent of the steps before, so a resumed run draws
    what the uninterrupted run drew."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1)[0])


class Distributed(Callback):
    """Per-process setup of a data-parallel :func:`~cellweave.train.fit` (a no-op in one
    process; see the module's notes).

    Parameters
    ----------
    loaders
        The row-index loaders ``fit`` built (their :class:`~.data.IndexBatches` are sharded).
    seed
        The run's seed (the random stream of rank ``r`` is seeded by ``(seed, r, e)`` when
        epoch ``e`` starts and by ``(seed, r, 2**40 + s)`` before optimisation step ``s``).
    num_threads
        CPU threads per process (default: the cores shared out among the processes).
    deterministic
        Deterministic algorithms in spawned workers (as in the main process).
    """

    def __init__(
        self,
        loaders: list[Any],
        *,
        seed: int,
        num_threads: int | None = None,
        deterministic: bool = False,
    ) -> None:
        self.loaders = [x for x in loaders if x is not None]
        self.seed = int(seed)
        self.num_threads = num_threads
        self.deterministic = bool(deterministic)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        rank, world = shard_of(trainer)
        for loader in self.loaders:
            batches = getattr(loader, "batch_sampler", None)
            if isinstance(batches, IndexBatches):
                batches.shard(rank, world)
        if world <= 1:
            return
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)  # spawned workers start afresh
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        threads = None
        if trainer.strategy.root_device.type == "cpu":
            local = max(1, int(getattr(trainer, "num_devices", world)))
            threads = self.num_threads or max(1, (os.cpu_count() or 1) // local)
        apply_torch_settings(threads, self.deterministic)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """A spawned worker (``ddp_spawn``) leaves the process group before it exits: left to
        the exit handlers, gloo's threads raced the other worker's exit and aborted the
        process at random (``terminate called without an active exception``)."""
        if shard_of(trainer)[1] > 1 and _spawned(trainer) and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rank, world = shard_of(trainer)
        if world > 1:  # each process its own noise (the module's epoch hooks), resumable
            torch.manual_seed(rank_seed(self.seed, rank, trainer.current_epoch))

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Each process its own noise (dropout, sampled latents) from a stream seeded by the
        step: Lightning draws a seed from torch's global generator whenever it makes a loader
        iterator, and a resumed run makes the first epoch's iterator before the epoch's
        reseed (an uninterrupted one after it), so an epoch seed alone left a resumed DDP
        run on other draws (latent max abs diff 0.18 on the test's mosaic)."""
        rank, world = shard_of(trainer)
        if world > 1:
            torch.manual_seed(rank_seed(self.seed, rank, _STEP_STREAM + trainer.global_step))


def report(trainer: Trainer, summary: dict[str, float]) -> None:
    """Put ``summary`` into ``trainer.callback_metrics`` (what a spawned worker sends back to
    the main process)."""
    for key, value in summary.items():
        trainer.callback_metrics[_SUMMARY + key] = torch.tensor(float(value))


def reported(trainer: Trainer) -> dict[str, float]:
    """The summary a spawned worker sent back (empty when none)."""
    n = len(_SUMMARY)
    return {k[n:]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(_SUMMARY)}

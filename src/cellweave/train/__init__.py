"""One Lightning training wrapper for every cellweave model.

:func:`fit` trains a model two ways:

* a ``LightningModule`` (parameters and losses only) fed by a ``LightningDataModule`` that
  holds the split, the samplers and the data (``fit(module, datamodule=dm)``); the mosaic
  model trains so, and multi-device training builds on it;
* a :class:`CellweaveModule` (a ``LightningModule`` that holds its own small data and
  receives batches of *row indices*, ``fit(module, n_train=n)``), for models whose data is a
  few tensors (imputation MF/AE, the gradient mapper).

Either way: ``device="auto"`` (CUDA when present, else CPU), seeded, progress (a bar on
an interactive terminal, one ``cellweave`` logger line per epoch off one; the per-epoch
``history`` in the result, see :mod:`.callbacks`), early stopping on a validation metric
with the best weights restored, optional checkpoints and resume, and no log folders written
anywhere.

Several devices (``accelerator``, ``devices``, ``strategy``, ``precision``, as Lightning
spells them; checked with ``device`` by :func:`cellweave.device.parse_training`) train
data-parallel (DDP): each process gets its share of every batch (:mod:`.data`; Lightning's
sampler replacement is off), ``val_loss`` is summed over the processes, so early stopping
and the best weights agree in all of them, and checkpoints are written by the first process
only (:mod:`.distributed`).

Example
-------
>>> module = MyModel(...)  # a CellweaveModule
>>> result = fit(module, n_train=n_spots, n_val=n_spots, max_epochs=100, seed=0)
>>> result = fit(vae, datamodule=MyDataModule(...), max_epochs=100, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from lightning.pytorch import (
    Callback,
    LightningDataModule,
    LightningModule,
    Trainer,
    seed_everything,
)
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.utilities.model_helpers import is_overridden

from .._progress import progress_enabled, verbosity
from ..checkpoint import checkpointing, setup_checkpoints
from ..device import parse_training
from .callbacks import History, TrainingProgress
from .data import IndexBatches, index_loader, shard_batch
from .distributed import (
    Distributed,
    apply_torch_settings,
    chosen_options,
    is_global_zero,
    rank_seed,
    report,
    reported,
    shard_of,
    strategy_for,
    training_options,
)
from .module import CellweaveModule
from .scratch import scratch_dir

__all__ = [
    "CellweaveModule",
    "FitResult",
    "History",
    "IndexBatches",
    "TrainingProgress",
    "checkpointing",
    "fit",
    "index_loader",
    "is_global_zero",
    "rank_seed",
    "shard_batch",
    "shard_of",
    "training_options",
]

_QUIET_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")
_QUIET_MESSAGES = (
    ".*does not have many workers.*",
    ".*number of training batches.*",
    ".*Checkpoint directory.*exists and is not empty.*",
    ".*GPU available but not used.*",
    ".*`training_step` returned `None`.*",
    ".*isn't a multiple of.*",
    ".*LightningModule.*log.*",
    ".*on_epoch=True.*",
    ".*but have no `val_dataloader`.*",
    ".*LeafSpec.*",
)


def _validates(datamodule: LightningDataModule) -> bool:
    """Whether ``datamodule`` has validation batches (its ``setup("fit")`` runs first)."""
    if not is_overridden("val_dataloader", datamodule, LightningDataModule):
        return False
    datamodule.setup("fit")
    loader = datamodule.val_dataloader()
    try:
        return loader is not None and len(loader) > 0
    except TypeError:  # an iterable without a length: assume it has batches
        return loader is not None


# ------------------------------------------------------------------------------ callbacks


class _BestState(Callback):
    """Keeps (in memory) the weights with the best monitored value; restores them at the end."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if self.best_score is None or score < self.best_score:
            self.best_score, self.best_epoch = score, int(trainer.current_epoch)
            self.best_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_epoch = state_dict.get("best_epoch")
        self.best_state = state_dict.get("best_state")


class _EpochCounter(Callback):
    """Records the epochs that ran (to report them, and to test resuming)."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.global_step = 0

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.epochs.append(int(trainer.current_epoch))


# ------------------------------------------------------------------------------ fit


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes
    ----------
    epochs
        Epochs that ran in this call (resumed runs start after the checkpoint's epoch).
    global_step
        Optimiser steps in total (including those before a resume).
    best_epoch
        Epoch of the best validation score (``None`` without validation).
    best_score
        Best validation score (``None`` without validation).
    stopped_early
        Whether early stopping ended training.
    device
        The torch device trained on: ``"cpu"``, ``"cuda"`` (the first GPU), ``"cuda:N"``
        or ``"mps"``.
    seconds
        Wall time of the call.
    n_processes
        Processes that trained (data-parallel above 1).
    global_rank
        This process's rank (``0`` in one process and in the first of several).
    history
        One row per epoch, indexed by ``epoch``: the ``train_*`` loss terms the module logs
        (``loss`` is the total), ``val_loss`` (NaN where it did not validate) and
        ``seconds`` (see :class:`~cellweave.train.History`; empty after ``ddp_spawn``).
    """

    epochs: list[int] = field(default_factory=list)
    global_step: int = 0
    best_epoch: int | None = None
    best_score: float | None = None
    stopped_early: bool = False
    device: str = "cpu"
    seconds: float = 0.0
    n_processes: int = 1
    global_rank: int = 0
    history: pd.DataFrame = field(default_factory=lambda: History().frame())

    @property
    def is_global_zero(self) -> bool:
        """Whether this is the first process of the run (the one that writes outputs)."""
        return self.global_rank == 0


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Lightning's informational logs and the warnings that do not concern users."""
    saved = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    for name in _QUIET_LOGGERS:  # ``-vv`` on the command line lets them through
        logging.getLogger(name).setLevel(logging.INFO if verbosity() >= 2 else logging.ERROR)
    try:
        with warnings.catch_warnings():
            for message in _QUIET_MESSAGES:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _torch_settings(num_threads: int | None, deterministic: bool) -> Iterator[None]:
    """:func:`~.distributed.apply_torch_settings` for the block, restored afterwards."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    apply_torch_settings(num_threads, deterministic)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)
        torch.use_deterministic_algorithms(det)


def fit(
    module: LightningModule,
    *,
    datamodule: LightningDataModule | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    batch_size: int | None = None,
    val_batch_size: int | None = None,
    steps_per_epoch: int | None = None,
    max_epochs: int = 100,
    max_steps: int = -1,
    early_stopping: bool = True,
    patience: int = 5,
    min_delta: float = 0.0,
    check_val_every_n_epoch: int = 1,
    device: str = "auto",
    accelerator: str | None = None,
    devices: Any = None,
    strategy: Any = None,
    precision: Any = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    checkpoint_every_n_steps: int | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    num_threads: int | None = None,
    deterministic: bool = True,
) -> FitResult:
    """Train ``module`` with Lightning; the best validation weights are restored at the end.

    Parameters
    ----------
    module
        The model. Without ``datamodule``: a :class:`CellweaveModule` holding its data, whose
        batches are row indices ``0..n_train-1`` (training) and ``0..n_val-1`` (validation).
        With ``datamodule``: a ``LightningModule`` (parameters and losses only) that receives
        the datamodule's batches.
    datamodule
        A ``LightningDataModule`` holding the split, the samplers and the data (its
        ``setup`` may run more than once); it validates when its ``val_dataloader`` yields
        batches. Then ``n_train``, ``n_val``, the batch sizes and ``steps_per_epoch`` are not
        used: the datamodule's loaders decide.
    n_train
        Rows to train on (without ``datamodule``).
    n_val
        Rows to validate on (``None``: no validation, no early stopping).
    batch_size, val_batch_size
        Rows per batch (``None``: full batch).
    steps_per_epoch
        Optimisation steps per epoch (default: one pass over the rows).
    max_epochs, max_steps
        Stop after this many epochs or optimiser steps (``max_steps=-1``: no step limit).
    early_stopping
        Stop when ``val_loss`` has not improved by ``min_delta`` for ``patience``
        validation checks.
    check_val_every_n_epoch
        Validate every this many epochs.
    device
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` / ``"gpu"`` (the
        first GPU), ``"cuda:N"`` or ``"mps"``; see :func:`cellweave.device.parse_device`
        (an unknown or unavailable device is an ``InvalidOptionError`` before any work).
    accelerator, devices, strategy, precision
        Lightning's ``Trainer`` arguments for several devices, e.g. ``accelerator="cpu",
        devices=2, strategy="ddp"`` (``None``: from ``device``, one device; defaults from an
        enclosing :func:`training_options` block); checked together with ``device`` by
        :func:`cellweave.device.parse_training`. ``batch_size`` stays the rows per
        optimisation step over all processes (each process takes its share). With
        ``strategy="ddp"`` Lightning re-runs the script once per extra device; with
        ``"ddp_spawn"`` the module must pickle and the trained weights come back to this
        process.
    seed
        Seeds Python, NumPy and torch (``lightning.seed_everything``) and the batch order.
    checkpoint_dir
        Write ``last.ckpt`` there atomically after every epoch (``None``: no checkpoints;
        inside a :func:`checkpointing` block, its next ``fit-NNN`` subfolder), see
        :class:`cellweave.checkpoint.EpochCheckpoint`.
    resume
        ``True``: continue from ``checkpoint_dir/last.ckpt`` when it exists (weights,
        optimiser, epoch and step, random states, early stopping and best weights; a line on
        stderr says where); a path: continue from that checkpoint. A checkpoint of another
        model or data is refused (:class:`cellweave.checkpoint.CheckpointError`).
    checkpoint_every_n_steps
        Also write the checkpoint every this many optimiser steps (long epochs).
    fingerprint
        What else identifies the model and data in the checkpoint (init parameters, a hash
        of the data's names), besides the module's class, parameter shapes and data tensors.
    progress
        Show a progress bar (default: only on an interactive terminal, see
        :func:`cellweave._progress.progress_enabled`). Without a bar, each epoch is one
        line on the ``cellweave`` logger (epoch, loss terms, ``val_loss``, elapsed, ETA),
        and a long epoch a line every ~20 s; the history is kept either way.
    num_threads
        torch CPU threads during training (default: unchanged).
    deterministic
        Use deterministic algorithms (on CPU results are then bit-reproducible).

    Returns
    -------
    :class:`FitResult`.
    """
    start = time.perf_counter()
    chosen = chosen_options(
        accelerator=accelerator, devices=devices, strategy=strategy, precision=precision
    )
    plan = parse_training(device, **chosen)  # one line InvalidOptionError before any work
    show = progress_enabled() if progress is None else bool(progress)
    if datamodule is None and n_train is None:
        raise TypeError("fit() needs n_train (rows of a CellweaveModule) or a datamodule")
    train_loader = val_loader = None
    if datamodule is not None:
        validate = _validates(datamodule)
    else:
        validate = n_val is not None and n_val > 0
        train_loader, val_loader = _index_loaders(
            n_train, n_val if validate else None, batch_size, val_batch_size, steps_per_epoch, seed
        )
    cpu = plan.accelerator == "cpu"
    counter, best, stopper = _EpochCounter(), _BestState("val_loss"), None
    history = History()
    if validate and early_stopping:
        stopper = EarlyStopping(
            monitor="val_loss",
            mode="min",
            patience=int(patience),
            min_delta=float(min_delta),
            check_on_train_epoch_end=False,
        )
    distributed = Distributed(
        [train_loader, val_loader],
        seed=seed,
        num_threads=num_threads,
        deterministic=deterministic and cpu,
    )
    callbacks: list[Callback] = [
        distributed,
        counter,
        history,
        TrainingProgress(history, name=type(module).__name__, bars=show),
        *([best] if validate else []),
        *([stopper] if stopper is not None else []),
        _Report(counter, best if validate else None, stopper),
    ]
    saver, ckpt_path = setup_checkpoints(
        module, checkpoint_dir, resume, every_n_steps=checkpoint_every_n_steps, extra=fingerprint
    )
    if saver is not None:
        callbacks.append(saver)

    with _quiet(), _torch_settings(num_threads, deterministic and cpu):
        seed_everything(int(seed), workers=False, verbose=False)
        with scratch_dir() as root:  # never created: nothing to leak
            trainer = Trainer(
                accelerator=plan.accelerator,
                devices=plan.devices,
                strategy=strategy_for(plan.strategy, plan.n_processes),
                precision=plan.precision,
                use_distributed_sampler=False,  # the loaders shard themselves (see .data)
                max_epochs=int(max_epochs),
                max_steps=int(max_steps),
                logger=False,
                enable_checkpointing=saver is not None,
                enable_progress_bar=False,  # ours: TrainingProgress
                enable_model_summary=False,
                num_sanity_val_steps=0,
                check_val_every_n_epoch=int(check_val_every_n_epoch),
                limit_val_batches=1.0 if validate else 0,
                deterministic=False,  # set through _torch_settings (warn-only)
                default_root_dir=root,
                callbacks=callbacks,
            )
            if datamodule is not None:
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            else:
                trainer.fit(
                    module,
                    train_dataloaders=train_loader,
                    val_dataloaders=val_loader,
                    ckpt_path=ckpt_path,
                    weights_only=True,
                )
    module.to("cpu")
    if isinstance(module, CellweaveModule):
        module.move_data(torch.device("cpu"))
    summary = _summary(counter, best if validate else None, stopper)
    if not counter.epochs and (sent := reported(trainer)):  # trained in spawned workers
        summary = sent
    result = _result(summary, trainer, plan, seconds=time.perf_counter() - start)
    result.history = history.frame()
    return result


def _result(summary: dict[str, float], trainer: Trainer, plan: Any, *, seconds: float):
    """The :class:`FitResult` of a :func:`_summary`."""
    first, n_epochs = int(summary["first_epoch"]), int(summary["n_epochs"])
    found = summary["best_epoch"] >= 0
    return FitResult(
        epochs=list(range(first, first + n_epochs)),
        global_step=max(int(trainer.global_step), int(summary["global_step"])),
        best_epoch=int(summary["best_epoch"]) if found else None,
        best_score=summary["best_score"] if found else None,
        stopped_early=bool(summary["stopped"]),
        device=plan.device.name,
        seconds=seconds,
        n_processes=plan.n_processes,
        global_rank=shard_of(trainer)[0],
    )


def _index_loaders(
    n_train: int,
    n_val: int | None,
    batch_size: int | None,
    val_batch_size: int | None,
    steps_per_epoch: int | None,
    seed: int,
) -> tuple[Any, Any]:
    """The row-index loaders of a :class:`CellweaveModule` (no validation loader without
    ``n_val``)."""
    train = index_loader(n_train, batch_size=batch_size, steps_per_epoch=steps_per_epoch, seed=seed)
    if n_val is None:
        return train, None
    return train, index_loader(n_val, batch_size=val_batch_size, shuffle=False)


def _summary(
    counter: _EpochCounter, best: _BestState | None, stopper: EarlyStopping | None
) -> dict[str, float]:
    """What :class:`FitResult` reports, as numbers (what a spawned worker sends back)."""
    epochs = counter.epochs
    return {
        "first_epoch": float(epochs[0]) if epochs else 0.0,
        "n_epochs": float(len(epochs)),
        "global_step": float(counter.global_step),
        "best_epoch": float(best.best_epoch) if best and best.best_epoch is not None else -1.0,
        "best_score": float(best.best_score) if best and best.best_score is not None else 0.0,
        "stopped": float(stopper is not None and stopper.stopped_epoch > 0),
    }


class _Report(Callback):
    """In a data-parallel run, puts the :func:`_summary` into ``callback_metrics``: a
    ``ddp_spawn`` worker sends those back to the main process, where the callbacks' own
    state does not return."""

    def __init__(
        self, counter: _EpochCounter, best: _BestState | None, stopper: EarlyStopping | None
    ) -> None:
        self.counter, self.best, self.stopper = counter, best, stopper

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.counter.global_step = int(trainer.global_step)
        if trainer.world_size > 1:
            report(trainer, _summary(self.counter, self.best, self.stopper))

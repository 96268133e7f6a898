"""One Lightning training wrapper for every cellweave model.

:func:`fit` trains a model two ways:

* a ``LightningModule`` (parameters and losses only) fed by a ``LightningDataModule`` that
  holds the split, the samplers and the data (``fit(module, datamodule=dm)``); the mosaic
  model trains so, and multi-device training builds on it;
* a :class:`CellweaveModule` (a ``LightningModule`` that holds its own small data and
  receives batches of *row indices*, ``fit(module, n_train=n)``), for models whose data is a
  few tensors (imputation MF/AE, the gradient mapper).

Either way: ``device="auto"`` (CUDA when present, else CPU), seeded, a progress bar only on
an interactive terminal, early stopping on a validation metric with the best weights
restored, optional checkpoints and resume, and no log folders written anywhere.

Example
-------
>>> module = MyModel(...)  # a CellweaveModule
>>> result = fit(module, n_train=n_spots, n_val=n_spots, max_epochs=100, seed=0)
>>> result = fit(vae, datamodule=MyDataModule(...), max_epochs=100, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from ._progress import progress_enabled
from .checkpoint import checkpointing, setup_checkpoints
from .device import parse_device

__all__ = [
    "CellweaveModule",
    "FitResult",
    "checkpointing",
    "fit",
    "index_loader",
    "index_sampler",
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


class CellweaveModule(LightningModule):
    """Base class of cellweave models trained with :func:`fit`.

    Subclasses implement :meth:`loss` (training objective of a batch of row indices) and,
    when validated, :meth:`validation_loss`; they keep their data as tensors moved to the
    training device in :meth:`move_data` (called at the start of fitting).

    Parameters
    ----------
    lr
        Adam learning rate.
    weight_decay
        Adam weight decay (L2 on every parameter; models usually put explicit penalties in
        their loss instead).
    """

    def __init__(self, *, lr: float = 1e-2, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)

    # -- to implement -----------------------------------------------------------------
    def loss(self, index: torch.Tensor) -> torch.Tensor:
        """Training loss of the rows ``index`` (a scalar)."""
        raise NotImplementedError

    def validation_loss(self, index: torch.Tensor) -> torch.Tensor:
        """Validation metric of the rows ``index`` (a scalar; summed over batches)."""
        raise NotImplementedError

    def move_data(self, device: torch.device) -> None:
        """Move the model's data tensors to ``device`` (no-op by default)."""

    # -- Lightning hooks ----------------------------------------------------------------
    def on_fit_start(self) -> None:
        self.move_data(self.device)
        self._val_total = torch.zeros((), device=self.device)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.loss(_on_device(batch, self.device))
        self.log(
            "train_loss",
            loss.detach(),
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch),
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_total = torch.zeros((), device=self.device)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss = self.validation_loss(_on_device(batch, self.device))
        self._val_total = self._val_total + loss.detach()

    def on_validation_epoch_end(self) -> None:
        self.log("val_loss", self._val_total, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def _on_device(batch: Any, device: torch.device) -> Any:
    """A batch of row indices moved to ``device``; a datamodule's batch as it comes (its
    ``transfer_batch_to_device`` already placed it)."""
    return batch.to(device) if isinstance(batch, torch.Tensor) else batch


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


# ------------------------------------------------------------------------------ data


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


def index_sampler(
    n: int,
    *,
    batch_size: int | None = None,
    shuffle: bool = True,
    steps_per_epoch: int | None = None,
    seed: int = 0,
) -> tuple[Sampler[int], int]:
    """The order of rows ``0..n-1`` in an epoch and the batch size (see :func:`index_loader`).

    Returns a sampler of row indices (a seeded :class:`~torch.utils.data.RandomSampler` whose
    generator carries on from epoch to epoch; sequential rows when ``shuffle=False``; the
    rows repeated ``steps_per_epoch`` times for full batches) and the rows per batch; wrap
    them in a :class:`~torch.utils.data.BatchSampler` (``drop_last=False``).
    """
    size = n if batch_size is None else max(1, min(int(batch_size), n))
    steps = -(-n // size) if steps_per_epoch is None else max(1, int(steps_per_epoch))
    if size == n:  # full batch: every batch is all the rows, the order does not matter
        return _RepeatedRows(n, steps), size
    if shuffle:
        generator = torch.Generator().manual_seed(int(seed))
        sampler = RandomSampler(
            range(n), replacement=False, num_samples=steps * size, generator=generator
        )
        return sampler, size
    return SequentialSampler(range(n)), size


def index_loader(
    n: int,
    *,
    batch_size: int | None = None,
    shuffle: bool = True,
    steps_per_epoch: int | None = None,
    seed: int = 0,
) -> DataLoader:
    """A loader of row-index batches (LongTensors).

    Parameters
    ----------
    n
        Number of rows.
    batch_size
        Rows per batch; ``None`` is full batch (all rows).
    shuffle
        Draw rows in a seeded random order (each pass a fresh permutation).
    steps_per_epoch
        Batches per epoch (default: one pass over the rows). With full batches this repeats
        the whole set, so an "epoch" can hold several optimisation steps.
    seed
        Seed of the shuffling generator.
    """
    sampler, size = index_sampler(
        n, batch_size=batch_size, shuffle=shuffle, steps_per_epoch=steps_per_epoch, seed=seed
    )
    batches = BatchSampler(sampler, batch_size=size, drop_last=False)
    return DataLoader(_Rows(n), batch_sampler=batches, collate_fn=_identity, num_workers=0)


class _RepeatedRows(Sampler[int]):
    """Rows ``0..n-1``, ``steps`` times in a row (several full-batch steps per epoch)."""

    def __init__(self, n: int, steps: int) -> None:
        self.n, self.steps = int(n), int(steps)

    def __len__(self) -> int:
        return self.n * self.steps

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.steps):
            yield from range(self.n)


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
    """

    epochs: list[int] = field(default_factory=list)
    global_step: int = 0
    best_epoch: int | None = None
    best_score: float | None = None
    stopped_early: bool = False
    device: str = "cpu"
    seconds: float = 0.0


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Lightning's informational logs and the warnings that do not concern users."""
    saved = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
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
    """Thread count, flushed denormals (they make softmax tails very slow on CPU) and
    deterministic algorithms, restored afterwards."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    torch.set_flush_denormal(True)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)
        torch.use_deterministic_algorithms(det)


def _progress_bar(enabled: bool) -> list[Callback]:
    if not enabled:
        return []
    try:
        from lightning.pytorch.callbacks import RichProgressBar

        return [RichProgressBar(leave=False)]
    except ImportError:  # pragma: no cover - rich is a dependency
        from lightning.pytorch.callbacks import TQDMProgressBar

        return [TQDMProgressBar()]


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
        :func:`cellweave._progress.progress_enabled`).
    num_threads
        torch CPU threads during training (default: unchanged).
    deterministic
        Use deterministic algorithms (on CPU results are then bit-reproducible).

    Returns
    -------
    :class:`FitResult`.
    """
    start = time.perf_counter()
    target = parse_device(device)  # one line InvalidOptionError before any work
    accelerator = target.accelerator
    show = progress_enabled() if progress is None else bool(progress)
    if datamodule is None and n_train is None:
        raise TypeError("fit() needs n_train (rows of a CellweaveModule) or a datamodule")
    if datamodule is None:
        validate = n_val is not None and n_val > 0
    else:
        validate = _validates(datamodule)

    best = _BestState("val_loss")
    counter = _EpochCounter()
    callbacks: list[Callback] = [counter, *_progress_bar(show)]
    if validate:
        callbacks.append(best)
    stopper = None
    if validate and early_stopping:
        stopper = EarlyStopping(
            monitor="val_loss",
            mode="min",
            patience=int(patience),
            min_delta=float(min_delta),
            check_on_train_epoch_end=False,
        )
        callbacks.append(stopper)
    saver, ckpt_path = setup_checkpoints(
        module, checkpoint_dir, resume, every_n_steps=checkpoint_every_n_steps, extra=fingerprint
    )
    if saver is not None:
        callbacks.append(saver)

    with _quiet(), _torch_settings(num_threads, deterministic and accelerator == "cpu"):
        seed_everything(int(seed), workers=False, verbose=False)
        with tempfile.TemporaryDirectory(prefix="cellweave-train-") as root:
            trainer = Trainer(
                accelerator=accelerator,
                devices=target.devices,
                max_epochs=int(max_epochs),
                max_steps=int(max_steps),
                logger=False,
                enable_checkpointing=saver is not None,
                enable_progress_bar=show,
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
                train_loader = index_loader(
                    n_train, batch_size=batch_size, steps_per_epoch=steps_per_epoch, seed=seed
                )
                val_loader = (
                    index_loader(n_val, batch_size=val_batch_size, shuffle=False)
                    if validate
                    else None
                )
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
    return FitResult(
        epochs=counter.epochs,
        global_step=int(trainer.global_step),
        best_epoch=best.best_epoch if validate else None,
        best_score=best.best_score if validate else None,
        stopped_early=bool(stopper is not None and stopper.stopped_epoch > 0),
        device=target.name,
        seconds=time.perf_counter() - start,
    )

"""What every :func:`~cellweave.train.fit` reports while it trains: the history and the progress.

:class:`History` keeps one row per epoch (the epoch means of the ``train_*`` terms a module
logs, ``val_loss`` where it validated, the epoch's seconds); it is part of the checkpoint, so
a resumed run keeps the rows of the epochs before the resume.

:class:`TrainingProgress` shows it: on a terminal one bar on the shared live display of
:mod:`cellweave._progress` (the running mean of the loss from the first step, the last
epoch's terms and ``val_loss``, elapsed and ETA); off a terminal one ``cellweave`` logger
line per epoch (``epoch i/n``, the terms, ``val_loss``, elapsed, ETA) and, within long
epochs, a step line when no line came for half :data:`~cellweave._progress.HEARTBEAT`
(10 s); inside a :func:`~cellweave._progress.track` loop (an evaluation, whose own lines
name each job) the epoch lines are debug lines but where no line came for 10 s. Only the first
process of a data-parallel run reports.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import ExitStack
from typing import Any

import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from .._progress import HEARTBEAT, duration, live_task, nested, note, phase, since_last_line

__all__ = ["History", "TrainingProgress", "loss_terms"]


def loss_terms(metrics: dict[str, Any]) -> dict[str, float]:
    """The ``train_*`` entries of ``metrics`` as ``{term: value}`` (``train_loss`` ->
    ``loss``; the total first)."""
    terms = {k[len("train_") :]: float(v) for k, v in metrics.items() if k.startswith("train_")}
    if "loss" in terms:
        terms = {"loss": terms.pop("loss"), **terms}
    return terms


class History(Callback):
    """One row per epoch: ``epoch``, the ``train_*`` terms (without the prefix; ``loss`` is
    the total), ``val_loss`` (NaN in epochs that did not validate) and ``seconds``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._start = time.perf_counter()
        self._validated = -1

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = int(trainer.current_epoch)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = int(trainer.current_epoch)
        metrics = dict(trainer.callback_metrics)
        row: dict[str, float] = {"epoch": epoch, **loss_terms(metrics)}
        val = metrics.get("val_loss")
        row["val_loss"] = float(val) if val is not None and self._validated == epoch else math.nan
        row["seconds"] = time.perf_counter() - self._start
        self.rows = [r for r in self.rows if r["epoch"] != epoch] + [row]

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame indexed by ``epoch``."""
        frame = pd.DataFrame(self.rows)
        if frame.empty:
            empty = pd.Index([], name="epoch", dtype=int)
            return pd.DataFrame(columns=["loss", "val_loss", "seconds"], index=empty)
        frame["epoch"] = frame["epoch"].astype(int)
        return frame.set_index("epoch")

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]


class TrainingProgress(Callback):
    """A bar (``bars``) or logger lines for the fit of ``name``; reads :class:`History`'s
    last row at each epoch's end (``history`` must run before it)."""

    def __init__(self, history: History, *, name: str, bars: bool) -> None:
        self.history, self.name, self.bars = history, name, bool(bars)
        self._stack: ExitStack | None = None
        self._update: Any = None
        self._sum: torch.Tensor | float = 0.0
        self._count = 0
        self._batches = 0
        self._total = math.inf
        self._start = time.monotonic()
        self._shown = 0.0

    # -- lifecycle ------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._start = time.monotonic()
        self._batches = 0
        self._total = _total_batches(trainer)
        self._stack = ExitStack()
        self._stack.enter_context(phase(f"training {self.name}"))
        if self.bars:
            total = None if math.isinf(self._total) else self._total
            self._update = self._stack.enter_context(
                live_task(f"training {self.name}", total=total)
            )

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close()

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack, self._update = None, None

    # -- steps and epochs ---------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._sum, self._count = 0.0, 0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if self._stack is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._sum = self._sum + loss.detach().float()  # no device sync per step
            self._count += 1
        self._batches += 1
        now = time.monotonic()
        if self.bars and now - self._shown >= 0.2:
            self._shown = now
            self._update(
                description=self._where(trainer),
                completed=self._batches,
                info=self._info(running=True),
            )
        elif not self.bars and since_last_line() >= HEARTBEAT / 2:
            self._line(trainer, f"step {idx + 1}/{_steps(trainer)}, " + self._info(running=True))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._stack is None:
            return
        if self.bars:
            where, info = self._where(trainer), self._info()
            self._update(description=where, completed=self._batches, info=info, refresh=True)
        elif not nested() or since_last_line() >= HEARTBEAT / 2:
            self._line(trainer, self._info())
        else:  # inside an evaluation loop whose lines name the job: a debug line
            self._line(trainer, self._info(), level=logging.DEBUG)

    # -- text ---------------------------------------------------------------------------
    def _where(self, trainer: Trainer) -> str:
        return f"training {self.name} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def _info(self, *, running: bool = False) -> str:
        """``loss 1.23 (kl 0.1, nll 1.1), val_loss 1.30`` (``running``: the mean of this
        epoch's steps so far, before the epoch's terms exist)."""
        row = self.history.rows[-1] if self.history.rows else {}
        parts = []
        if running and self._count:
            parts.append(f"loss {float(self._sum) / self._count:.4g} (running)")
        elif row:
            terms = {k: v for k, v in row.items() if k not in ("epoch", "val_loss", "seconds")}
            total = terms.pop("loss", None)
            text = f"loss {total:.4g}" if total is not None else ""
            if terms:
                detail = ", ".join(f"{k} {v:.3g}" for k, v in terms.items())
                text = f"{text} ({detail})" if text else detail
            parts.append(text)
        val = row.get("val_loss", math.nan)
        if not math.isnan(val):
            parts.append(f"val_loss {val:.4g}")
        return ", ".join(p for p in parts if p)

    def _line(self, trainer: Trainer, text: str, *, level: int = logging.INFO) -> None:
        now = time.monotonic()
        elapsed = now - self._start
        eta = elapsed / self._batches * (self._total - self._batches) if self._batches else math.nan
        eta_text = "?" if math.isinf(eta) else duration(max(eta, 0.0))
        note(
            "%s: %s; %s elapsed, ETA %s",
            self._where(trainer),
            text,
            duration(elapsed),
            eta_text,
            level=level,
        )


def _steps(trainer: Trainer) -> Any:
    """Batches per epoch (``?`` when the loader has no length)."""
    n = trainer.num_training_batches
    return "?" if math.isinf(n) else int(n)


def _total_batches(trainer: Trainer) -> float:
    """Batches this call will run at most (``max_epochs`` and ``max_steps``; ``inf`` when
    the loader has no length)."""
    per_epoch = float(trainer.num_training_batches)
    if trainer.max_epochs is None or trainer.max_epochs < 0:
        total = math.inf
    else:
        total = per_epoch * max(int(trainer.max_epochs) - int(trainer.current_epoch), 0)
    if trainer.max_steps is not None and trainer.max_steps > 0:
        total = min(total, float(trainer.max_steps - trainer.global_step))
    return total

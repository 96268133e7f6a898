"""Training checkpoints that survive ``kill -9`` and resume exactly (used by :func:`~.train.fit`).

:class:`EpochCheckpoint` (a Lightning ``Checkpoint`` callback) writes ``last.ckpt`` after every
epoch (and every ``every_n_steps`` optimiser steps when asked), atomically: a temporary file
next to it, ``fsync``, ``os.replace``, so a killed process leaves the previous checkpoint or
the new one, never half a file. A checkpoint holds only tensors, numbers, strings and
containers: Lightning's own state (weights, optimisers, epoch and global step, loop progress,
early stopping and best-weights callbacks) plus the random states (torch, CUDA, NumPy,
Python, the generators of the training samplers) and a *fingerprint* of the model and data.
With several processes (DDP) every process takes part in the save and the first one writes
(its sampler generators are every process's: they share one seed and order; each process's
own random stream is reseeded per rank at every epoch and step by
:class:`~.train.Distributed`, so the first one's random states resume all of them: a DDP run
killed after an epoch ends bit-identical to an uninterrupted one).

:func:`read_checkpoint` loads one with ``torch.load(..., weights_only=True)`` stated
explicitly (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off), so a crafted file cannot
run code; a file from another model or data is refused in one line (:class:`CheckpointError`).

:func:`checkpointing` makes every :func:`~.train.fit` inside the block checkpoint into its own
subfolder (``fit-000``, ``fit-001``, ... in call order), for methods that train several
models (candidate fits, refits); resumed with the same seed the same calls see the same
folders: finished fits are restored without training, the interrupted one continues.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import pickle
import random
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint

from ._progress import verbosity
from .device import launched_rank
from .errors import InputError
from .io import atomic_path

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "EpochCheckpoint",
    "checkpointing",
    "fingerprint",
    "read_checkpoint",
    "resume_path",
    "setup_checkpoints",
]

CHECKPOINT_NAME = "last.ckpt"
_FORMAT = "cellweave-checkpoint-1"
_KEY = "cellweave"  # where our own state sits in the checkpoint


class CheckpointError(InputError):
    """A checkpoint that cannot be resumed (another model or data, not a checkpoint)."""


# ------------------------------------------------------------------------- fingerprint


def _hash_update(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.is_sparse:
            t = t.coalesce()
            _hash_update(h, t.indices())
            _hash_update(h, t.values())
        else:
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(json.dumps(value, sort_keys=True, default=str).encode())


def fingerprint(module: LightningModule, extra: Mapping[str, Any] | None = None) -> str:
    """A hash of what a checkpoint belongs to: the module's class, its parameter names and
    shapes, the data tensors it holds as plain attributes (a ``CellweaveModule``'s data)
    and ``extra`` (e.g. init parameters and a hash of the data's names and shape).

    Returns
    -------
    A hex SHA-256 digest.
    """
    h = hashlib.sha256()
    cls = type(module)
    h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    for name, value in module.state_dict().items():
        h.update(f"{name}{tuple(value.shape)}".encode())
    for name, value in sorted(vars(module).items()):
        if isinstance(value, torch.Tensor) and not name.startswith("_"):
            h.update(name.encode())
            _hash_update(h, value)
    if extra:
        for name in sorted(extra):
            h.update(str(name).encode())
            _hash_update(h, extra[name])
    return h.hexdigest()


# ------------------------------------------------------------------------- random states


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (global)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.as_tensor(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, IndexError):
            torch.cuda.set_rng_state_all(list(state["cuda"]))


def _generators(obj: Any, depth: int = 0) -> list[torch.Generator]:
    """The ``torch.Generator`` objects that order a loader's samples (a sampler's
    ``generator``, found through ``batch_sampler``, ``sampler`` and ``order`` attributes)."""
    if obj is None or depth > 4:
        return []
    if isinstance(obj, torch.Generator):
        return [obj]
    if isinstance(obj, list | tuple):
        return [g for o in obj for g in _generators(o, depth + 1)]
    if isinstance(obj, Mapping):
        return [g for o in obj.values() for g in _generators(o, depth + 1)]
    found: list[torch.Generator] = []
    for name in ("generator", "batch_sampler", "sampler", "order"):
        found += _generators(getattr(obj, name, None), depth + 1)
    return found


def _train_generators(trainer: Trainer) -> list[torch.Generator]:
    try:
        loaders = trainer.train_dataloader
    except Exception:  # no loader yet
        return []
    seen: dict[int, torch.Generator] = {}
    for g in _generators(loaders):
        seen.setdefault(id(g), g)
    return list(seen.values())


# ------------------------------------------------------------------------- reading


def read_checkpoint(path: str | Path, expected: str | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :class:`EpochCheckpoint` without unpickling objects.

    Parameters
    ----------
    path
        The ``.ckpt`` file.
    expected
        The :func:`fingerprint` it must carry (``None``: not checked).

    Raises
    ------
    CheckpointError
        Not a plain-tensor cellweave checkpoint (e.g. a pickled payload), or one written by
        another model or data.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot resume from {path}: not a plain-tensor cellweave checkpoint, refused to "
            f"load it ({first[:160]}); delete it or pass another checkpoint folder"
        ) from err
    ours = ckpt.get(_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(ours, dict) or ours.get("format") != _FORMAT:
        raise CheckpointError(
            f"cannot resume from {path}: it is not a cellweave checkpoint; delete it or pass "
            "another checkpoint folder"
        )
    if expected is not None and ours.get("fingerprint") != expected:
        raise CheckpointError(
            f"cannot resume from {path}: it was written by another model or data (model "
            f"class, parameters or data differ); pass another checkpoint folder or resume=False"
        )
    return ckpt


def resume_path(checkpoint_dir: str | Path | None, resume: bool | str | Path) -> Path | None:
    """The checkpoint to resume from: ``resume`` itself when it is a path, else
    ``checkpoint_dir/last.ckpt`` when ``resume`` is true and it exists (else ``None``)."""
    if not resume:
        return None
    if not isinstance(resume, bool):
        path = Path(resume)
        if not path.exists():
            raise CheckpointError(f"cannot resume: {path} does not exist; pass an existing file")
        return path
    if checkpoint_dir is None:
        return None
    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    return path if path.exists() else None


# ------------------------------------------------------------------------- callback


class EpochCheckpoint(Checkpoint):
    """Writes ``dirpath/last.ckpt`` atomically after every epoch (and every ``every_n_steps``
    optimiser steps), and restores the random states when Lightning resumes from it.

    Parameters
    ----------
    dirpath
        Folder of ``last.ckpt`` (created).
    fingerprint
        :func:`fingerprint` of the model and data, stored and checked on resume.
    every_n_steps
        Also write after every this many optimiser steps (``None``: only per epoch). A run
        resumed from such a mid-epoch checkpoint continues at that step (the rest of the
        epoch is drawn afresh, so only epoch-end checkpoints reproduce a run exactly).
    """

    def __init__(
        self, dirpath: str | Path, *, fingerprint: str, every_n_steps: int | None = None
    ) -> None:
        self.dirpath = Path(dirpath)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint
        self.every_n_steps = int(every_n_steps) if every_n_steps else None
        self.stopped = False
        self.finished = False
        self._pending_samplers: list[torch.Tensor] | None = None

    @property
    def path(self) -> Path:
        """The checkpoint file."""
        return self.dirpath / CHECKPOINT_NAME

    # -- state carried inside Lightning's checkpoint ----------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}  # our state sits under checkpoint["cellweave"] (see on_save_checkpoint)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[_KEY] = {
            "format": _FORMAT,
            "fingerprint": self.fingerprint,
            "rng": _rng_state(),
            "samplers": [g.get_state() for g in _train_generators(trainer)],
            "stopped": bool(self.stopped),
            "finished": bool(self.finished),
        }

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        ours = checkpoint[_KEY]
        _set_rng_state(ours["rng"])
        self._pending_samplers = list(ours["samplers"])
        self.stopped = bool(ours["stopped"])

    # -- hooks -------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.stopped:  # early stopping had ended the run: nothing left to train
            trainer.should_stop = True

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending_samplers is not None:
            for g, state in zip(_train_generators(trainer), self._pending_samplers, strict=False):
                g.set_state(state)
            self._pending_samplers = None

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.stopped = bool(trainer.should_stop)
        self.save(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.stopped = self.stopped or bool(trainer.should_stop)
        self.finished = True
        self.save(trainer)

    def save(self, trainer: Trainer) -> None:
        """Write the checkpoint now (temporary file + ``os.replace``). With several processes
        every one calls this (Lightning's save is collective) and the first one writes."""
        if not trainer.is_global_zero:
            trainer.save_checkpoint(self.path, weights_only=False)  # writes nothing here
            return
        with atomic_path(self.path, overwrite=True) as tmp:
            trainer.save_checkpoint(tmp, weights_only=False)


def setup_checkpoints(
    module: LightningModule,
    checkpoint_dir: str | Path | None,
    resume: bool | str | Path,
    *,
    every_n_steps: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[EpochCheckpoint | None, str | None]:
    """The checkpoint callback of a fit and the checkpoint to resume from.

    The checkpoint is checked first (a plain-tensor file of this model and data, see
    :func:`read_checkpoint`) and the resume announced on stderr. Inside a
    :func:`checkpointing` block a fit without ``checkpoint_dir`` uses the block's next
    subfolder; ``resume`` given as a file without ``checkpoint_dir`` writes next to it.

    Returns
    -------
    The callback (``None``: no checkpoints) and the checkpoint path for Lightning's
    ``ckpt_path`` (``None``: a fresh start).
    """
    if checkpoint_dir is None and (scoped := scoped_dir()) is not None:
        checkpoint_dir, resume, scope_extra = scoped
        extra = {**scope_extra, **(extra or {})}
    if checkpoint_dir is None and resume and not isinstance(resume, bool):
        checkpoint_dir = Path(resume).parent
    if checkpoint_dir is None:
        return None, None
    key = fingerprint(module, extra)
    saver = EpochCheckpoint(checkpoint_dir, fingerprint=key, every_n_steps=every_n_steps)
    path = resume_path(checkpoint_dir, resume)
    if path is None:
        return saver, None
    checkpoint = read_checkpoint(path, expected=key)
    announce(resumed_message(path, checkpoint))
    return saver, str(path)


def resumed_message(path: Path, checkpoint: Mapping[str, Any]) -> str:
    """The one line printed when a run resumes."""
    step = int(checkpoint.get("global_step", 0))
    try:
        done = int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"])
    except (KeyError, TypeError):
        done = int(checkpoint.get("epoch", 0)) + 1
    return f"cellweave: resuming from {path} at epoch {done} ({done} epochs and {step} steps done)"


def announce(message: str) -> None:
    """Print ``message`` on stderr (one line; not in the extra processes of a DDP run, not
    under the CLI's ``--quiet``)."""
    if launched_rank() != 0 or verbosity() < 0:
        return
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- nested fits


@dataclass
class _Scope:
    root: Path
    resume: bool
    extra: Mapping[str, Any] | None = None
    count: int = 0

    def next_dir(self) -> Path:
        path = self.root / f"fit-{self.count:03d}"
        self.count += 1
        return path


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "cellweave_checkpointing", default=None
)


@contextlib.contextmanager
def checkpointing(
    checkpoint_dir: str | Path | None,
    *,
    resume: bool = False,
    fingerprint: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """Checkpoint every :func:`~.train.fit` call in the block into ``checkpoint_dir/fit-NNN``
    (call order) and resume each from there when ``resume`` (``None``: no checkpoints);
    ``fingerprint`` (the method, its options, the data's names) joins each fit's own.

    Example
    -------
    >>> with checkpointing("ckpt", resume=True, fingerprint={"method": "mf"}):  # doctest: +SKIP
    ...     P = mf(X, coords=coords)
    """
    if checkpoint_dir is None:
        yield
        return
    token = _SCOPE.set(_Scope(Path(checkpoint_dir), bool(resume), fingerprint))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def scoped_dir() -> tuple[Path, bool, Mapping[str, Any]] | None:
    """The folder, resume flag and fingerprint for the next :func:`~.train.fit` in a
    :func:`checkpointing` block (``None`` outside one)."""
    scope = _SCOPE.get()
    if scope is None:
        return None
    return scope.next_dir(), scope.resume, dict(scope.extra or {})

"""Progress of long work: rich bars on a terminal, ``logging`` lines off one.

One mechanism for every long job (training through :func:`cellweave.train.fit`, the
evaluations, the CLI's phases):

* on an interactive stderr, one shared rich live display: :func:`track` (an outer bar),
  :func:`status` (a spinner) and :func:`live_task` (a training bar) add tasks to it, so nested
  bars never fight; inner bars disappear when done (transient) under an outer one;
* off a terminal (``nohup``, a scheduler, a pipe), lines on the ``cellweave`` logger
  (:data:`logger`): one per item of :func:`track`, one when a :func:`status` phase ends
  (when it took 10 s or more; its start is a debug line), and a heartbeat
  (``still <phase> (1m20s)``) whenever no line was written for :data:`HEARTBEAT` seconds,
  so a long phase prints at least one line every 10-30 s.

The library installs no handler (Python's convention): a script sees the lines after
``logging.basicConfig(level=logging.INFO)``; the CLI calls :func:`configure` (``--quiet``,
``-v``, ``-vv``). ``CELLWEAVE_PROGRESS=0`` / ``1`` forces bars off / on.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = [
    "HEARTBEAT",
    "configure",
    "configured",
    "duration",
    "live_task",
    "logger",
    "nested",
    "note",
    "phase",
    "progress_enabled",
    "since_last_line",
    "status",
    "track",
    "verbosity",
]

T = TypeVar("T")

#: The package's logger: every progress line goes through it.
logger = logging.getLogger("cellweave")
#: Seconds without a line after which a running phase logs ``still ...`` (off a terminal).
HEARTBEAT = 20.0

console = Console(stderr=True)

_state: dict[str, Any] = {"verbosity": 0, "handler": None, "last": 0.0, "tracks": 0}
_lock = threading.RLock()


# ------------------------------------------------------------------------------ settings


def verbosity() -> int:
    """The CLI's verbosity: ``-1`` quiet, ``0`` default, ``1`` (``-v``), ``2`` (``-vv``)."""
    return int(_state["verbosity"])


def progress_enabled() -> bool:
    """Bars are shown on an interactive stderr, unless quiet or ``CELLWEAVE_PROGRESS=0``
    (``CELLWEAVE_PROGRESS=1`` forces them on)."""
    flag = os.environ.get("CELLWEAVE_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return verbosity() >= 0 and sys.stderr.isatty()


class _Handler(logging.Handler):
    """Writes records to the current ``sys.stderr`` (through the rich console on a terminal,
    so lines appear above live bars)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if console.is_terminal and not console.quiet:
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            elif not console.quiet:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def configure(level: int = 0) -> None:
    """Set up the ``cellweave`` logger for the command line: ``level`` ``-1`` (``--quiet``:
    errors only, no bars), ``0`` (progress lines), ``1`` (``-v``: debug lines), ``2``
    (``-vv``: also Lightning's own messages). Lines go to stderr as ``HH:MM:SS message``."""
    with _lock:
        _state["verbosity"] = int(level)
        if _state["handler"] is not None:
            logger.removeHandler(_state["handler"])
        handler = _Handler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        _state["handler"] = handler
        logger.addHandler(handler)
        logger.propagate = False  # a library's logging.basicConfig must not print it twice
        levels = {-1: logging.ERROR, 0: logging.INFO, 1: logging.DEBUG}
        logger.setLevel(levels.get(max(-1, min(1, int(level))), logging.DEBUG))


@contextmanager
def configured() -> Iterator[None]:
    """Restore the logger and verbosity as they were after the block (a CLI run called
    from Python, e.g. a test or a notebook, leaves no handler behind)."""
    with _lock:
        saved = (_state["verbosity"], _state["handler"], logger.level, list(logger.handlers))
        propagate = logger.propagate
    try:
        yield
    finally:
        with _lock:
            _state["verbosity"], _state["handler"], level, handlers = saved
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate


def note(message: str, *args: Any, level: int = logging.INFO) -> None:
    """Log ``message`` on :data:`logger` (a line that shows resets the heartbeat's clock)."""
    if logger.isEnabledFor(level):
        _state["last"] = time.monotonic()
    logger.log(level, message, *args)


def since_last_line() -> float:
    """Seconds since the last line :func:`note` wrote."""
    return time.monotonic() - _state["last"]


def nested() -> bool:
    """Whether a :func:`track` loop is running (its lines name the item; the work inside
    reports at most every :data:`HEARTBEAT` seconds)."""
    return _state["tracks"] > 0


def duration(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``, ``3700`` -> ``"1h01m"``, ``4.2`` -> ``"4.2s"``."""
    if seconds != seconds or seconds < 0:  # NaN or negative: unknown
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = round(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


# ------------------------------------------------------------------------------ heartbeat


class _Heartbeat:
    """A daemon thread that logs ``still <phase> (elapsed)`` when no line came for
    :data:`HEARTBEAT` seconds while phases are open (off a terminal only)."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float]] = []
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def push(self, phase: str) -> None:
        with _lock:
            self.phases.append((phase, time.monotonic()))
            if self.thread is None:
                self.wake = threading.Event()
                self.thread = threading.Thread(
                    target=self._run, args=(self.wake,), daemon=True, name="cellweave-heartbeat"
                )
                self.thread.start()

    def pop(self) -> None:
        with _lock:
            if self.phases:
                self.phases.pop()
            if not self.phases and self.thread is not None:
                self.wake.set()  # this thread ends; the next phase starts a new one
                self.thread = None

    def _run(self, wake: threading.Event) -> None:
        while not wake.wait(timeout=min(HEARTBEAT, 5.0)):
            with _lock:
                if not self.phases:
                    return
                phase, since = self.phases[-1]
            now = time.monotonic()
            if now - _state["last"] >= HEARTBEAT:
                note("still %s (%s)", phase, duration(now - since))


_heartbeat = _Heartbeat()


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark a long phase: off a terminal the heartbeat names it while it runs."""
    _heartbeat.push(name)
    try:
        yield
    finally:
        _heartbeat.pop()


# ------------------------------------------------------------------------------ live bars


class _Live:
    """The one rich live display, shared by every bar and spinner open at once."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.users = 0

    @contextmanager
    def open(self) -> Iterator[Progress]:
        with _lock:
            if self.progress is None:
                self.progress = Progress(
                    SpinnerColumn(),
                    TextColumn("[progress.description]{task.description}"),
                    BarColumn(bar_width=12),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TextColumn("eta"),
                    TimeRemainingColumn(compact=True),
                    TextColumn("{task.fields[info]}"),
                    console=console,
                    transient=True,
                )
                self.progress.start()
            self.users += 1
            progress = self.progress
        try:
            yield progress
        finally:
            with _lock:
                self.users -= 1
                if self.users == 0 and self.progress is not None:
                    self.progress.stop()
                    self.progress = None


_live = _Live()


@contextmanager
def live_task(description: str, *, total: float | None = None) -> Iterator[Callable[..., None]]:
    """A task (bar or spinner) on the shared live display; yields ``update(**fields)``
    (``completed``, ``total``, ``description``, ``info``). The task is removed at the end
    (transient). Call only when :func:`progress_enabled`."""
    with _live.open() as progress:
        task: TaskID = progress.add_task(description, total=total, info="")

        def update(**fields: Any) -> None:
            progress.update(task, **fields)

        try:
            yield update
        finally:
            progress.remove_task(task)


def track(
    items: Iterable[T],
    *,
    description: str,
    total: int | None = None,
    label: Callable[[T], str] | None = None,
) -> Iterator[T]:
    """Iterate over ``items`` with a bar on a terminal, else one line per item
    (``description: <label> (i/n), elapsed, ETA``). ``label(item)`` names the item being
    worked on (e.g. ``"mf seed 1"``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    start = time.monotonic()
    bars = progress_enabled()
    with phase(description), _track_task(description, total, bars) as update, _tracking():
        for i, item in enumerate(items):
            name = label(item) if label is not None else ""
            where = f"{i + 1}/{total}" if total else f"{i + 1}"
            text = f"{description} {name} ({where})" if name else f"{description} ({where})"
            if bars:
                update(description=text, completed=i)
            else:
                elapsed = time.monotonic() - start
                eta = elapsed / i * (total - i) if i and total else float("nan")
                note("%s; %s elapsed, ETA %s", text, duration(elapsed), duration(eta))
            with phase(text):
                yield item
        if not bars:
            done = description.rstrip(": ")
            note("%s: done in %s", done, duration(time.monotonic() - start))


@contextmanager
def _tracking() -> Iterator[None]:
    with _lock:
        _state["tracks"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["tracks"] -= 1


@contextmanager
def _track_task(description: str, total: int | None, bars: bool) -> Iterator[Callable]:
    if not bars:
        yield lambda **fields: None
        return
    with live_task(description, total=total) as update:
        yield update


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner with ``message`` while the block runs (off a terminal: a debug line at the
    start, a heartbeat while it runs, a line with its time at the end when it took 10 s or
    more, else a debug line)."""
    if progress_enabled():
        with live_task(message), phase(message):
            yield
        return
    start = time.monotonic()
    note("%s ...", message, level=logging.DEBUG)
    with phase(message):
        yield
    seconds = time.monotonic() - start
    level = logging.INFO if seconds >= HEARTBEAT / 2 else logging.DEBUG
    note("%s: done in %s", message, duration(seconds), level=level)

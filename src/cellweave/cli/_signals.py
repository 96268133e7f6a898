"""SIGINT / SIGTERM during a CLI run: unwind (temporaries removed), then exit 130 / 143.

The handlers raise :class:`Interrupted`, a ``BaseException`` that is not a
``KeyboardInterrupt``, so no ``except Exception`` on the way swallows it and Lightning does not
turn it into ``sys.exit(1)``: every ``finally`` and :func:`cellweave.io.atomic_path` cleanup
runs, no partial output is renamed into place, and :func:`cellweave.cli.main` prints one line.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Interrupted", "interruptible"]

_NAMES = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}


class Interrupted(BaseException):
    """The run was stopped by a signal; ``code`` is the shell's exit status for it."""

    def __init__(self, signum: int) -> None:
        super().__init__(_NAMES.get(signum, f"stopped by signal {signum}"))
        self.signum = signum
        self.code = 128 + int(signum)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` while the block runs.

    Installed even when SIGINT was inherited as ignored (a background job), so Ctrl-C and
    ``kill -INT`` always stop the run; the previous handlers come back afterwards. Outside the
    main thread (signals cannot be caught there) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in _NAMES}
    for sig in _NAMES:
        signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

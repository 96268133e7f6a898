"""Lightning's ``default_root_dir`` of a :func:`~cellweave.train.fit` that leaks nothing.

With ``logger=False`` and cellweave's own checkpoint callback, Lightning writes nothing into
its ``default_root_dir`` (only SLURM's requeue signal, the TPU launcher and the tuner would,
none of which cellweave uses), so :func:`scratch_dir` names a fresh path in the temporary
folder without creating it: a ``kill -9`` leaves nothing behind, and a folder something did
create there is removed when ``fit`` ends.

Earlier versions created ``cellweave-train-XXXXXXXX`` with ``tempfile.TemporaryDirectory``,
and a killed process left it (empty) in ``/tmp``; :func:`remove_empty_leftovers` removes such
empty folders of this user, once per process, at the first ``fit``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PREFIX", "remove_empty_leftovers", "scratch_dir"]

#: Name prefix of the folders in the temporary folder.
PREFIX = "cellweave-train-"

_LEGACY = re.compile(re.escape(PREFIX) + r"[a-z0-9_]{8}")  # tempfile.mkdtemp's names
_CLEANED: set[str] = set()  # temporary folders already cleaned by this process


def remove_empty_leftovers(folder: str | Path | None = None) -> list[Path]:
    """Remove the *empty* folders earlier versions named ``cellweave-train-XXXXXXXX``
    (``tempfile``'s 8 random characters) of this user in ``folder`` (default: the
    temporary folder); return what was removed.

    Only empty real folders of that name go (``os.rmdir`` refuses a non-empty one,
    atomically), so a live run's files are never touched; an empty one of a live
    older-version run is harmless to remove (Lightning writes nothing there, and its
    cleanup ignores a missing folder). This version's names (with the pid) are not.
    """
    root = Path(tempfile.gettempdir() if folder is None else folder)
    removed = []
    for path in root.glob(PREFIX + "*"):
        if _LEGACY.fullmatch(path.name) is None:
            continue
        with contextlib.suppress(OSError):
            info = path.lstat()
            if not path.is_symlink() and path.is_dir() and info.st_uid == os.getuid():
                path.rmdir()
                removed.append(path)
    return removed


@contextlib.contextmanager
def scratch_dir() -> Iterator[str]:
    """A fresh, uncreated path ``<tmp>/cellweave-train-<pid>-<random>`` for the block;
    removed afterwards if anything created it. The first call of a process first removes
    earlier versions' empty leftovers (:func:`remove_empty_leftovers`)."""
    root = tempfile.gettempdir()
    if root not in _CLEANED:
        _CLEANED.add(root)
        remove_empty_leftovers(root)
    path = os.path.join(root, f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield path
    finally:
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)

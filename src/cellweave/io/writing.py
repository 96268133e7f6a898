"""Writing atomically: a temporary sibling renamed into place once complete.

:func:`atomic_path` (one file) and :func:`atomic_dir` (a folder, e.g. a saved model) write to
``.tmp-<pid><random>-<name>`` next to the target and rename it over the target only when the
writer finished, so a crash or a kill never leaves a half-written output: the old one, or
none. When the block raises (an error, or the CLI's SIGTERM/SIGINT turned into an exception)
the temporary is removed; one left by ``kill -9`` is removed by the next write of the same
name, once its writing process has gone (see :func:`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from anndata import AnnData

from ..errors import FileFormatError, InputError
from .readers import PathLike, _one_line, _quiet_mudata, _suffix

__all__ = ["atomic_dir", "atomic_path", "remove_stale_temps", "temp_sibling", "write"]

_TEMP = re.compile(r"\.tmp-(?P<pid>[0-9a-f]{8})[0-9a-f]{4}-(?P<name>.+)")


def _process_start() -> float:
    """When this process started (seconds since the epoch); Linux ``/proc``, else now."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


_PROCESS_START = _process_start()


def temp_sibling(path: PathLike) -> Path:
    """A fresh temporary name next to ``path``: ``.tmp-<pid:8 hex><4 random hex>-<name>``.

    The full target name stays at the end, so writers that infer the format from the
    extension work; the pid lets :func:`remove_stale_temps` tell a live writer's temporary
    from one left by a killed process.
    """
    path = Path(path)
    return path.parent / f".tmp-{os.getpid() & 0xFFFFFFFF:08x}{secrets.token_hex(2)}-{path.name}"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (names of older versions hold random hex: no such pid)."""
    if pid == os.getpid():
        return True
    if not 0 < pid < 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's live process (or we cannot tell): keep its file
    return True


def remove_stale_temps(path: PathLike) -> list[Path]:
    """Remove temporaries of ``path`` left by killed writers; return what was removed.

    Only names of our own pattern for exactly this target (``.tmp-<12 hex>-<name>``) are
    considered, and only those not modified since this process started and whose writing
    process is gone; user files are never touched.
    """
    path = Path(path)
    removed = []
    for candidate in path.parent.glob(f".tmp-*-{glob.escape(path.name)}"):
        match = _TEMP.fullmatch(candidate.name)
        if match is None or match["name"] != path.name or _alive(int(match["pid"], 16)):
            continue
        try:
            if candidate.lstat().st_mtime >= _PROCESS_START:
                continue
        except FileNotFoundError:
            continue
        _remove(candidate)
        removed.append(candidate)
    return removed


def _check_target(path: Path, *, overwrite: bool) -> None:
    if path.is_dir():
        raise FileFormatError(f"{path} is a directory: give a file name to write to")
    if path.exists() and not overwrite:
        raise FileFormatError(
            f"{path} already exists: pass overwrite=True (--overwrite on the command line) "
            "or choose another path"
        )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The temporary name ends with the target's full name (``.tmp-<pid><random>-out.png``), so
    writers that infer the format from the extension work. If the block raises (including
    ``KeyboardInterrupt`` and the CLI's signal exceptions), the temporary file is removed and
    ``path`` is left untouched; temporaries of the same name left by killed processes are
    removed first. Parent directories are created.

    Parameters
    ----------
    path
        The file to create.
    overwrite
        Replace ``path`` if it already exists (otherwise raise :class:`FileFormatError`).

    Examples
    --------
    >>> with atomic_path("figures/umap.png", overwrite=True) as tmp:  # doctest: +SKIP
    ...     fig.savefig(tmp)
    """
    path = Path(path).expanduser()
    _check_target(path, overwrite=overwrite)
    _mkdir_parent(path)
    remove_stale_temps(path)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileFormatError(f"nothing was written to {path}: the writer created no file")
        if tmp.is_file():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        _check_target(path, overwrite=overwrite)  # it may have appeared meanwhile
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _mkdir_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileFormatError(
            f"cannot create the folder {path.parent} ({_one_line(err)}): choose an output path "
            "in a writable folder"
        ) from err


def _holding_only(names: tuple[str, ...]) -> Any:
    """A ``replaceable`` check of :func:`atomic_dir`: a folder holding a file not in
    ``names`` is not replaced."""

    def reason(folder: Path) -> str | None:
        others = sorted(p.name for p in folder.iterdir() if p.name not in names)
        if not others:
            return None
        return (
            f"it holds files that are not part of a saved model ({', '.join(others[:5])}): "
            "save the model to a new or empty folder"
        )

    return reason


@contextlib.contextmanager
def atomic_dir(
    path: PathLike, *, overwrite: bool = False, replaceable: Any = None
) -> Iterator[Path]:
    """Yield a new temporary folder next to ``path``; move it to ``path`` once the block is done.

    An existing ``path`` is replaced only with ``overwrite`` (an empty folder always): it is
    first renamed aside, then the new folder renamed into place, then the old one deleted, so
    at every moment ``path`` is the complete old folder, the complete new one, or absent. If
    the block raises, the temporary folder is removed and ``path`` is untouched.

    Parameters
    ----------
    path
        The folder to create.
    overwrite
        Replace an existing non-empty folder.
    replaceable
        Optional ``callable(folder) -> str | None``: why an existing folder must not be
        replaced even with ``overwrite`` (e.g. it holds files that are not a saved model);
        or the names of the files a replaceable folder may hold (any other file keeps it).
    """
    if replaceable is not None and not callable(replaceable):
        replaceable = _holding_only(tuple(replaceable))
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise FileFormatError(f"{path} is a file: give a folder name to write to")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise FileFormatError(f"{path} exists and is not empty: pass overwrite=True")
        reason = replaceable(path) if replaceable is not None else None
        if reason:
            raise FileFormatError(f"cannot replace {path}: {reason}")
    _mkdir_parent(path)
    remove_stale_temps(path)
    tmp = temp_sibling(path)
    old = None
    try:
        tmp.mkdir()
        yield tmp
        for item in tmp.rglob("*"):
            if item.is_file():
                with open(item, "rb") as fh:
                    os.fsync(fh.fileno())
        if path.exists():
            old = temp_sibling(path)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        if old is not None and not path.exists():
            os.replace(old, path)  # put the old folder back
            old = None
        raise
    finally:
        if old is not None:
            _remove(old)


def _expect_suffix(path: Path, allowed: tuple[str, ...], what: str) -> None:
    if not path.name.lower().endswith(allowed):
        raise FileFormatError(
            f"cannot write {what} to {path}: its extension must be {' or '.join(allowed)}; "
            f"rename the output, e.g. {path.stem}{allowed[0]}"
        )


def write(
    data: Any,
    path: PathLike,
    *,
    overwrite: bool = False,
    compression: str | None = "gzip",
) -> Path:
    """Write data atomically to ``path``.

    Parameters
    ----------
    data
        AnnData (to ``.h5ad``), MuData (to ``.h5mu``) or a pandas DataFrame (to ``.csv``,
        ``.tsv``, optionally ``.gz``; the index is written as the first column).
    path
        Output file; parent directories are created.
    overwrite
        Replace an existing file (otherwise raise :class:`FileFormatError`).
    compression
        HDF5 dataset compression for AnnData/MuData (``"gzip"``, ``"lzf"`` or ``None``).

    Returns
    -------
    The path written.
    """
    from mudata import MuData

    path = Path(path).expanduser()
    if isinstance(data, MuData):
        _expect_suffix(path, (".h5mu",), "MuData")
        with atomic_path(path, overwrite=overwrite) as tmp, _quiet_mudata():
            data.write_h5mu(tmp, compression=compression)
    elif isinstance(data, AnnData):
        _expect_suffix(path, (".h5ad",), "AnnData")
        with atomic_path(path, overwrite=overwrite) as tmp:
            data.write_h5ad(tmp, compression=compression)
    elif isinstance(data, pd.DataFrame):
        allowed = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
        _expect_suffix(path, allowed, "a table")
        sep = "\t" if _suffix(path) == ".tsv" else ","
        with atomic_path(path, overwrite=overwrite) as tmp:
            data.to_csv(tmp, sep=sep)  # compression inferred from the name (tmp ends like path)
    else:
        raise InputError(
            f"cannot write a {type(data).__name__}: write accepts AnnData (.h5ad), MuData "
            "(.h5mu) or a pandas DataFrame (.csv/.tsv)"
        )
    return path

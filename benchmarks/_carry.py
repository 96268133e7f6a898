"""Peer rows carried from an earlier mapping report (``bench_mapping.py --carry-peers-from``).

The peers (Tangram, gimVI, novoSpaRc) take minutes per fold; when their cached results are
gone and the folds and scorer are unchanged, their per-scheme rows are read back from the
report's own tables instead of being run again. Only the medians and timings are in the
report (not the per-gene scores), so a carried row keeps its medians but is not ranked.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd

#: Line of a report that names where its carried rows came from (kept when carried again).
SOURCE_PREFIX = "- peer rows from the run of "
NUMERIC = ("pcc", "ssim", "rmse", "js", "seconds", "cpu_seconds")
_SECTION = re.compile(r"^## (\w+), (normalized|raw) scheme$")


def _rows(lines: list[str]) -> pd.DataFrame:
    """The first markdown table in ``lines`` as a DataFrame indexed by method."""
    table = [ln for ln in lines if ln.startswith("|")]
    head = [c.strip() for c in table[0].strip("|").split("|")]
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in table[2:]]
    df = pd.DataFrame(body, columns=head).set_index(head[0])
    df.index.name = "method"
    for column in (c for c in NUMERIC if c in df.columns):
        df[column] = pd.to_numeric(df[column], errors="coerce")
    return df


def read_peers(path: Path) -> tuple[dict[str, dict[str, pd.DataFrame]], str]:
    """``{data set: {scheme: peer rows}}`` of the report at ``path`` and where they came
    from (the report's own source line, else the commit that first wrote a peer row)."""
    lines = Path(path).read_text().splitlines()
    peers: dict[str, dict[str, pd.DataFrame]] = {}
    for i, line in enumerate(lines):
        match = _SECTION.match(line)
        if not match:
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("## ")), None)
        rows = _rows(lines[i + 1 : end])
        rows = rows[rows["kind"] == "peer"] if "kind" in rows.columns else rows.iloc[:0]
        if len(rows):
            peers.setdefault(match.group(1), {})[match.group(2)] = rows
    if not peers:
        raise SystemExit(f"{path}: no peer rows in its '## <data>, <scheme> scheme' tables")
    source = next((ln[len(SOURCE_PREFIX) :] for ln in lines if ln.startswith(SOURCE_PREFIX)), "")
    if not source:  # the commit that first wrote a peer row: the run that measured it
        by_scheme = next(iter(peers.values()))
        method = next(iter(by_scheme.values())).index[0]
        row = next(ln for ln in lines if ln.startswith(f"| {method} | peer |"))
        source = _commit_of(Path(path), row)
    return peers, source


def _commit_of(path: Path, line: str) -> str:
    """``commit <hash> (<date>)`` that first wrote ``line`` (a peer row) into ``path``, or
    the path's name outside git."""
    proc = subprocess.run(
        ["git", "log", "--reverse", "--format=commit %h (%cs)", "-S", line, "--", path.name],
        cwd=path.resolve().parent,
        capture_output=True,
        text=True,
    )
    found = proc.stdout.strip().splitlines()
    return found[0] if found else str(path)


def with_peers(table: pd.DataFrame, carried: pd.DataFrame | None) -> pd.DataFrame:
    """A ranked table (``rank`` column included) with the carried peer rows appended,
    unranked (``AS`` and ``rank`` ``-``); rows evaluated now win over carried ones."""
    if carried is None:
        return table
    extra = carried.drop(index=[m for m in carried.index if m in table.index])
    extra = extra.assign(AS="-", rank="carried")[list(table.columns)]
    return pd.concat([table.astype(object), extra.astype(object)])

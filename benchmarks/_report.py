"""What every benchmark report states: command, machine, versions; markdown tables."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd


def header(title: str, packages: tuple[str, ...]) -> list[str]:
    """Title, command line, machine (with load) and package versions as markdown lines."""
    found = []
    for name in packages:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return [
        f"# {title}",
        "",
        f"- command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} when written",
        f"- versions: Python {platform.python_version()}, {', '.join(found)}",
    ]


def markdown_table(df: pd.DataFrame, *, digits: int = 4, index_name: str = "") -> list[str]:
    """A DataFrame as markdown table lines (no tabulate dependency)."""

    def fmt(value) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    lines = [
        "| " + " | ".join([index_name or str(df.index.name or ""), *map(str, df.columns)]) + " |",
        "|" + "---|" * (len(df.columns) + 1),
    ]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx), *(fmt(v) for v in row)]) + " |")
    return lines


def replace_section(text: str, heading: str, lines: list[str]) -> str:
    """``text`` (a markdown report) with its section starting with ``heading`` (a ``## ``
    line prefix; the section runs to the next ``## `` heading) replaced by ``lines``;
    appended before a ``## Notes`` section, or at the end, when absent."""
    old = text.splitlines()
    start = next((i for i, line in enumerate(old) if line.startswith(heading)), None)
    if start is None:
        notes = next((i for i, line in enumerate(old) if line.startswith("## Notes")), len(old))
        start = end = notes
    else:
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
    new = [*lines, ""] if end < len(old) and lines and lines[-1] != "" else lines
    return "\n".join([*old[:start], *new, *old[end:]]) + "\n"


def existing_section(path: Path, heading: str) -> list[str]:
    """The lines of the section of ``path`` starting with ``heading`` (to ``## ``), or []."""
    if not path.exists():
        return []
    old = path.read_text().splitlines()
    start = next((i for i, line in enumerate(old) if line.startswith(heading)), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
    return old[start:end]


def write_report(path: Path, lines: list[str], kept: tuple[str, ...] = ()) -> None:
    """Write ``lines`` plus the sections of the current ``path`` whose headings start with one
    of ``kept`` (hand-written or written by other runs) to ``path`` atomically (temp + rename),
    and print the report."""
    for heading in kept:
        lines = [*lines, *existing_section(path, heading)]
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print(text)

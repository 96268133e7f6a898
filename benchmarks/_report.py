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

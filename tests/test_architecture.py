"""The architecture rules of docs/architecture.md, read from the source (AST, nothing imported).

A *package* is a top-level module or folder under ``src/cellweave`` (``graph``, ``metrics``,
``_utils``, ``tl``, ...). The rules:

* no private name (``_x``) is imported from another package: neither ``from X import _name``
  nor a module path through a private module (``cellweave.graph._common``); within one
  package anything goes. A top-level private module (``_utils``, ``_params``) is a package of
  its own: its public names may be imported anywhere;
* no source file is over :data:`MAX_LINES` lines;
* no capability (:data:`CAPABILITIES`) imports another, and the core imports no capability,
  nor ``tl``/``pl``/``cli`` (``lint-imports`` checks the same layers, transitively).

:data:`PENDING` lists known violations while a change is under way (empty on main); a listed
item that no longer occurs fails too, so the list cannot go stale.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "cellweave"
MAX_LINES = 600
CAPABILITIES = frozenset({"impute", "mapping", "mosaic", "align"})
UPPER = CAPABILITIES | {"tl", "pl", "cli", "__main__"}

#: Violations that other branches of issue 14 remove (empty this set once they are merged).
PENDING: frozenset[str] = frozenset()


def _sources() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> tuple[str, bool]:
    """Dotted name of a source file and whether it is a package ``__init__``."""
    parts = ["cellweave", *path.relative_to(ROOT).with_suffix("").parts]
    is_init = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_init else parts), is_init


def _package(dotted: str) -> str:
    """Top-level package of a dotted name under cellweave ('' for the root itself)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(absolute module, imported names)`` of every import of cellweave in a file (names
    empty for ``import a.b``)."""
    module, is_init = _module_name(path)
    package_parts = module.split(".") if is_init else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "cellweave"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "cellweave":
                out.append((target, [a.name for a in node.names]))
    return out


def _targets(module: str, names: list[str]) -> list[str]:
    """The dotted things one import reaches: ``from cellweave import io`` reaches
    ``cellweave.io``, ``from cellweave.graph import knn_graph`` reaches
    ``cellweave.graph.knn_graph``, ``import cellweave.graph`` reaches ``cellweave.graph``."""
    return [f"{module}.{n}" for n in names] if names else [module]


def _violations() -> set[str]:
    found = set()
    for path in _sources():
        rel, own = _rel(path), _package(_module_name(path)[0])
        found |= {f"lines: {rel}"} if len(path.read_text().splitlines()) > MAX_LINES else set()
        for module, names in _imports(path):
            for target in _targets(module, names):
                other = _package(target)
                if other in ("", own):
                    continue
                inner = target.split(".")[2:]  # the path inside the other package
                if any(_is_private(p) for p in inner):
                    found.add(f"private: {rel} -> {target}")
                reached = module if _package(module) == other else target
                if own in CAPABILITIES and other in CAPABILITIES:
                    found.add(f"capability: {rel} -> {reached}")
                if own not in UPPER and own and other in UPPER:
                    found.add(f"core: {rel} -> {reached}")
    return found


def test_rules_hold():
    broken = sorted(_violations() - PENDING)
    assert not broken, "architecture rules broken:\n" + "\n".join(broken)


def test_pending_is_current():
    fixed = sorted(PENDING - _violations())
    assert not fixed, "fixed, so remove from PENDING:\n" + "\n".join(fixed)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..graph._common import _as_coords", "private"),
        ("from ..graph import _as_coords", "private"),
        ("from cellweave.graph.knn import _drop_self", "private"),
        ("import cellweave.graph._common", "private"),
        ("from ..mapping import map_cells", "capability"),
        ("from .. import mapping", "capability"),
        ("from .._utils import check_random_state", None),
        ("from .. import __version__", None),
        ("from .api import _run", None),
        ("from ..graph import nearest_neighbors", None),
    ],
)
def test_checker_finds(tmp_path, monkeypatch, source, expected):
    # A fake tree: the rules must see what a capability module imports.
    pkg = tmp_path / "cellweave" / "mosaic"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text(source + "\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path / "cellweave")
    kinds = {v.split(":")[0] for v in _violations()}
    assert kinds == ({expected} if expected else set())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..mapping import map_cells", {"core: graph/x.py -> cellweave.mapping"}),
        ("from .. import tl", {"core: graph/x.py -> cellweave.tl"}),
        ("from ..validate import check_spatial", set()),
    ],
)
def test_checker_finds_core_upward(tmp_path, monkeypatch, source, expected):
    pkg = tmp_path / "cellweave" / "graph"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text(source + "\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path / "cellweave")
    assert _violations() == expected


def test_checker_counts_lines(tmp_path, monkeypatch):
    (tmp_path / "cellweave").mkdir()
    (tmp_path / "cellweave" / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "cellweave" / "ok.py").write_text("x = 1\n" * MAX_LINES)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path / "cellweave")
    assert _violations() == {"lines: big.py"}

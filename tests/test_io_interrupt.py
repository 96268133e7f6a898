"""Interrupted writes: SIGTERM / SIGINT during a CLI write (exit 143 / 130, one line, no temp
file, no partial output), temporaries of killed runs removed on the next run (never user
files), and model folders saved atomically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from anndata import AnnData

from cellweave import io
from cellweave.cli import main
from cellweave.errors import FileFormatError
from cellweave.mosaic import persist

SRC = Path(__file__).resolve().parents[1] / "src"


def spatial_file(path: Path, n: int = 120) -> Path:
    rng = np.random.default_rng(0)
    adata = AnnData(sp.csr_matrix(rng.poisson(1.0, (n, 15)).astype(np.float32)))
    adata.obs_names = [f"s{i}" for i in range(n)]
    adata.var_names = [f"g{j}" for j in range(15)]
    adata.obsm["spatial"] = rng.random((n, 2)) * 10
    return io.write(adata, path)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------------------------
# signals during a write (a subprocess whose writer stalls once the temp file is complete)
# --------------------------------------------------------------------------------------------
DRIVER = textwrap.dedent(
    """
    import sys, time
    import anndata
    from cellweave.cli import main

    original = anndata.AnnData.write_h5ad

    def slow_write(self, filename, *args, **kwargs):
        original(self, filename, *args, **kwargs)
        print("WRITING", filename, flush=True)
        time.sleep(60)

    anndata.AnnData.write_h5ad = slow_write
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_signal_during_write_leaves_nothing(tmp_path, signum, code, word):
    src = spatial_file(tmp_path / "in.h5ad")
    out = tmp_path / "out" / "graph.h5ad"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, str(driver), "neighbors", str(src), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = ""
        deadline = time.monotonic() + 120
        while not line.startswith("WRITING") and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert line.startswith("WRITING"), proc.stderr.read()
        tmp = Path(line.split(maxsplit=1)[1].strip())
        assert tmp.exists() and tmp.name.startswith(".tmp-") and tmp.parent == out.parent
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in err, err
    assert not out.exists()
    assert not tmp.exists()
    assert list(out.parent.iterdir()) == []


def test_interrupted_is_not_an_exception():
    """`except Exception` on the way (readers, anndata, Lightning) must not swallow it."""
    from cellweave.cli._signals import Interrupted, interruptible

    assert not issubclass(Interrupted, Exception)
    assert not issubclass(Interrupted, KeyboardInterrupt)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as err, interruptible():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert err.value.code == 143
    assert signal.getsignal(signal.SIGTERM) is before


# --------------------------------------------------------------------------------------------
# temporaries left by kill -9
# --------------------------------------------------------------------------------------------
def _age(path: Path, seconds: float = 3600) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def test_stale_temp_removed_on_next_run(tmp_path, capsys):
    src = spatial_file(tmp_path / "in.h5ad")
    out = tmp_path / "graph.h5ad"
    dead = _dead_pid()
    stale = tmp_path / f".tmp-{dead:08x}beef-graph.h5ad"
    stale.write_bytes(b"x" * 1000)
    _age(stale)
    stale_dir = tmp_path / f".tmp-{dead:08x}0000-graph.h5ad"  # e.g. from a model folder
    stale_dir.mkdir()
    (stale_dir / "weights.pt").write_bytes(b"w")
    _age(stale_dir)
    keep = [
        tmp_path / ".tmp-notes-graph.h5ad",  # not our pattern
        tmp_path / f".tmp-{dead:08x}beef-other.h5ad",  # another output's
        tmp_path / f".tmp-{os.getpid():08x}beef-graph.h5ad",  # a live process's
        tmp_path / "graph.h5ad.tmp-0123456789ab",
        tmp_path / f".tmp-{dead:08x}cafe-graph.h5ad",  # modified after this process started
    ]
    for path in keep:
        path.write_text("user data")
        if "cafe" not in path.name:
            _age(path)
    code = main(["neighbors", str(src), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert out.exists()
    assert not stale.exists() and not stale_dir.exists()
    for path in keep:
        assert path.exists(), path


def test_remove_stale_temps_returns_what_it_removed(tmp_path):
    target = tmp_path / "model"
    stale = tmp_path / f".tmp-{_dead_pid():08x}1234-model"
    stale.write_bytes(b"")
    _age(stale)
    old_style = tmp_path / ".tmp-ffffffff9abc-model"  # random hex of an earlier version
    old_style.write_bytes(b"")
    _age(old_style)
    assert sorted(io.remove_stale_temps(target)) == sorted([stale, old_style])
    assert io.remove_stale_temps(target) == []


def test_temp_name_pattern():
    tmp = io.temp_sibling("/a/b/out.h5ad")
    assert tmp.parent == Path("/a/b") and tmp.name.endswith("-out.h5ad")
    assert tmp.name[5:13] == f"{os.getpid():08x}" and len(tmp.name) == len(".tmp-") + 13 + 8


# --------------------------------------------------------------------------------------------
# model folders
# --------------------------------------------------------------------------------------------
def _save(path: Path, value: float, **kwargs) -> Path:
    return persist.write_model(
        path,
        {"batch_names": ["a", "b"], "label_classes": [], "tag": value},
        fitted={"rna": {"arrays": {"mean": np.full(3, value)}, "kind": "rna"}},
        graph=sp.identity(3, format="csr"),
        state={"w": torch.full((2,), value)},
        **kwargs,
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_model_round_trip(tmp_path):
    path = _save(tmp_path / "model", 1.0)
    saved = persist.read_model(path)
    assert saved["meta"]["tag"] == 1.0
    np.testing.assert_array_equal(saved["fitted"]["rna"]["arrays"]["mean"], np.ones(3))
    assert torch.equal(saved["state"]["w"], torch.ones(2))
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("fail_at", ["weights", "rename"])
def test_failed_save_keeps_the_old_model(tmp_path, monkeypatch, fail_at):
    path = _save(tmp_path / "model", 1.0)
    before = _snapshot(path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if fail_at == "weights":  # mid-save: three files written, the fourth fails
        monkeypatch.setattr(persist.torch, "save", boom)
    else:  # the old folder is moved aside, then renaming the new one fails
        real = os.replace
        calls = []

        def flaky(src, dst):
            calls.append(dst)
            if len(calls) == 2:
                raise OSError("rename failed")
            return real(src, dst)

        monkeypatch.setattr("cellweave.io.writing.os.replace", flaky)
    with pytest.raises(OSError):
        _save(path, 2.0, overwrite=True)
    assert _snapshot(path) == before
    assert not list(tmp_path.glob(".tmp-*"))


def test_save_replaces_only_when_asked(tmp_path):
    path = _save(tmp_path / "model", 1.0)
    with pytest.raises(FileFormatError, match="not empty: pass overwrite=True"):
        _save(path, 2.0)
    _save(path, 2.0, overwrite=True)
    assert json.loads((path / "model.json").read_text())["tag"] == 2.0
    assert not list(tmp_path.glob(".tmp-*"))
    (path / "notes.txt").write_text("mine")
    with pytest.raises(FileFormatError, match=r"notes\.txt"):
        _save(path, 3.0, overwrite=True)
    assert (path / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (_save(empty, 4.0) / "weights.pt").exists()

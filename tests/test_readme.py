"""The README runs as written: its Python block is executed on the simulators, and every
``cellweave ...`` line of its shell blocks runs on small built-in data in a temporary folder
(with the input names the README uses)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SRC = Path(__file__).resolve().parents[1] / "src"


def blocks(language: str) -> list[str]:
    """The fenced code blocks of ``language`` in the README."""
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def cli_lines() -> list[str]:
    """Each ``cellweave ...`` command of the shell blocks, continuations joined, comments
    dropped."""
    lines = []
    for block in blocks("bash"):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("  #", 1)[0].split(" # ", 1)[0].strip()
            if line.startswith("cellweave"):
                lines.append(line)
    return lines


#: Options appended to keep each command quick on the tiny data (the README's own options
#: stay; click takes the last value of an option given twice).
FAST = {
    "demo": ["--n-spots", "120", "--n-cells", "200"],
    "simulate spatial": ["--n-spots", "150", "--n-genes", "40", "--n-ref-cells", "100"],
    "simulate mosaic": ["--n-cells", "200"],
    "integrate": ["--max-epochs", "2"],
    "map --evaluate": ["--folds", "2"],
}


def _fast(argv: list[str]) -> list[str]:
    words = [w for w in argv if not w.startswith("-")]
    command = " ".join(words[:2]) if words[:1] == ["simulate"] else words[0] if words else ""
    if command == "map" and "--evaluate" in argv:
        command = "map --evaluate"
    return argv + FAST.get(command, [])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The README's inputs, small: data/spatial/a/b .h5ad, sc.h5ad, my_visium/outs/,
    rna/protein .h5ad, mosaic/atlas .h5mu."""
    import cellweave as cw
    from cellweave.align import simulate_rna_protein

    root = tmp_path_factory.mktemp("readme")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spatial, reference = cw.sim.simulate_spatial(
            n_spots=120, n_genes=40, n_ref_cells=150, grid="hex", random_state=0
        )
        for adata in (spatial, reference):
            adata.uns.pop("sim", None)
        cw.sim.write_spaceranger(spatial, root / "my_visium")
        spatial.write_h5ad(root / "data.h5ad")
        spatial.write_h5ad(root / "spatial.h5ad")
        spatial.write_h5ad(root / "a.h5ad")
        moved = spatial.copy()
        angle = np.deg2rad(20)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        moved.obsm["spatial"] = spatial.obsm["spatial"] @ rotation.T + 3.0
        moved.write_h5ad(root / "b.h5ad")
        reference.write_h5ad(root / "sc.h5ad")
        rna, protein, _ = simulate_rna_protein(n_spots=150, n_proteins=10, random_state=0)
        for adata in (rna, protein):
            adata.uns.pop("pairs", None)
            adata.uns.pop("sim", None)
        rna.write_h5ad(root / "rna.h5ad")
        protein.write_h5ad(root / "protein.h5ad")
        mdata = cw.sim.simulate_mosaic(n_cells=1000, random_state=0)  # 1% labelled >= 8 classes
        mdata.write(root / "mosaic.h5mu")
        mdata.write(root / "atlas.h5mu")
    return root


def test_readme_has_the_space_ranger_path():
    lines = cli_lines()
    for command in ("inspect", "neighbors", "impute", "map", "integrate"):
        assert any(
            line.split()[1] == command and ("my_visium/outs/" in line or command == "integrate")
            for line in lines
        ), command
    assert any("--plot" in line and "my_visium/outs/" in line for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("line", cli_lines())
def test_every_cli_line_runs(line, workdir):
    argv = _fast(shlex.split(line)[1:])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-m", "cellweave", *argv, *(["--overwrite"] if _writes(argv) else [])],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def _writes(argv: list[str]) -> bool:
    """Whether the command takes --overwrite (it writes a file the README may write twice)."""
    return any(a in ("-o", "--out", "--metrics-json") for a in argv) and argv[0] not in (
        "demo",
        "simulate",
    )


@pytest.mark.slow
def test_python_block_runs_as_written(tmp_path, monkeypatch):
    (code,) = blocks("python")
    monkeypatch.chdir(tmp_path)
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {"__name__": "readme"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, str(README), "exec"), namespace)
    adata, mdata, de = namespace["adata"], namespace["mdata"], namespace["de"]
    assert "imputed" in adata.layers and "chosen" in adata.uns["impute"]["params"]
    assert "cell_type_fractions" in adata.obsm and "spatial_aligned" in namespace["section_b"].obsm
    assert "X_cellweave" in mdata.obsm and set(de["group1"]) == set(mdata.obs["cell_type"])
    for png in ("graph", "impute", "impute_scores", "fractions", "fractions_vs_truth",
                "overlay", "umap", "volcano", "de_dotplot"):  # fmt: skip
        assert (tmp_path / f"{png}.png").stat().st_size > 5000, png

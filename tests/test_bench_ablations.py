"""The attention ablations of the benchmarks: named variants reach map_cells with their
options (bench_deconv.py), and the gene-by-gene comparison (_ablations.paired)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_deconv
from _ablations import ABLATIONS, paired


@pytest.fixture
def seen(monkeypatch) -> dict:
    """The options ``map_cells`` receives (a stand-in records them and returns one
    fraction column)."""
    import cellweave.mapping as mapping

    seen = {}

    def fake_map_cells(reference, target, **kwargs):
        seen.update(kwargs)
        target.obsm["cell_type_fractions"] = pd.DataFrame({"a": [1.0]}, index=target.obs_names)

        class Done:
            method = kwargs["method"]

        return Done()

    monkeypatch.setattr(mapping, "map_cells", fake_map_cells)
    return seen


def test_variants_pass_their_options_to_the_attention_solver(seen):
    import anndata as ad

    spots = ad.AnnData(np.ones((1, 2)))
    out = bench_deconv.run_method(
        "attention_no_neighbours", spots, spots, seed=3, cells_per_spot=1.0, c2l_epochs=1
    )
    assert seen["method"] == "attention" and seen["spatial_key"] is None
    assert seen["random_state"] == 3 and list(out.columns) == ["a"]
    seen.clear()
    bench_deconv.run_method("gradient", spots, spots, seed=0, cells_per_spot=1.0, c2l_epochs=1)
    assert seen["method"] == "gradient" and "spatial_key" not in seen
    assert set(bench_deconv.VARIANTS) == set(ABLATIONS) - {"attention"}


def test_settings_pass_their_options_to_the_attention_solver(seen):
    import anndata as ad

    spots = ad.AnnData(np.ones((1, 2)))
    bench_deconv.run_method(
        "attention_validation", spots, spots, seed=1, cells_per_spot=1.0, c2l_epochs=1
    )
    assert seen["method"] == "attention" and seen["validation"] == 0.1
    assert "attention_validation" not in bench_deconv.VARIANTS  # not an ablation


def test_paired_reports_the_better_method_gene_by_gene():
    genes = [f"g{i}" for i in range(30)]
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.5, 30)
    rows = [
        {"scheme": "normalized", "method": m, "gene": g, "PCC": v + shift, "SSIM": v}
        for m, shift in (("a", 0.1), ("b", 0.0))
        for g, v in zip(genes, base, strict=True)
    ]
    line = paired(pd.DataFrame(rows), "a", "b", "normalized")
    assert "PCC +0.1000 (better on 100% of 30 genes" in line
    assert "SSIM +0.0000 (better on 0% of 30 genes" in line

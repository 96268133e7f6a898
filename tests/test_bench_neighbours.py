"""The neighbour-view benchmark's noisy panel (bench_mapping_neighbours.py --depth) and its
variant report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_mapping_neighbours as bench


def test_thinned_panel_has_the_depth_and_keeps_the_input():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(400, 30))
    adata = AnnData(X.copy())
    out = bench.thinned(adata, 20, seed=3)
    assert np.array_equal(adata.X, X)  # the input is not changed
    totals = np.asarray(out.X).sum(1)
    assert abs(totals.mean() - 20) < 1.0
    assert np.array_equal(out.X, np.round(out.X))  # counts
    assert np.array_equal(out.X, bench.thinned(adata, 20, seed=3).X)  # seeded
    assert not np.array_equal(out.X, bench.thinned(adata, 20, seed=4).X)


def test_noisy_predictor_maps_the_thinned_panel():
    seen = {}

    def predict(adata_sc, adata_sp, genes, **kwargs):
        seen["X"] = np.asarray(adata_sp.X)
        return kwargs

    adata = AnnData(np.full((50, 10), 0.5))
    assert bench._noisy(predict, None) is predict
    noisy = bench._noisy(predict, 5)
    assert noisy(None, adata, ["g1", "g2"], random_state=1) == {"random_state": 1}
    assert abs(seen["X"].sum(1).mean() - 5) < 1.0
    first = seen["X"].copy()
    noisy(None, adata, ["g2", "g1"])
    assert np.array_equal(first, seen["X"])  # the same fold, the same thinning


def test_report_compares_every_variant_with_no_neighbours():
    rows = []
    base = np.random.default_rng(0).uniform(0, 0.5, size=12)
    for method, shift in (("attention", 0.1), ("attention_no_neighbours", 0.0)):
        for gene in range(12):
            pcc = base[gene] + shift
            rows.append(dict(data="x", method=method, seed=0, gene=f"g{gene}", PCC=pcc, SSIM=pcc))
    md = bench.report(pd.DataFrame(rows))
    line = next(line for line in md if "`attention` minus" in line)
    assert "better on 100% of 12" in line

"""The GLUE peer of the mosaic benchmark (benchmarks/peers_mosaic.py): its guidance graph from
``varp["gene_peak"]``, and (where scglue is installed) an embedding for every cell."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pytest
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peers_mosaic as peers


def tiny_mosaic() -> md.MuData:
    """2 genes, 3 peaks; links g0-p0, g0-p1 (negative), g1-p2."""
    rng = np.random.default_rng(0)
    rna = ad.AnnData(sparse.csr_matrix(rng.poisson(3.0, size=(4, 2)).astype(np.float32)))
    rna.var_names, rna.obs_names = ["g0", "g1"], ["c0", "c1", "c2", "c3"]
    atac = ad.AnnData(sparse.csr_matrix(rng.poisson(1.0, size=(3, 3)).astype(np.float32)))
    atac.var_names, atac.obs_names = ["p0", "p1", "p2"], ["c0", "c1", "c4"]
    mdata = md.MuData({"rna": rna, "atac": atac})
    links = np.zeros((5, 5), dtype=np.float32)
    for i, j, v in ((0, 2, 1.0), (0, 3, -0.5), (1, 4, 1.0)):
        links[i, j] = links[j, i] = v
    mdata.varp["gene_peak"] = sparse.csr_matrix(links)
    return mdata


def test_glue_graph_has_each_link_both_ways_and_self_loops():
    pytest.importorskip("networkx")
    graph = peers._glue_graph(tiny_mosaic())
    assert set(graph.nodes) == {"g0", "g1", "p0", "p1", "p2"}
    assert graph.number_of_edges() == 3 * 2 + 5
    for u, v in (("g0", "p0"), ("p0", "g0"), ("g1", "p2"), ("p2", "g1")):
        (attrs,) = graph.get_edge_data(u, v).values()
        assert attrs == {"weight": 1.0, "sign": 1}
    (neg,) = graph.get_edge_data("p1", "g0").values()
    assert neg == {"weight": 0.5, "sign": -1}
    for node in graph.nodes:
        assert graph.has_edge(node, node)
    assert not graph.has_edge("g0", "p2")


@pytest.mark.slow
def test_glue_embeds_every_cell_of_a_small_mosaic():
    """scglue (bench extra) end to end on a simulated 300-cell mosaic, 3 epochs per fit."""
    pytest.importorskip("scglue")
    import cellweave as cw

    mdata = cw.sim.simulate_mosaic(
        n_cells=300,
        batches={"paired": ("rna", "atac"), "rna_only": ("rna",), "atac_only": ("atac",)},
        n_genes=100,
        n_peaks=300,
        random_state=0,
    )
    result = peers.glue(mdata, n_comps=20, max_epochs=3, seed=0, skip_balance=True)
    assert result.values.shape == (300, 50)
    assert np.isfinite(result.values).all()
    assert (np.abs(result.values).sum(axis=1) > 0).all()  # every cell has an encoding

"""Guidance graphs: builders by genomic window and by name, and the graph encoder's loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from cellweave.errors import FileFormatError, InputError, NoSharedFeaturesError
from cellweave.mosaic import (
    gene_peak_links,
    gene_protein_links,
    graph_from_links,
    peaks_from_names,
    read_bed,
    read_gtf,
)
from cellweave.mosaic.guidance import GraphEncoder

GENES = pd.DataFrame(
    {
        "chrom": ["chr1", "chr1", "chr2"],
        "start": [10_000, 100_000, 5_000],
        "end": [20_000, 120_000, 6_000],
    },
    index=["A", "B", "C"],
)
PEAKS = ["chr1_15000_15500", "chr1_30000_30400", "chr1_95000_95100", "chr2_60000_60200", "chrX_1_2"]


def test_gene_peak_links_by_window_with_distance_weights():
    links = gene_peak_links(GENES, PEAKS, window=10_000)
    got = {(r.source, r.target): r.weight for r in links.itertuples()}
    # A body overlaps peak 1 (d=0); peak 2 is 10 kb past A's end; peak 3 is 4.9 kb before B
    assert set(got) == {
        ("A", "chr1_15000_15500"),
        ("A", "chr1_30000_30400"),
        ("B", "chr1_95000_95100"),
    }
    assert got[("A", "chr1_15000_15500")] == pytest.approx(1.0)
    assert got[("A", "chr1_30000_30400")] == pytest.approx(11.0**-0.75)
    assert got[("B", "chr1_95000_95100")] == pytest.approx(5.9**-0.75)
    flat = gene_peak_links(GENES, PEAKS, window=100_000, decay=False)
    assert (flat["weight"] == 1.0).all() and ("C", "chr2_60000_60200") in set(
        zip(flat["source"], flat["target"], strict=True)
    )
    assert gene_peak_links(GENES, PEAKS, window=0)["target"].tolist() == ["chr1_15000_15500"]


def test_peak_names_and_files(tmp_path):
    parsed = peaks_from_names(["chr1:100-200", "chr2_5_9", "weird"])
    assert parsed.loc["chr1:100-200", ["chrom", "start", "end"]].tolist() == ["chr1", 100, 200]
    assert "weird" not in parsed.index
    with pytest.raises(InputError, match="chrom_start_end"):
        peaks_from_names(["a", "b"])
    bed = tmp_path / "peaks.bed"
    bed.write_text("chr1\t15000\t15500\tp1\nchr1\t95000\t95100\tp2\n")
    assert read_bed(bed).index.tolist() == ["p1", "p2"]
    gtf = tmp_path / "genes.gtf"
    gtf.write_text(
        'chr1\tsrc\tgene\t10001\t20000\t.\t+\t.\tgene_id "g1"; gene_name "A";\n'
        'chr1\tsrc\texon\t10001\t11000\t.\t+\t.\tgene_id "g1"; gene_name "A";\n'
        'chr1\tsrc\tgene\t100001\t120000\t.\t-\t.\tgene_id "g2"; gene_name "B";\n'
    )
    genes = read_gtf(gtf)
    assert genes.index.tolist() == ["A", "B"] and genes.loc["A", "start"] == 10_000
    links = gene_peak_links(gtf, bed, window=10_000)
    assert set(zip(links["source"], links["target"], strict=True)) == {("A", "p1"), ("B", "p2")}
    with pytest.raises(FileFormatError):
        read_bed(tmp_path / "absent.bed")


def test_gene_protein_links_by_name_and_aliases():
    genes = ["CD4", "PTPRC", "CD8A", "MS4A1", "FOXP3", "ITGAM"]
    proteins = [
        "CD4_GTCCAGGC",
        "CD45RA_GTGATAGT",
        "CD8a_ACCCGCAC",
        "prot_CD20",
        "FOXP3",
        "Blank",
        "CD11b",
    ]
    links = gene_protein_links(genes, proteins)  # fmt: skip
    got = dict(zip(links["target"], links["source"], strict=True))
    assert got == {
        "CD4_GTCCAGGC": "CD4",
        "CD45RA_GTGATAGT": "PTPRC",
        "CD8a_ACCCGCAC": "CD8A",
        "prot_CD20": "MS4A1",
        "FOXP3": "FOXP3",
        "CD11b": "ITGAM",
    }
    custom = gene_protein_links(genes, ["Blank"], mapping={"Blank": "FOXP3"})
    assert custom["source"].tolist() == ["FOXP3"]


def test_graph_from_links_is_symmetric_signed_and_checked():
    feats = ["A", "B", "p1", "p2"]
    links = pd.DataFrame(
        {"source": ["A", "B", "A"], "target": ["p1", "p2", "zz"], "weight": [0.5, 1.0, 1.0],
         "sign": [1, -1, 1]}
    )  # fmt: skip
    with pytest.warns(UserWarning, match="1 of 3"):
        g = graph_from_links(links, feats)
    dense = g.toarray()
    np.testing.assert_allclose(dense, dense.T)
    assert dense[0, 2] == 0.5 and dense[1, 3] == -1.0 and np.count_nonzero(dense) == 4
    with pytest.raises(NoSharedFeaturesError):
        graph_from_links(links.iloc[[2]], feats)


def _ring_graph(n: int) -> sparse.csr_matrix:
    i = np.arange(0, n, 2)
    return sparse.csr_matrix(
        (np.ones(2 * i.size), (np.r_[i, i + 1], np.r_[i + 1, i])), shape=(n, n)
    )


def test_graph_loss_is_computed_and_learns_the_links():
    torch.manual_seed(0)
    n = 40
    adj = _ring_graph(n)  # pairs (0,1), (2,3), ...
    enc = GraphEncoder(n, 8, adj)
    assert enc.n_edges == n // 2
    opt = torch.optim.Adam(enc.parameters(), lr=0.05)
    first = None
    for _ in range(150):
        loss = enc.loss(enc(), n_samples=256) + 0.01 * enc.kl()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.75 * first
    enc.eval()
    v = enc()
    linked = (v[0::2] * v[1::2]).sum(1)
    shuffled = (v[0::2] * v[torch.roll(torch.arange(1, n, 2), 3)]).sum(1)
    assert float((linked[:, None] > shuffled[None, :]).float().mean()) > 0.9


def test_graph_encoder_without_graph_has_no_loss():
    enc = GraphEncoder(10, 4, None)
    assert float(enc.loss(enc())) == 0.0 and enc.n_edges == 0
    assert torch.equal(enc.mean(), enc.embedding)


def test_negative_links_push_embeddings_apart():
    torch.manual_seed(1)
    adj = sparse.csr_matrix(np.array([[0, -1.0], [-1.0, 0]]))
    enc = GraphEncoder(2, 4, adj, variational=False)
    opt = torch.optim.Adam(enc.parameters(), lr=0.05)
    for _ in range(100):
        loss = enc.loss(enc(), n_samples=32, negatives=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    v = enc().detach()
    assert float((v[0] * v[1]).sum()) < -1.0

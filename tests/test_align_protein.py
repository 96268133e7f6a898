"""RNA vs protein sections: gene-protein pairs found by name, the alignment checked against the
simulator's known transform, the protein panel carried onto the RNA spots, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import cellweave as cw
from cellweave.align import (
    PROTEIN_PANEL,
    align_sections,
    read_pairs,
    resolve_pairs,
    simulate_rna_protein,
    transfer_features,
)
from cellweave.align.features import Scaler
from cellweave.errors import (
    DuplicateNamesError,
    EmptyDataError,
    FileFormatError,
    InputError,
    InvalidOptionError,
    MissingKeyError,
    NoSharedFeaturesError,
)
from cellweave.links import clean_protein_name, gene_protein_links

ANGLE, SHIFT = 130.0, (12.0, -7.0)


def make_pair(seed=0, **kwargs):
    return simulate_rna_protein(
        n_spots=400, n_proteins=30, angle=ANGLE, shift=SHIFT, random_state=seed, **kwargs
    )


def errors(adata_b, truth, key="spatial_aligned") -> np.ndarray:
    """Distance of each spot of b from its true place, in spot spacings (hex lattice: 1)."""
    return np.linalg.norm(adata_b.obsm[key] - truth, axis=1)


def pair_accuracy(rna, protein, key="alignment") -> float:
    """Fraction of the matched spots of b whose heaviest partner is the spot it was cut from."""
    matching = protein.uns[key]["matching"].tocsr()
    rows = np.flatnonzero(np.diff(matching.indptr) > 0)
    best = np.asarray(matching[rows].argmax(axis=1)).ravel()
    source = rna.obs_names.get_indexer(protein.obs["source_spot"].to_numpy())
    return float((best == source[rows]).mean())


def median_correlation(carried: np.ndarray, truth: np.ndarray) -> float:
    r = [np.corrcoef(carried[:, j], truth[:, j])[0, 1] for j in range(truth.shape[1])]
    return float(np.median(r))


@pytest.fixture(scope="module")
def aligned():
    rna, protein, truth = make_pair()
    align_sections(rna, protein, feature_pairs="auto")
    return rna, protein, truth


# ------------------------------------------------------------------------ the truth builder


def test_simulated_panel_is_linked_to_its_genes_by_name():
    rna, protein, truth = make_pair(drop=0.2)
    assert protein.n_obs == 320 and protein.n_vars == 32  # 30 antibodies + 2 isotype controls
    assert set(PROTEIN_PANEL) >= set(protein.uns["pairs"].values())
    assert all(gene in rna.var_names for gene in protein.uns["pairs"].values())
    links = gene_protein_links(rna.var_names, protein.var_names)
    assert dict(zip(links["target"], links["source"], strict=True)) == protein.uns["pairs"]
    assert np.asarray(protein.X).min() >= 0 and np.allclose(protein.X, np.rint(protein.X))
    source = rna[protein.obs["source_spot"]].obsm["spatial"]
    assert np.median(np.linalg.norm(truth - source, axis=1)) < 0.2  # jitter 0.1 spacing
    assert np.median(np.linalg.norm(protein.obsm["spatial"] - truth, axis=1)) > 5


def test_links_live_in_the_core_and_mosaic_reexports_them():
    from cellweave.mosaic import CD_ALIASES
    from cellweave.mosaic import gene_protein_links as from_mosaic

    assert from_mosaic is cw.links.gene_protein_links
    assert CD_ALIASES is cw.links.CD_ALIASES
    assert clean_protein_name("CD8a_ACCCGCAC") == "CD8A"
    assert clean_protein_name("HLA-DR_TotalSeqB") == "HLA-DR"


# ------------------------------------------------------------------------ pairs


def test_auto_pairs_find_the_rna_section_either_way(aligned):
    rna, protein, _ = aligned
    params = protein.uns["alignment"]["params"]
    assert params["feature_pairs"] == "auto" and params["rna_section"] == "a"
    assert params["n_feature_pairs"] == 30  # the isotype controls stay unpaired
    used = protein.uns["alignment"]["feature_pairs"]
    assert dict(zip(used["b"], used["a"], strict=True)) == protein.uns["pairs"]
    swapped = resolve_pairs("auto", protein.var_names, rna.var_names)
    assert swapped.rna == "b" and dict(zip(swapped.a, swapped.b, strict=True)) == dict(
        protein.uns["pairs"]
    )


def test_table_with_header_and_columns_in_either_order(tmp_path, aligned):
    rna, protein, _ = aligned
    genes, proteins = list(protein.uns["pairs"].values()), list(protein.uns["pairs"])
    path = tmp_path / "pairs.tsv"
    pd.DataFrame({"protein": proteins, "gene": genes}).to_csv(path, sep="\t", index=False)
    pairs = resolve_pairs(path, rna.var_names, protein.var_names)
    assert pairs.source == "table" and pairs.a == tuple(genes) and pairs.b == tuple(proteins)
    frame = pd.DataFrame({"g": genes, "p": proteins})
    assert resolve_pairs(frame, rna.var_names, protein.var_names).b == tuple(proteins)
    series = resolve_pairs(pd.Series(proteins, index=genes), rna.var_names, protein.var_names)
    assert series.source == "mapping" and len(series.a) == 30


# ------------------------------------------------------------------------ the alignment


def test_rna_and_protein_sections_align_within_a_fraction_of_a_spot(aligned):
    rna, protein, truth = aligned
    assert np.median(errors(protein, truth)) < 0.1
    assert np.quantile(errors(protein, truth), 0.9) < 1.0
    assert pair_accuracy(rna, protein) > 0.9
    assert protein.uns["alignment"]["angle"] == pytest.approx(-ANGLE, abs=2.0)


@pytest.mark.parametrize("clr", [False, True])
def test_mirrored_protein_section_and_clr_values(clr):
    rna, protein, truth = make_pair(seed=2, mirror=True, clr=clr)
    align_sections(rna, protein, feature_pairs="auto", reflection=True)
    assert np.median(errors(protein, truth)) < 0.5
    assert pair_accuracy(rna, protein) > 0.8


def test_rank_scale_is_invariant_to_monotone_transforms():
    rng = np.random.default_rng(0)
    X = rng.gamma(2.0, 3.0, size=(200, 5))
    X[rng.random(X.shape) < 0.3] = 0.0  # ties
    scaled = Scaler.fit(X)(X)
    transformed = np.log1p(X) * 7.0 + 3.0
    np.testing.assert_allclose(Scaler.fit(transformed)(transformed), scaled)
    assert abs(scaled.mean()) < 0.1 and 0.7 < scaled.std() < 1.1
    fitted = Scaler.fit(X[:100])
    assert np.all(np.diff(fitted(np.sort(X[100:, :1], axis=0)), axis=0) >= 0)  # monotone
    standard = Scaler.fit(X, "standard")(X)
    np.testing.assert_allclose(standard.mean(axis=0), 0.0, atol=1e-12)


# ------------------------------------------------------------------------ transfer


def test_transfer_carries_the_panel_onto_the_rna_spots(aligned):
    rna, protein, _ = aligned
    out = transfer_features(rna, protein, copy=True)
    assert "protein" not in rna.obsm  # copy leaves a unchanged
    carried = out.obsm["protein"]
    assert list(carried.columns) == list(protein.var_names)
    source = out.obs["protein_source"]
    info = out.uns["protein"]
    assert info["n_matched"] == int((source == "matched").sum()) >= 0.6 * protein.n_obs
    assert info["n_matched"] + info["n_nearest"] + info["n_none"] == rna.n_obs
    assert carried[source == "none"].isna().all(axis=None)
    assert carried[source != "none"].notna().all(axis=None)
    ok = (source != "none").to_numpy()
    truth = rna.obsm["true_protein"].to_numpy()[ok]
    r = median_correlation(np.log1p(carried.to_numpy()[ok, :30]), truth)
    unaligned = protein.X[
        cw.graph.nearest_neighbors(protein.obsm["spatial"], 1, query=rna.obsm["spatial"])[1][:, 0]
    ]
    r_unaligned = median_correlation(np.log1p(np.asarray(unaligned)[ok, :30]), truth)
    assert r > 0.6 and r_unaligned < 0.3


def test_transfer_radius_zero_leaves_unmatched_spots_empty(aligned):
    rna, protein, _ = aligned
    out = transfer_features(rna, protein, radius=0, features=["ADT_CD4"], copy=True)
    assert out.obsm["protein"].shape == (rna.n_obs, 1)
    assert out.uns["protein"]["n_nearest"] == 0
    assert out.obsm["protein"].isna().to_numpy().ravel().sum() == out.uns["protein"]["n_none"]
    everywhere = transfer_features(rna, protein, radius=float("inf"), copy=True)
    assert everywhere.uns["protein"]["n_none"] == 0
    assert everywhere.obsm["protein"].notna().all(axis=None)


# ------------------------------------------------------------------------ bad input


def test_no_pair_found_names_examples_and_the_fix():
    rna, protein, _ = make_pair()
    protein.var_names = [f"feature_{i}" for i in range(protein.n_vars)]
    with pytest.raises(NoSharedFeaturesError, match="no gene-protein pair") as err:
        align_sections(rna, protein, feature_pairs="auto")
    assert "'feature_0'" in str(err.value) and "table" in str(err.value)
    few = protein[:, :3].copy()
    few.var_names = ["CD3-TotalSeqB", "ADT_CD4", "x"]
    with pytest.raises(NoSharedFeaturesError, match="only 2"):
        align_sections(rna, few, feature_pairs="auto")


@pytest.mark.parametrize(
    ("rows", "error", "words"),
    [
        ([("CD4", "ADT_CD4"), ("CD999", "ADT_CD4")], MissingKeyError, ("'CD999'", "section A")),
        ([("CD4", "ADT_CD4"), ("CD4", "nope")], MissingKeyError, ("'nope'", "section B")),
        ([("CD4", "ADT_CD4")] * 2, DuplicateNamesError, ("('CD4', 'ADT_CD4')", "once")),
        ([("CD4", "ADT_CD4"), ("CD3E", "CD3-TotalSeqB")], NoSharedFeaturesError, ("2 pair",)),
    ],
)
def test_bad_tables_are_one_line(tmp_path, aligned, rows, error, words):
    rna, protein, _ = aligned
    path = tmp_path / "pairs.csv"
    pd.DataFrame(rows).to_csv(path, header=False, index=False)
    with pytest.raises(error) as err:
        align_sections(rna, protein, feature_pairs=path)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_unreadable_tables(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        read_pairs(tmp_path / "absent.csv")
    three = tmp_path / "three.csv"
    three.write_text("a,b,c\nd,e,f\n")
    with pytest.raises(FileFormatError, match="3 column"):
        read_pairs(three)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81,\x00\x9f\n\x00")
    with pytest.raises(FileFormatError):
        read_pairs(binary)
    holes = tmp_path / "holes.csv"
    holes.write_text("CD4,ADT_CD4\nCD3E,\n")
    with pytest.raises(FileFormatError, match="empty cell in row 2"):
        read_pairs(holes)
    with pytest.raises(InvalidOptionError, match="not understood"):
        resolve_pairs(3, ["a"], ["b"])


def test_feature_pairs_with_structure_only_is_refused(aligned):
    rna, protein, _ = aligned
    with pytest.raises(InvalidOptionError, match="structure_only"):
        align_sections(rna, protein, feature_pairs="auto", structure_only=True, copy=True)


def test_transfer_needs_an_alignment_of_these_sections(aligned):
    rna, protein, _ = aligned
    bare = protein.copy()
    del bare.uns["alignment"]
    with pytest.raises(MissingKeyError, match="align_sections"):
        transfer_features(rna, bare)
    with pytest.raises(InputError, match="shape"):
        transfer_features(rna[:50].copy(), protein)
    with pytest.raises(InputError, match="aligned onto other spots"):
        transfer_features(rna[::-1].copy(), protein)
    empty = protein.copy()
    empty.uns["alignment"] = dict(empty.uns["alignment"])
    empty.uns["alignment"]["matching"] = sp.csr_matrix((protein.n_obs, rna.n_obs))
    with pytest.raises(EmptyDataError, match="matched no spot"):
        transfer_features(rna, empty)
    with pytest.raises(MissingKeyError, match="CD999"):
        transfer_features(rna, protein, features=["CD999"])
    for radius in (-1, float("nan"), True, "1"):
        with pytest.raises(InputError, match="radius"):
            transfer_features(rna, protein, radius=radius)


def test_tl_facade_exposes_transfer():
    assert cw.tl.transfer_features is transfer_features


def test_auto_pairs_on_the_real_reapseq_panel(real_data):
    """REAP-seq PBMC feature names: every antibody but the isotype controls finds its gene."""
    import h5py

    with h5py.File(real_data("reapseq_pbmc_rna_protein.h5mu"), "r") as f:
        names = {}
        for mod in ("rna", "protein"):
            var = f[f"mod/{mod}/var"]
            names[mod] = var[var.attrs["_index"]][:].astype(str)
    pairs = resolve_pairs("auto", names["protein"], names["rna"])
    assert pairs.rna == "b" and len(pairs.a) == 44
    linked = dict(zip(pairs.a, pairs.b, strict=True))
    assert linked["CD3_AGGATCGA"] == "CD3E" and linked["CD20_ACGCGGAA"] == "MS4A1"
    assert linked["CD45RA_GTGATAGT"] == "PTPRC" and "Blank" not in linked
    unpaired = set(names["protein"]) - set(linked)
    assert unpaired == {
        "Blank",
        "Control_Mouse_IgG2b_CATAAAGG",
        "Control_Rat_IgG1_TCACGGTA",
        "Mouse_IgG1_TGTGTATA",
    }

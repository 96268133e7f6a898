"""``gene_case=``: gene names that differ only in case, matched on request and named in the
error / warning when they are not."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from cellweave.errors import DuplicateNamesError, InvalidOptionError, NoSharedFeaturesError
from cellweave.mapping import map_cells, match_gene_case, prepare_features, project_genes
from cellweave.mapping import shared_genes as mapping_shared_genes
from cellweave.sim import simulate_spatial


def _pair():
    sp, ref = simulate_spatial(n_spots=60, n_genes=40, n_ref_cells=100, random_state=1)
    del sp.uns["sim"], ref.uns["sim"]
    ref.var_names = [f"Gene{i:02d}" for i in range(ref.n_vars)]
    sp.var_names = [f"Gene{i:02d}" for i in range(sp.n_vars)]
    return sp, ref


def _upper(adata, n_keep: int = 0):
    """``adata`` with its gene names upper-cased except the first ``n_keep``."""
    out = adata.copy()
    out.var_names = [n if i < n_keep else n.upper() for i, n in enumerate(adata.var_names)]
    return out


def test_exact_refusal_names_the_option():
    sp, ref = _pair()
    with pytest.raises(NoSharedFeaturesError, match="gene_case='insensitive'") as err:
        map_cells(ref, _upper(sp))
    assert "0 gene name(s) as written but 40 up to case" in str(err.value)
    assert "\n" not in str(err.value)


def test_exact_warns_when_case_would_find_many_more():
    sp, ref = _pair()
    with pytest.warns(UserWarning, match=r"share 3 gene name\(s\) as written but 40 up to case"):
        map_cells(ref, _upper(sp, n_keep=3))


def test_no_warning_when_names_agree():
    sp, ref = _pair()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        map_cells(ref, sp)


@pytest.mark.parametrize("gene_case", ["insensitive", "upper", "lower"])
def test_case_modes_map_as_if_names_agreed(gene_case):
    sp, ref = _pair()
    expected = map_cells(ref, sp.copy(), cell_type_key="cell_type")
    sp_upper = _upper(sp)
    names_before = list(ref.var_names), list(sp_upper.var_names)
    mapping = map_cells(ref, sp_upper, cell_type_key="cell_type", gene_case=gene_case)
    np.testing.assert_allclose(mapping.plan.toarray(), expected.plan.toarray(), rtol=1e-5)
    assert (list(ref.var_names), list(sp_upper.var_names)) == names_before  # inputs untouched
    assert "cell_type_fractions" in sp_upper.obsm and "mapping" in sp_upper.uns
    assert sp_upper.uns["mapping"]["params"]["gene_case"] == gene_case
    spelled = {"insensitive": str.upper, "upper": str.upper, "lower": str.lower}[gene_case]
    assert list(mapping.genes) == [spelled(g) for g in sp.var_names]
    # the projection knows which reference genes were compared, whatever their case
    projected = project_genes(mapping, ref, adata_sp=sp_upper)
    assert projected.var["measured"].all()


def test_shared_genes_and_features_take_the_spatial_spelling():
    sp, ref = _pair()
    sp_upper = _upper(sp)
    genes = mapping_shared_genes(ref, sp_upper, gene_case="insensitive")
    assert list(genes) == list(sp_upper.var_names)
    ours = prepare_features(ref, sp_upper, gene_case="insensitive")
    theirs = prepare_features(ref, sp)
    np.testing.assert_allclose(ours.sc, theirs.sc, atol=1e-5)
    assert list(ours.genes) == list(sp_upper.var_names)
    assert mapping_shared_genes(ref, sp).equals(mapping_shared_genes(ref, sp, gene_case="exact"))


def test_ambiguous_names_refused_in_one_line():
    sp, ref = _pair()
    names = list(ref.var_names)
    names[5] = "GENE04"  # "Gene04" and "GENE04" in the reference
    ref.var_names = names
    for gene_case in ("insensitive", "upper", "lower"):
        with pytest.raises(DuplicateNamesError, match=r"adata_sc has genes that differ only") as e:
            map_cells(ref, _upper(sp), gene_case=gene_case)
        assert "['Gene04', 'GENE04']" in str(e.value) and "\n" not in str(e.value)
    map_cells(ref, sp)  # as written they are two genes: fine


def test_insensitive_ignores_clashes_outside_the_shared_genes():
    sp, ref = _pair()
    extra = ref.copy()
    extra.var_names = [*ref.var_names[:-2], "Xist", "XIST"]  # neither in the panel
    sc_view, _ = match_gene_case(extra, _upper(sp).copy()[:, :-2], "insensitive")
    assert list(sc_view.var_names[-2:]) == ["Xist", "XIST"]
    assert sc_view.X is extra.X  # the matrix is shared, not copied


def test_unknown_gene_case_refused():
    sp, ref = _pair()
    with pytest.raises(InvalidOptionError, match="exact, upper, lower, insensitive"):
        map_cells(ref, sp, gene_case="title")


def test_cli_gene_case(tmp_path, capsys):
    from cellweave import io
    from cellweave.cli import main

    sp, ref = _pair()
    io.write(ref, tmp_path / "sc.h5ad")
    io.write(_upper(sp), tmp_path / "sp.h5ad")
    args = ["map", str(tmp_path / "sc.h5ad"), str(tmp_path / "sp.h5ad"), "-o"]
    assert main([*args, str(tmp_path / "a.h5ad")]) == 2
    assert "--gene-case insensitive" in capsys.readouterr().err
    code = main([*args, str(tmp_path / "b.h5ad"), "--gene-case", "insensitive", "--genes", "all"])
    assert code == 0
    written = io.read(tmp_path / "b.h5ad")
    predicted = written.obsm["predicted_genes"]
    assert list(pd.Index(predicted.columns)) == list(ref.var_names)
    assert written.uns["mapping"]["params"]["gene_case"] == "insensitive"

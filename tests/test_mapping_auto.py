"""``method="auto"``: the gene-prediction default without a cell-type key, the declared
FRACTIONS_METHOD with one (API and CLI), recorded in the params."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from cellweave.cli import main
from cellweave.mapping import DEFAULT_METHOD, FRACTIONS_METHOD, map_cells, methods
from cellweave.sim import simulate_spatial


@pytest.fixture(scope="module")
def pair():
    sp, ref = simulate_spatial(n_spots=80, n_genes=40, n_ref_cells=150, random_state=4)
    return sp, ref


def test_the_declared_defaults():
    assert DEFAULT_METHOD == "ot"
    assert FRACTIONS_METHOD == "attention"
    assert methods.resolve_method("auto") == DEFAULT_METHOD
    assert methods.resolve_method("auto", cell_type_key="ct") == FRACTIONS_METHOD
    assert methods.resolve_method("softmax", cell_type_key="ct") == "softmax"
    # options only the gene default declares pick it; shared feature options do not
    assert methods.resolve_method("auto", cell_type_key="ct", params={"epsilon": 0.2}) == "ot"
    shared = methods.resolve_method("auto", cell_type_key="ct", params={"n_pcs": 10})
    assert shared == FRACTIONS_METHOD


def test_auto_with_a_type_key_is_the_fractions_method(pair):
    sp, ref = pair
    auto_sp, direct_sp = sp.copy(), sp.copy()
    auto = map_cells(ref, auto_sp, cell_type_key="cell_type", max_epochs=30)
    direct = map_cells(
        ref, direct_sp, method=FRACTIONS_METHOD, cell_type_key="cell_type", max_epochs=30
    )
    assert auto.method == FRACTIONS_METHOD
    np.testing.assert_allclose(auto.plan.toarray(), direct.plan.toarray())
    np.testing.assert_allclose(
        auto_sp.obsm["cell_type_fractions"], direct_sp.obsm["cell_type_fractions"]
    )
    params = auto_sp.uns["mapping"]["params"]
    assert params["method"] == FRACTIONS_METHOD
    assert params["auto"] == {"chose": FRACTIONS_METHOD, "for": "cell-type fractions"}
    assert "auto" not in direct_sp.uns["mapping"]["params"]


def test_auto_without_a_type_key_is_the_gene_default(pair):
    sp, ref = pair
    auto_sp, direct_sp = sp.copy(), sp.copy()
    auto = map_cells(ref, auto_sp)
    direct = map_cells(ref, direct_sp, method=DEFAULT_METHOD)
    assert auto.method == DEFAULT_METHOD == "ot"
    np.testing.assert_allclose(auto.plan.toarray(), direct.plan.toarray())
    assert auto_sp.uns["mapping"]["params"]["auto"] == {"chose": "ot", "for": "genes"}


def test_cli_with_a_type_key_uses_the_fractions_method(pair, tmp_path):
    sp, ref = pair
    sc_path, sp_path, out = tmp_path / "sc.h5ad", tmp_path / "sp.h5ad", tmp_path / "o.h5ad"
    ref.write_h5ad(sc_path)
    sp.write_h5ad(sp_path)
    args = ["map", str(sc_path), str(sp_path), "-o", str(out), "--genes", "none"]
    assert main([*args, "--cell-type-key", "cell_type", "--param", "max_epochs=20"]) == 0
    written = ad.read_h5ad(out)
    assert written.uns["mapping"]["params"]["method"] == FRACTIONS_METHOD
    np.testing.assert_allclose(written.obsm["cell_type_fractions"].sum(axis=1), 1.0)
    # an option of another solver is checked against that one, before any work
    assert main([*args, "--overwrite", "--param", "max_epochs=20"]) == 2

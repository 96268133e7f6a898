"""mosaic.unintegrated_embedding: the PCA / LSI reference of scib's PCR comparison."""

from __future__ import annotations

import numpy as np
import pytest

import cellweave as cw
from cellweave.errors import InputError
from cellweave.mosaic import unintegrated_embedding
from cellweave.mosaic.unintegrated import lsi


@pytest.fixture(scope="module")
def mosaic():
    return cw.sim.simulate_mosaic(
        n_cells=240, n_genes=60, n_peaks=150, n_cell_types=3, latent_dim=3, random_state=0
    )


def _present(mdata, mod):
    return mdata.obs_names.isin(mdata[mod].obs_names)


def test_one_block_per_modality_zero_where_not_measured(mosaic):
    emb = unintegrated_embedding(mosaic, n_comps=8)
    mods = list(mosaic.mod)
    assert emb.shape == (mosaic.n_obs, 8 * len(mods)) and emb.dtype == np.float32
    for i, mod in enumerate(mods):
        block, seen = emb[:, 8 * i : 8 * (i + 1)], _present(mosaic, mod)
        assert not seen.all()  # the simulator's mosaic: every modality misses a batch
        assert np.all(block[~seen] == 0)
        # unit total variance on the cells that measured it (one weight per modality)
        assert block[seen].var(axis=0).sum() == pytest.approx(1.0, rel=1e-4)


def test_rna_block_is_the_pca_of_log_normalised_counts(mosaic):
    emb = unintegrated_embedding(mosaic, n_comps=8)
    rna = mosaic["rna"][mosaic.obs_names[_present(mosaic, "rna")]]
    pcs = cw.pp.pca(cw.pp.log_normalize(rna.X), n_comps=8)
    expected = pcs / np.sqrt(pcs.var(axis=0).sum())
    col = list(mosaic.mod).index("rna") * 8
    np.testing.assert_allclose(emb[_present(mosaic, "rna"), col : col + 8], expected, atol=1e-5)


def test_atac_block_is_its_lsi_and_separates_types(mosaic):
    atac = mosaic["atac"][mosaic.obs_names[_present(mosaic, "atac")]]
    emb = lsi(atac.X, 5)
    assert emb.shape == (atac.n_obs, 5)
    np.testing.assert_allclose(emb.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(emb.std(0), 1, atol=1e-6)
    types = mosaic.obs.loc[atac.obs_names, "cell_type"].astype(str).to_numpy()
    between = np.var([emb[types == t].mean(0) for t in np.unique(types)], axis=0).sum()
    assert between > 0.5  # cell types differ in peaks: the LSI carries them


def test_anndata_needs_its_modality_name(mosaic):
    rna = mosaic["rna"].copy()
    emb = unintegrated_embedding(rna, modality="rna", n_comps=6)
    assert emb.shape == (rna.n_obs, 6) and np.isfinite(emb).all()
    with pytest.raises(InputError, match="modality="):
        unintegrated_embedding(rna)

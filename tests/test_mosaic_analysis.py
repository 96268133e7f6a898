"""The generative operations of a mosaic model live once, in ``mosaic.analysis``."""

from __future__ import annotations

import pytest

from cellweave.errors import InputError
from cellweave.mosaic import MosaicModel, analysis
from cellweave.sim import simulate_mosaic


@pytest.fixture(scope="module")
def untrained():
    mdata = simulate_mosaic(
        n_cells=120,
        batches={"cite": ("rna", "protein"), "multiome": ("rna", "atac")},
        n_genes=20,
        n_peaks=40,
        n_proteins=5,
        n_cell_types=2,
        latent_dim=2,
        random_state=0,
    )
    return MosaicModel(mdata, batch_key="batch", n_latent=2, encoder_hidden=(8,))


def test_model_methods_are_the_analysis_functions():
    assert MosaicModel.impute_modality is analysis.impute
    assert MosaicModel.differential is analysis.differential
    assert "Parameters" in MosaicModel.impute_modality.__doc__
    assert "Parameters" in MosaicModel.differential.__doc__


def test_an_untrained_model_is_refused_before_other_checks(untrained):
    # both calls also hold an invalid option: the untrained model is named first, as before
    with pytest.raises(InputError, match="not trained: call model"):
        untrained.impute_modality("rna", cells="bogus")
    with pytest.raises(InputError, match="not trained: call model"):
        untrained.differential("cell_type", "type_0", mode="bogus")

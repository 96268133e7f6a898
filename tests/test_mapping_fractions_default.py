"""The fractions default of ``method="auto"`` by input: :data:`FRACTIONS_METHOD` on raw
counts, :data:`FRACTIONS_FALLBACK` on other values; checked with the attention mapper as the
fractions method (it refuses values that are not counts), as one constant would make it."""

from __future__ import annotations

import numpy as np
import pytest

from cellweave.mapping import FRACTIONS_FALLBACK, FRACTIONS_METHOD, map_cells, methods
from cellweave.sim import simulate_spatial


@pytest.fixture(autouse=True)
def attention_for_fractions(monkeypatch):
    monkeypatch.setattr(methods, "FRACTIONS_METHOD", "attention")


@pytest.fixture(scope="module")
def pair():
    sp, ref = simulate_spatial(n_spots=60, n_genes=40, n_ref_cells=100, random_state=2)
    return sp, ref


def test_counts_pick_attention_and_other_values_the_fallback():
    assert (FRACTIONS_METHOD, FRACTIONS_FALLBACK) == ("attention", "gradient")  # declared
    resolve = methods.resolve_method
    assert resolve("auto", cell_type_key="ct") == "attention"
    assert resolve("auto", cell_type_key="ct", counts=False) == "gradient"
    # an option only the other one declares picks it; an option of neither picks `ot`
    assert resolve("auto", cell_type_key="ct", params={"lambda_spot": 2.0}) == "gradient"
    assert resolve("auto", cell_type_key="ct", params={"top_k": 5}, counts=False) == "attention"
    assert resolve("auto", cell_type_key="ct", params={"epsilon": 0.2}) == "ot"
    assert resolve("auto", counts=False) == "ot"


def test_inputs_are_counts_reads_both_inputs_and_their_layers(pair):
    sp, ref = pair
    assert methods.inputs_are_counts(ref, sp)
    logged = sp.copy()
    logged.X = np.log1p(logged.X)
    assert not methods.inputs_are_counts(ref, logged)
    assert not methods.inputs_are_counts(logged, ref)
    logged.layers["counts"] = sp.X.copy()
    assert methods.inputs_are_counts(ref, logged, layer_sp="counts")


def test_auto_maps_counts_with_attention_and_intensities_with_gradient(pair):
    sp, ref = pair
    counts_sp = sp.copy()
    mapping = map_cells(ref, counts_sp, cell_type_key="cell_type", max_epochs=3, device="cpu")
    assert mapping.method == "attention"
    chose = counts_sp.uns["mapping"]["params"]["auto"]
    assert chose == {"chose": "attention", "for": "cell-type fractions"}
    scaled = sp.copy()
    scaled.X = np.asarray(scaled.X.todense() if hasattr(scaled.X, "todense") else scaled.X)
    scaled.X = scaled.X / scaled.X.sum(axis=1, keepdims=True)  # not counts: attention refuses
    mapping = map_cells(ref, scaled, cell_type_key="cell_type", max_epochs=3)
    assert mapping.method == "gradient"
    assert scaled.uns["mapping"]["params"]["auto"]["for"] == "cell-type fractions"
    np.testing.assert_allclose(scaled.obsm["cell_type_fractions"].sum(axis=1), 1.0)

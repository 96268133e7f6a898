"""The section's type abundance (``mapping/attention/shift.py``): one offset per type,
fitted to the spots' counts, corrects the pseudo-spots' uniform type prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellweave.mapping.attention import AttentionMapper
from cellweave.mapping.attention.shift import abundance_offset, shift_attention
from cellweave.metrics import fraction_scores
from cellweave.nn import poisson_log_prob
from cellweave.sim import simulate_spatial

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _poisson(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    return poisson_log_prob(x, mu).mean(dim=1)


def test_abundance_offset_recovers_a_known_shift_of_the_type_weights():
    rng = np.random.default_rng(0)
    n_spots, n_types, n_genes = 800, 4, 50
    means = rng.gamma(0.5, 2.0, size=(n_types, n_genes)) * 5  # distinct type profiles
    pi0 = rng.dirichlet(np.ones(n_types), size=n_spots)  # what the encoder says
    truth_offset = np.array([1.0, -1.0, 0.5, -0.5])
    pi = pi0 * np.exp(truth_offset)
    pi /= pi.sum(1, keepdims=True)
    y = pi @ means
    counts = rng.poisson(2000 * y / y.sum(1, keepdims=True)).astype(np.float32)
    offset = abundance_offset(pi0, torch.tensor(means, dtype=torch.float32), counts, _poisson)
    np.testing.assert_allclose(offset, truth_offset - truth_offset.mean(), atol=0.1)
    # no shift in the data: offsets near 0
    y0 = pi0 @ means
    counts0 = rng.poisson(2000 * y0 / y0.sum(1, keepdims=True)).astype(np.float32)
    flat = abundance_offset(pi0, torch.tensor(means, dtype=torch.float32), counts0, _poisson)
    assert np.abs(flat).max() < 0.1


def test_shift_attention_moves_type_weights_and_keeps_attention_within_types():
    a = np.array([[0.1, 0.3, 0.6], [0.5, 0.25, 0.25]])
    types = np.array([[0, 0, 1], [0, 0, 1]])
    pi = np.array([[0.4, 0.6], [0.75, 0.25]])
    a2, pi2 = shift_attention(a, pi, types, np.log([1.0, 3.0]))
    np.testing.assert_allclose(pi2, [[0.4 / 2.2, 1.8 / 2.2], [0.75 / 1.5, 0.75 / 1.5]])
    np.testing.assert_allclose(a2.sum(1), 1.0)
    np.testing.assert_allclose(a2[:, 0] / a2[:, 1], a[:, 0] / a[:, 1])  # within type 0
    np.testing.assert_allclose(a2[:, 2], pi2[:, 1])


@pytest.fixture(scope="module")
def skewed():
    """Simulated spots, kept where type_0 is abundant: a section whose abundance is far from
    the pseudo-spots' uniform prior."""
    sp, sc = simulate_spatial(n_spots=400, n_genes=60, n_ref_cells=300, random_state=0)
    truth = sp.obsm["true_fractions"]
    keep = np.argsort(-truth.iloc[:, 0].to_numpy())[:150]
    return sp[np.sort(keep)].copy(), sc


@pytest.mark.slow
def test_abundance_lowers_the_error_of_pseudo_spot_fractions(skewed):
    sp, sc = skewed
    truth = sp.obsm["true_fractions"]
    scores = {}
    for abundance in (False, True):
        model = AttentionMapper(
            sc, sp, cell_type_key="cell_type", pseudo_spots=600, abundance=abundance
        )
        mapping = model.train(max_epochs=20, device="cpu").map()
        fractions = mapping.cell_type_fractions(sc.obs["cell_type"])[truth.columns]
        scores[abundance] = fraction_scores(truth, fractions)
        if abundance:  # the abundant type's mean fraction moves toward the truth
            gap = abs(fractions.iloc[:, 0].mean() - truth.iloc[:, 0].mean())
    assert scores[True]["rmse"] < scores[False]["rmse"] - 0.005
    assert gap < 0.05


def test_abundance_by_default_only_with_pseudo_spots():
    sp, sc = simulate_spatial(n_spots=60, n_genes=60, n_ref_cells=120, random_state=1)
    deep = AttentionMapper(sc, sp, cell_type_key="cell_type")
    assert deep.options["abundance"] is None and not deep._adapts_abundance()
    assert AttentionMapper(sc, sp, cell_type_key="cell_type", pseudo_spots=50)._adapts_abundance()
    assert not AttentionMapper(
        sc, sp, cell_type_key="cell_type", pseudo_spots=50, abundance=False
    )._adapts_abundance()
    assert not AttentionMapper(sc, sp, abundance=True)._adapts_abundance()  # one type

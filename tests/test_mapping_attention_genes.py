"""The attention mapper on values that are not counts: the Gaussian likelihood on
spot-normalized values (an option) and the maximum-entropy attention used by default for
such values mapped without cell types."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cellweave.mapping.attention import AttentionMapper
from cellweave.mapping.attention.module import AttentionModule
from cellweave.mapping.attention.options import NO_TYPES_ENTROPY
from cellweave.sim import simulate_spatial

FAST = dict(max_epochs=15, device="cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return simulate_spatial(n_spots=150, n_genes=40, n_ref_cells=200, random_state=1)


def _intensities(sp):
    """The section as a non-count platform: values scaled by an irrational factor."""
    out = sp.copy()
    X = out.X.toarray() if hasattr(out.X, "toarray") else out.X
    out.X = np.asarray(X, dtype=np.float64) * (math.pi / 10)
    return out


def test_gaussian_likelihood_on_intensities(data):
    sp, sc = data
    assert AttentionMapper(sc, sp).options["likelihood"] == "nb"  # the default
    model = AttentionMapper(sc, _intensities(sp), require_counts=False, likelihood="gaussian")
    assert model.module.likelihood == "gaussian"
    model.train(max_epochs=2, device="cpu")
    assert np.isfinite(model.map().plan.data).all()


def test_entropy_default_for_intensities_without_types(data):
    sp, sc = data
    section = _intensities(sp)
    assert AttentionMapper(sc, section, require_counts=False).options["entropy"] == (
        NO_TYPES_ENTROPY
    )
    typed = AttentionMapper(sc, section, require_counts=False, cell_type_key="cell_type")
    assert typed.options["entropy"] == 0.0
    assert AttentionMapper(sc, sp).options["entropy"] == 0.0  # counts: the likelihood decides
    assert AttentionMapper(sc, sp, entropy=0.25).options["entropy"] == 0.25
    assert AttentionMapper(sc, sp, entropy=0.25).module.entropy == 0.25


def test_gaussian_compares_spot_normalized_values():
    module = AttentionModule({"panel": 3}, 3, 1, likelihood="gaussian")
    x = torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    mu = torch.tensor([[2.0, 2.0, 2.0], [20.0, 20.0, 20.0]])
    value = module.log_likelihood(x, mu)
    # the same profile at ten times the depth scores the same
    torch.testing.assert_close(value[0], value[1])
    scaled = (x[0] - mu[0]) * 3 / 6  # residuals on the scale of a mean of 1 per gene
    precision = torch.full((3,), 10.0)
    expected = 0.5 * (torch.log(precision) - precision * scaled**2 - math.log(2 * math.pi))
    torch.testing.assert_close(value[0], expected.mean())
    assert module.log_likelihood(mu, mu)[0] > value[0]


def _effective_cells(mapping) -> float:
    plan = mapping.plan.toarray()
    w = plan / plan.sum(0, keepdims=True)
    h = -(np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)).sum(0)
    return float(np.median(np.exp(h)))


def test_entropy_spreads_the_attention_over_candidates(data):
    sp, sc = data
    section = _intensities(sp)
    sharp = AttentionMapper(sc, section, require_counts=False, entropy=0.0).train(**FAST)
    spread = AttentionMapper(sc, section, require_counts=False).train(**FAST)
    top_k = spread.options["top_k"]
    sharp, spread = sharp.map(), spread.map()
    assert _effective_cells(spread) > 1.2 * _effective_cells(sharp)
    assert _effective_cells(spread) <= top_k + 1e-6


def test_intensities_map_and_round_trip(tmp_path, data):
    sp, sc = data
    section = _intensities(sp)
    model = AttentionMapper(sc, section, require_counts=False).train(**FAST)
    loaded = AttentionMapper.load(model.save(tmp_path / "m"), sc)
    assert loaded.options["likelihood"] == "nb"
    assert loaded.options["entropy"] == NO_TYPES_ENTROPY
    np.testing.assert_allclose(
        loaded.map(section).plan.toarray(), model.map().plan.toarray(), atol=1e-6
    )

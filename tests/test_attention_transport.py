"""The attention mapper's transport options: the entropic OT plan on the candidates
(``transport_target``), mixed into the attention at mapping (``transport``) or used as the
reference of the entropy term in training (``entropy_reference="transport"``)."""

from __future__ import annotations

import numpy as np
import pytest

from cellweave.errors import InvalidOptionError
from cellweave.mapping.attention import AttentionMapper
from cellweave.mapping.attention.options import NO_TYPES_TRANSPORT, TRANSPORT_EPSILON
from cellweave.mapping.attention.transport import mix_transport, plan_panel, transport_target
from cellweave.mapping.ot import entropic_plan
from cellweave.ot import topk_similar, unit_rows
from cellweave.sim import simulate_spatial

FAST = dict(max_epochs=15, device="cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return simulate_spatial(n_spots=120, n_genes=40, n_ref_cells=200, random_state=2)


def _weights(mapping) -> np.ndarray:
    """The plan's columns normalized to sum to 1, spots x cells."""
    plan = mapping.plan.toarray()
    return (plan / plan.sum(0, keepdims=True)).T


def test_target_is_the_ot_method_plan_on_the_same_candidates():
    rng = np.random.default_rng(0)
    spots, cells = rng.normal(size=(30, 6)), rng.normal(size=(50, 6))
    axes = np.eye(6, dtype=np.float32)
    cand, _ = topk_similar(unit_rows(spots), unit_rows(cells), k=10, device="cpu")
    target = transport_target(spots, cells, axes, cand, epsilon=0.15, unbalanced=0.1)
    assert not np.allclose(target, transport_target(spots, cells, axes, cand), atol=1e-3)
    assert target.shape == (30, 10)
    np.testing.assert_allclose(target.sum(1), 1.0, rtol=1e-5)
    plan = entropic_plan(cells, spots, epsilon=0.15, unbalanced=0.1, n_candidates=10, tol=1e-6)
    dense = plan.toarray()
    expected = np.take_along_axis(dense.T, cand, axis=1)
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(target, expected, atol=1e-4)
    # the cell marginal matters: a cell that is every spot's best candidate is used less
    # than the per-spot softmax of the same cost would use it
    softmax = np.exp(-(1 - unit_rows(spots) @ unit_rows(cells).T) / 0.15)
    softmax = np.take_along_axis(softmax, cand, axis=1)
    softmax /= softmax.sum(1, keepdims=True)
    assert not np.allclose(target, softmax, atol=1e-3)


def test_mix_transport():
    a = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    t = np.array([[0.0, 1.0], [0.25, 0.75]], dtype=np.float32)
    assert mix_transport(a, t, 0.0) is a
    np.testing.assert_allclose(mix_transport(a, t, 1.0), t)
    np.testing.assert_allclose(mix_transport(a, t, 0.5), [[0.5, 0.5], [0.375, 0.625]])


def test_transport_defaults_without_and_with_cell_types(data):
    sp, sc = data
    untyped = AttentionMapper(sc, sp)
    assert untyped.options["transport"] == NO_TYPES_TRANSPORT > 0
    assert untyped.options["entropy_reference"] == "transport"
    assert untyped.options["transport_epsilon"] == TRANSPORT_EPSILON
    typed = AttentionMapper(sc, sp, cell_type_key="cell_type")
    assert typed.options["transport"] == 0.0  # fractions: the attention alone, unchanged
    assert typed.options["entropy_reference"] == "uniform"
    given = AttentionMapper(sc, sp, transport=0.0, entropy_reference="uniform")
    assert given.options["transport"] == 0.0 and given.options["entropy_reference"] == "uniform"


def test_transport_mixes_the_plan_into_the_map(data):
    sp, sc = data
    plain = AttentionMapper(sc, sp, transport=0.0).train(**FAST)
    assert plain.section.target is None  # not computed unless asked for
    full = AttentionMapper(sc, sp, transport=1.0).train(**FAST)
    half = AttentionMapper(sc, sp, transport=0.5).train(**FAST)
    target = full._target(full.section)
    used = np.flatnonzero(full.cell_used)
    w_full = _weights(full.map())[:, used]
    expected = np.zeros_like(w_full)
    np.put_along_axis(expected, full.section.cand, target, axis=1)
    np.testing.assert_allclose(w_full, expected, atol=1e-5)
    w_plain, w_half = _weights(plain.map())[:, used], _weights(half.map())[:, used]
    np.testing.assert_allclose(w_half, 0.5 * w_plain + 0.5 * expected, atol=1e-5)


def test_entropy_relative_to_transport_pulls_the_attention_to_the_plan(data):
    sp, sc = data
    opts = dict(entropy=3.0, transport=0.0)
    uniform = AttentionMapper(sc, sp, entropy_reference="uniform", **opts).train(**FAST)
    relative = AttentionMapper(sc, sp, entropy_reference="transport", **opts).train(**FAST)
    assert uniform.module.log_target is None
    assert relative.module.log_target is not None
    target = relative._target(relative.section)
    used = np.flatnonzero(relative.cell_used)
    expected = np.zeros((sp.n_obs, len(used)))
    np.put_along_axis(expected, relative.section.cand, target, axis=1)

    def distance(model):
        return np.abs(_weights(model.map())[:, used] - expected).sum(1).mean()

    assert distance(relative) < 0.85 * distance(uniform)


def test_transport_options_checked_and_saved(tmp_path, data):
    sp, sc = data
    with pytest.raises(InvalidOptionError, match="entropy_reference"):
        AttentionMapper(sc, sp, entropy_reference="ot")
    with pytest.raises(InvalidOptionError, match="transport"):
        AttentionMapper(sc, sp, transport=1.5)
    model = AttentionMapper(sc, sp, transport=0.5, entropy_reference="transport", entropy=1.0)
    model.train(max_epochs=2, device="cpu")
    loaded = AttentionMapper.load(model.save(tmp_path / "m"), sc)
    assert loaded.options["transport"] == 0.5
    assert loaded.options["entropy_reference"] == "transport"
    np.testing.assert_allclose(loaded.map(sp).plan.toarray(), model.map().plan.toarray(), atol=1e-5)


def test_plan_panel_mixes_the_neighbour_view():
    panel = np.ones((3, 2), dtype=np.float32)
    neighbours = np.zeros((3, 2), dtype=np.float32)
    mask = np.array(
        [[True, True, False, False], [True, False, False, False], [True, True] + [False] * 2]
    )
    inputs = {"panel": panel, "neighbours": neighbours}
    assert plan_panel(inputs, mask, 0.0) is panel
    assert plan_panel({"panel": panel}, mask, 0.5) is panel  # no neighbour view
    np.testing.assert_allclose(plan_panel(inputs, mask, 0.25), [[0.75] * 2, [1.0] * 2, [0.75] * 2])


def test_transport_neighbours_changes_the_plan_only_with_neighbours(data):
    sp, sc = data
    own = AttentionMapper(sc, sp, transport=1.0, transport_neighbours=0.0)
    pooled = AttentionMapper(sc, sp, transport=1.0, transport_neighbours=0.5)
    assert not np.allclose(own._target(own.section), pooled._target(pooled.section), atol=1e-3)
    alone = AttentionMapper(sc, sp, spatial_key=None, transport=1.0, transport_neighbours=0.5)
    plain = AttentionMapper(sc, sp, spatial_key=None, transport=1.0, transport_neighbours=0.0)
    np.testing.assert_allclose(alone._target(alone.section), plain._target(plain.section))
    with pytest.raises(InvalidOptionError, match="transport_neighbours"):
        AttentionMapper(sc, sp, transport_neighbours=-0.1)

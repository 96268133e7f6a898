"""Each type's fractions shrunk toward their mean by 1 - its leave-one-out recall in the
reference (``mapping/attention/reliability.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from cellweave.mapping.attention import AttentionMapper
from cellweave.mapping.attention.reliability import shrink_fractions, type_recall
from cellweave.metrics import fraction_scores
from cellweave.sim import simulate_spatial

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_type_recall_is_high_for_distinct_types_and_low_for_a_mixed_one():
    rng = np.random.default_rng(0)
    n_genes = 40
    profiles = np.full((3, n_genes), 0.2)
    for t in range(3):  # each type has its own 10 marker genes
        profiles[t, t * 10 : (t + 1) * 10] = 5.0
    profiles /= profiles.sum(1, keepdims=True)
    codes = np.repeat([0, 1, 2, 3], 30)
    # type 3: cells of the three others, labelled as a fourth type (no signature of its own)
    source = np.where(codes < 3, codes, rng.integers(0, 3, size=len(codes)))
    counts = np.stack([rng.multinomial(200, profiles[s]) for s in source]).astype(float)
    recall = type_recall(counts, codes, 5)
    assert (recall[:3] > 0.8).all() and recall[3] < 0.4
    assert recall[4] == 1.0  # a type without cells: nothing to shrink


def test_shrink_fractions_moves_unreliable_types_to_their_mean():
    rng = np.random.default_rng(1)
    pi = rng.dirichlet(np.ones(3), size=20)
    types = np.tile([0, 0, 1, 2], (20, 1))
    a = np.stack([pi[:, 0] * 0.3, pi[:, 0] * 0.7, pi[:, 1], pi[:, 2]], axis=1)
    same_a, same = shrink_fractions(a, pi, types, np.ones(3))
    np.testing.assert_allclose(same, pi)
    np.testing.assert_allclose(same_a, a)
    new_a, new = shrink_fractions(a, pi, types, np.array([1.0, 0.0, 0.5]))
    np.testing.assert_allclose(new.sum(1), 1.0)
    np.testing.assert_allclose(new_a.sum(1), 1.0)
    np.testing.assert_allclose(new_a[:, 0] / new_a[:, 1], 0.3 / 0.7)  # within type 0 kept
    np.testing.assert_allclose(new_a[:, 2], new[:, 1])
    # type 1 (recall 0) is its mean in every spot, up to the rows' rescaling
    raw = 0.5 * pi[:, 2] + 0.5 * pi[:, 2].mean()
    total = pi[:, 0] + pi[:, 1].mean() + raw
    np.testing.assert_allclose(new[:, 1], pi[:, 1].mean() / total)


@pytest.fixture(scope="module")
def data():
    return simulate_spatial(n_spots=200, n_genes=60, n_ref_cells=300, random_state=2)


def _fractions(sc, sp, labels, **options):
    model = AttentionMapper(sc, sp, cell_type_key="cell_type", **options)
    return model.train(max_epochs=20, device="cpu").map().cell_type_fractions(labels)


def test_recognised_types_keep_their_fractions(data):
    sp, sc = data
    labels = sc.obs["cell_type"]
    on = _fractions(sc, sp, labels)
    off = _fractions(sc, sp, labels, reliability=False)
    np.testing.assert_allclose(on.to_numpy(), off.to_numpy(), atol=0.02)


def test_a_decoy_type_without_signature_is_shrunk_and_the_error_drops(data):
    sp, sc = data
    truth = sp.obsm["true_fractions"]
    sc = sc.copy()
    rng = np.random.default_rng(0)
    labels = sc.obs["cell_type"].astype(str).to_numpy().copy()
    labels[rng.choice(sc.n_obs, size=40, replace=False)] = "decoy"  # cells of every type
    sc.obs["cell_type"] = labels
    on = _fractions(sc, sp, sc.obs["cell_type"])
    off = _fractions(sc, sp, sc.obs["cell_type"], reliability=False)
    full = truth.assign(decoy=0.0)
    assert on["decoy"].std() < 0.5 * off["decoy"].std()
    rmse_on = fraction_scores(full, on[full.columns])["rmse"]
    rmse_off = fraction_scores(full, off[full.columns])["rmse"]
    assert rmse_on < rmse_off

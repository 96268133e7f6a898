"""PCR comparison when the batch explains nothing of the unintegrated embedding."""

from __future__ import annotations

import numpy as np
import pytest

from cellweave.metrics.pcr import pcr_comparison, principal_component_regression
from cellweave.metrics.scib import scib_scores


def test_one_batch_scores_zero_not_a_division_by_zero():
    rng = np.random.default_rng(0)
    pre, post = rng.normal(size=(60, 4)), rng.normal(size=(60, 3))
    batches = ["a"] * 60
    assert principal_component_regression(pre, batches) < 1e-16  # nothing to explain
    assert pcr_comparison(pre, post, batches) == 0.0
    assert pcr_comparison(pre, pre, batches) == 0.0
    assert pcr_comparison(pre, post, batches, scale=False) == pytest.approx(0.0, abs=1e-12)


def test_batch_means_that_coincide_score_zero():
    # both batches centred on the origin: the batch explains none of the unintegrated
    # variance, whatever the integrated embedding does
    pre = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    batches = ["a", "a", "b", "b"]
    assert principal_component_regression(pre, batches) == pytest.approx(0.0, abs=1e-15)
    post = np.array([[1.0], [1.0], [-1.0], [-1.0]])  # the batch explains all of it
    assert principal_component_regression(post, batches) == pytest.approx(1.0)
    assert pcr_comparison(pre, post, batches) == 0.0


def test_scib_scores_when_the_batch_explains_nothing_before():
    rng = np.random.default_rng(1)
    labels = np.tile(np.repeat(["x", "y"], 20), 2)
    batches = np.repeat(["a", "b"], 40)
    emb = rng.normal(size=(80, 5)) + np.repeat(np.eye(2, 5) * 4, 20, axis=0)[np.r_[:40, :40]]
    pre = emb.copy()
    for b in ("a", "b"):  # each batch centred: the batch explains nothing before
        pre[batches == b] -= pre[batches == b].mean(0)
    assert principal_component_regression(pre, batches) < 1e-16
    out = scib_scores(emb, labels, batches, pre_embedding=pre)
    assert out["pcr_comparison"] == 0.0
    assert np.isfinite(out["batch"]) and np.isfinite(out["total"])

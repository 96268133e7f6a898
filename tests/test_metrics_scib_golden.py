"""metrics.scib against scib-metrics 0.5.10's own Benchmarker, and PCR comparison.

tests/data/scib_benchmarker_golden.{npz,json}: two embeddings of a small simulated data set and
Benchmarker's scores of them (Leiden NMI/ARI, BRAS off, PCR comparison on against the
unintegrated embedding, classic silhouette batch added, min-max scaling off). Regenerate them
with ``PYTHONPATH=src python benchmarks/scib_golden.py`` in an environment with scib-metrics
(see tests/data/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cellweave.errors import InputError
from cellweave.metrics import scib
from cellweave.metrics.pcr import pcr_comparison, principal_component_regression

DATA = Path(__file__).parent / "data"
EMBEDDINGS = ("pre", "post")


@pytest.fixture(scope="module")
def golden():
    arrays = np.load(DATA / "scib_benchmarker_golden.npz")
    doc = json.loads((DATA / "scib_benchmarker_golden.json").read_text())
    return {k: arrays[k] for k in arrays.files}, doc["scores"]


@pytest.fixture(scope="module")
def ours(golden):
    data, _ = golden
    return {
        name: scib.scib_scores(
            data[name], data["labels"], data["batches"], pre_embedding=data["pre"]
        )
        for name in EMBEDDINGS
    }


@pytest.mark.parametrize("name", EMBEDDINGS)
def test_scib_scores_agree_with_benchmarker_to_3_decimals(golden, ours, name):
    _, expected = golden
    assert tuple(ours[name]) == scib.SCIB_PCR_KEYS
    for key in scib.SCIB_PCR_KEYS:
        assert ours[name][key] == pytest.approx(expected[name][key], abs=5e-4), key


def test_golden_data_exercises_every_metric(golden):
    """The golden values are not at the ends of the scales, so the comparison can fail."""
    _, expected = golden
    post = expected["post"]
    for key in ("pcr_comparison", "kbet", "ilisi", "asw_batch", "graph_connectivity"):
        assert 0.02 < post[key] < 0.98, key
    assert expected["pre"]["pcr_comparison"] == 0.0  # the unintegrated embedding itself


def test_batch_is_the_mean_of_five_with_pcr(ours):
    post = ours["post"]
    assert post["batch"] == pytest.approx(np.mean([post[k] for k in scib.PCR_BATCH_KEYS]))
    assert post["total"] == pytest.approx(0.6 * post["bio"] + 0.4 * post["batch"])
    assert len(scib.PCR_BATCH_KEYS) == 5


def test_exact_neighbours_are_an_option(golden, ours):
    data, _ = golden
    exact = scib.scib_scores(
        data["post"], data["labels"], data["batches"], pre_embedding=data["pre"], neighbors="exact"
    )
    assert exact["pcr_comparison"] == ours["post"]["pcr_comparison"]
    assert exact["asw_batch"] == ours["post"]["asw_batch"]
    with pytest.raises(InputError, match="pynndescent, exact"):
        scib.scib_scores(data["post"], data["labels"], data["batches"], neighbors="annoy")


def test_pcr_by_hand():
    # column 1: batch means 2 and 6 around 4 -> between 16 of total 20; column 2: no batch
    # signal (between 0 of 4); all PCs kept, so the share is 16 / 24 in any rotation
    x = np.array([[1.0, 1.0], [3.0, -1.0], [5.0, 1.0], [7.0, -1.0]])
    batches = ["a", "a", "b", "b"]
    assert principal_component_regression(x, batches) == pytest.approx(16 / 24)
    assert principal_component_regression(x[:, :1], batches) == pytest.approx(16 / 20)


def test_pcr_comparison_scale_and_clip():
    rng = np.random.default_rng(0)
    batches = np.repeat(["a", "b", "c"], 100)
    signal = rng.normal(size=(300, 5))
    offset = np.repeat(np.eye(3, 5) * 3.0, 100, axis=0)
    pre = signal + offset
    before = principal_component_regression(pre, batches)
    after = principal_component_regression(signal + 0.5 * offset, batches)
    assert 0 < after < before < 1
    assert pcr_comparison(pre, signal + 0.5 * offset, batches) == pytest.approx(
        (before - after) / before
    )
    assert pcr_comparison(pre, pre, batches) == 0.0
    assert pcr_comparison(signal + 0.5 * offset, pre, batches) == 0.0  # worse: clipped
    assert pcr_comparison(pre, signal + 0.5 * offset, batches, scale=False) == pytest.approx(
        after - before
    )
    with pytest.raises(InputError, match="same cells"):
        pcr_comparison(pre, pre[:10], batches)


@pytest.mark.slow
def test_benchmarker_itself_reproduces_the_golden_values(golden):
    """Live check where scib-metrics is installed (the bench extra): Benchmarker, run by
    cellweave.metrics.scib_reference as benchmarks/scib_golden.py runs it, gives the JSON."""
    pytest.importorskip("scib_metrics")
    from cellweave.metrics.scib_reference import benchmarker_scores

    data, expected = golden
    live = benchmarker_scores(
        {name: data[name] for name in EMBEDDINGS}, data["labels"], data["batches"], data["pre"]
    )
    for name in EMBEDDINGS:
        for key in scib.SCIB_PCR_KEYS:
            assert live[name][key] == pytest.approx(expected[name][key], abs=5e-4), (name, key)

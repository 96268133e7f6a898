"""The deconvolution benchmark's scorer (benchmarks/bench_deconv.py): known truth scores
perfectly, a shuffled prediction worse; columns and spots aligned by name."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _report import replace_section
from bench_deconv import score_fractions


@pytest.fixture
def truth():
    rng = np.random.default_rng(0)
    frac = rng.dirichlet(np.full(4, 0.7), size=60)
    return pd.DataFrame(frac, index=[f"s{i}" for i in range(60)], columns=["a", "b", "c", "d"])


def test_the_truth_scores_perfectly(truth):
    s = score_fractions(truth, truth.copy())
    assert s["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert s["pcc_mean"] == pytest.approx(1.0)
    assert s["js_mean"] == pytest.approx(0.0, abs=1e-12)


def test_a_shuffled_prediction_scores_worse(truth):
    rng = np.random.default_rng(1)
    shuffled = pd.DataFrame(
        truth.to_numpy()[rng.permutation(len(truth))], index=truth.index, columns=truth.columns
    )
    s = score_fractions(truth, shuffled)
    assert s["rmse"] > 0.1 and s["pcc_mean"] < 0.5 and s["js_mean"] > 0.05
    uniform = pd.DataFrame(0.25, index=truth.index, columns=truth.columns)
    assert score_fractions(truth, uniform)["rmse"] > 0.1


def test_prediction_aligned_by_names_and_missing_types_count_zero(truth):
    reordered = truth[["d", "b", "a", "c"]].iloc[::-1]
    assert score_fractions(truth, reordered)["rmse"] == pytest.approx(0.0, abs=1e-12)
    dropped = truth.drop(columns="d")  # a method that never predicts type d
    s = score_fractions(truth, dropped)
    assert s["rmse"] > 0 and np.isfinite(s["pcc_mean"])


def test_replace_section_keeps_the_rest():
    text = "# T\n\n## A\na\n\n## Deconvolution\nold\n### sub\nold2\n\n## Notes\nn\n"
    new = replace_section(text, "## Deconvolution", ["## Deconvolution x", "new"])
    assert new == "# T\n\n## A\na\n\n## Deconvolution x\nnew\n\n## Notes\nn\n"
    added = replace_section("# T\n\n## Notes\nn\n", "## Deconvolution", ["## Deconvolution"])
    assert added.index("## Deconvolution") < added.index("## Notes")

"""Volcano labels stay readable when many features sit at the Bayes-factor cap."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.text import Text

from cellweave.cli._common import use_agg_backend
from cellweave.plotting import volcano

use_agg_backend()


def _capped_table() -> pd.DataFrame:
    """Ten up- and four down-regulated features at one capped Bayes factor, with close fold
    changes (their labels would pile up at one height), and twenty unchanged ones."""
    rng = np.random.default_rng(0)
    lfc = np.concatenate(
        [1.0 + 0.02 * np.arange(10), -1.0 - 0.02 * np.arange(4), rng.normal(0, 0.1, 20)]
    )
    hit = np.arange(34) < 14
    proba = np.where(hit, 0.9999, 0.3)
    proba[:14] -= 1e-5 * np.arange(14)  # a strict order of probability among the hits
    return pd.DataFrame(
        {
            "lfc_mean": lfc,
            "proba_de": proba,
            "bayes_factor": np.where(hit, 9.2, rng.uniform(-1, 1, 34)),
            "is_de_fdr": hit,
        },
        index=[f"gene{i:02d}" for i in range(34)],
    )


def test_labels_at_the_cap_do_not_overlap():
    de = _capped_table()
    fig = volcano(de, n_labels=8)
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = list(ax.texts)
    assert [t.get_text() for t in texts] == [f"gene{i:02d}" for i in range(8)]  # most probable
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # the words, not the lines
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
    for text in texts:
        name = text.get_text()
        assert text.xy == (de.loc[name, "lfc_mean"], 9.2)  # each label points at its feature
        assert text.get_ha() == ("left" if de.loc[name, "lfc_mean"] > 0 else "right")
    top = max(texts, key=lambda t: t.get_position()[1])
    assert top.get_position()[1] == 9.2  # the first label stays at its point's height
    plt.close(fig)


def test_a_lone_label_stays_at_its_point():
    de = _capped_table()
    fig = volcano(de, n_labels=1)
    (text,) = fig.axes[0].texts
    assert text.get_text() == "gene00" and text.get_position()[1] == text.xy[1]
    assert text.arrow_patch is None  # not moved: no leader line
    plt.close(fig)

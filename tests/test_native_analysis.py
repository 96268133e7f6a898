"""Analysis a scvi-tools user expects: one-vs-rest differential tests with their plots, a
warning for classes with no labelled cell, a metrics file that says which score is the
model's, and align's measured overlap."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cellweave.cli._common import use_agg_backend
from cellweave.errors import CellweaveWarning, InputError
from cellweave.metrics import scib
from cellweave.mosaic import MosaicModel
from cellweave.plotting import de_dotplot, top_features, volcano
from cellweave.sim import simulate_mosaic
from cellweave.validate import warn_unlabelled_classes

use_agg_backend()
FAST = {"encoder_hidden": (32,), "n_embedding": 16, "decoder_hidden": (32,), "n_latent": 6}


@pytest.fixture(scope="module")
def sim():
    return simulate_mosaic(
        n_cells=400,
        batches={"a": ("rna",), "b": ("rna",)},
        n_genes=60,
        n_cell_types=3,
        latent_dim=3,
        return_full=True,
        random_state=1,
    )


@pytest.fixture(scope="module")
def model(sim):
    mdata, _ = sim
    model = MosaicModel(mdata, batch_key="batch", random_state=0, **FAST)
    model.train(max_epochs=25, batch_size=128, progress=False)
    return model


@pytest.fixture(scope="module")
def de(model):
    return model.differential("cell_type", modality="rna", n_samples=1000)


def test_one_vs_rest_is_a_tidy_table_per_group(sim, model, de):
    mdata, full = sim
    groups = sorted(mdata.obs["cell_type"].astype(str).unique())
    n_genes = mdata["rna"].n_vars
    assert list(de.columns[:3]) == ["comparison", "group1", "group2"]
    assert sorted(de["group1"].unique()) == groups and (de["group2"] == "Rest").all()
    assert de.groupby("group1").size().eq(n_genes).all()
    assert set(de["comparison"]) == {f"{g} vs Rest" for g in groups}
    # the same as the pairwise test of one group against all other cells
    one = model.differential("cell_type", groups[0], modality="rna", n_samples=1000)
    mine = de[de["group1"] == groups[0]].drop(columns=["comparison", "group1", "group2"])
    pd.testing.assert_frame_equal(mine, one)
    # fold changes follow the true one-vs-rest changes
    expr = full["rna"].layers["true_expression"]
    prop = expr / expr.sum(1, keepdims=True)
    types = full.obs["cell_type"].astype(str).to_numpy()
    for group in groups:
        true = np.log2(prop[types == group].mean(0)) - np.log2(prop[types != group].mean(0))
        true = pd.Series(true, index=full["rna"].var_names)
        mine = de[de["group1"] == group]["lfc_mean"]
        assert np.corrcoef(mine, true.loc[mine.index])[0, 1] > 0.6


def test_one_vs_rest_needs_two_groups(model):
    with pytest.raises(InputError, match="2 or more"):
        model.differential(np.repeat("x", model.data.n_cells), modality="rna")


def test_volcano_draws_every_feature_per_group(de):
    fig = volcano(de)
    groups = list(pd.unique(de["group1"]))
    assert [ax.get_title() for ax in fig.axes[: len(groups)]] == [f"{g} vs Rest" for g in groups]
    for ax, group in zip(fig.axes, groups, strict=False):
        table = de[de["group1"] == group]
        points = sum(len(c.get_offsets()) for c in ax.collections)
        assert points == len(table)
        hits = int(table["is_de_fdr"].sum())
        assert len(ax.collections[1].get_offsets()) == hits  # DE features in colour
        named = {t.get_text() for t in ax.texts}
        assert named <= set(table.index[table["is_de_fdr"]])
    plt.close(fig)


def test_dotplot_shows_each_groups_top_up_features(de):
    fig = de_dotplot(de, n_features=2)
    ax = fig.axes[0]
    top = top_features(de, 2)
    features = [t.get_text() for t in ax.get_xticklabels()]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(top)
    assert features == list(dict.fromkeys(f for fs in top.values() for f in fs))
    dots = ax.collections[0]
    lfc = dots.get_array().reshape(len(top), len(features))
    for r, group in enumerate(top):
        for f in top[group]:
            assert lfc[r, features.index(f)] > 0  # up-regulated in its own group
    low, high = dots.get_clim()
    assert low == -high  # a scale symmetric around no change
    plt.close(fig)


def test_classes_without_a_labelled_cell_are_named():
    labels = np.array(["A"] * 50 + ["B"] * 50 + ["Endo"] * 2 + ["Peri"] * 2, dtype=object)
    kept = labels.copy()
    kept[100:] = None
    with pytest.warns(CellweaveWarning, match=r"2 class\(es\).*'Endo', 'Peri'"):
        assert warn_unlabelled_classes(labels, kept, where="obs['cell_type']") == ["Endo", "Peri"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_unlabelled_classes(labels, labels, where="x") == []


def test_integrate_warns_about_unlabelled_classes(sim):
    from cellweave.mosaic import integrate

    mdata, _ = sim
    data = mdata.copy()
    labels = data.obs["cell_type"].astype(str).to_numpy().copy()
    labels[:2] = "Rare"  # two cells: 5% keeps none of them
    data.obs["cell_type"] = labels
    with pytest.warns(CellweaveWarning, match="Rare"):
        integrate(data, batch_key="batch", label_key="cell_type", labelled_fraction=0.05,
                  max_epochs=1, **FAST)  # fmt: skip


def test_metrics_file_says_which_score_is_the_models():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c", "d"], 100)
    x = rng.normal(size=(400, 4))
    report = scib.integration_report(x, labels, np.tile(["b1", "b2"], 200), predictions=labels,
                                     describe=True)  # fmt: skip
    transfer = report["label_transfer"]
    assert transfer["model_score"] == "model_balanced_accuracy"
    assert transfer[transfer["model_score"]] == 1.0
    assert transfer["chance"] == 0.25
    assert "baseline" in transfer["about"]["balanced_accuracy"]
    plain = scib.integration_report(x, labels, np.tile(["b1", "b2"], 200), describe=True)
    assert plain["label_transfer"]["model_score"] == "balanced_accuracy"


def test_align_reports_the_measured_overlap():
    from cellweave.align import overlap_fraction

    a = np.column_stack([g.ravel() for g in np.meshgrid(np.arange(10.0), np.arange(10.0))])
    b = a + np.array([5.0, 0.0])  # half of b lies beyond a
    assert overlap_fraction(a, b, 0.5) == pytest.approx(0.5)
    assert overlap_fraction(a, a, 1.0) == 1.0


def test_impute_auto_records_its_choice():
    import cellweave as cw
    from cellweave.sim import simulate_spatial

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spatial, _ = simulate_spatial(n_spots=120, n_genes=40, random_state=0)
    cw.tl.impute(spatial, method="auto", random_state=0, max_epochs=5)
    choice = spatial.uns["impute"]["params"]["chosen"]
    assert 0.0 <= choice["blend"] <= 1.0 and choice["spatial_loss"] is True
    assert "spatial_weight" in choice.get("mf", {}) or "rank" in choice.get("mixture", {})
    bare = spatial.copy()
    cw.tl.impute(bare, method="auto", spatial_key=None, random_state=0, max_epochs=5)
    assert bare.uns["impute"]["params"]["chosen"]["spatial_loss"] is False
    cw.tl.impute(bare, method="gene_mean", key_added="plain")
    assert "chosen" not in bare.uns["plain"]["params"]


def test_too_few_labelled_cells_for_the_classes_is_one_line():
    from cellweave.metrics.label_transfer import labelled_split

    labels = np.repeat(list("abcdefgh"), 25)  # 1% of 200 cells = 2 cells for 8 classes
    with pytest.raises(InputError, match="keeps 2 labelled cells, fewer than the 8 classes"):
        labelled_split(labels, train_size=0.01)
    assert labelled_split(np.repeat(list("abcdefgh"), 125), train_size=0.01).sum() == 10

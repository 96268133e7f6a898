"""Cell-type fractions of the attention mapper: the reference's type means and libraries,
the labelled pseudo-spots pooled from reference cells (option ``pseudo_spots``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellweave.mapping.attention import AttentionMapper
from cellweave.mapping.attention.reference import pseudo_spots, reference_cells
from cellweave.mapping.attention.views import SpotViews, log_panel
from cellweave.metrics import fraction_scores
from cellweave.sim import simulate_spatial

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_pseudo_spots_are_type_balanced_seeded_mixtures_at_spot_depth():
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1, 2], [180, 15, 5])  # a reference dominated by type 0
    counts = rng.poisson(20.0, size=(200, 30)).astype(float)  # ~600 counts per cell
    depths = np.full(50, 300.0)
    pooled, fractions = pseudo_spots(counts, codes, 3, depths, n=3000, max_cells=10, seed=1)
    assert pooled.shape == (3000, 30) and fractions.shape == (3000, 3)
    np.testing.assert_allclose(fractions.sum(1), 1.0)
    # 1-10 cells each: fractions are multiples of 1 / n_cells
    n_cells = np.array(
        [min(k for k in range(1, 11) if np.allclose(f * k, np.round(f * k))) for f in fractions]
    )
    assert n_cells.min() == 1 and n_cells.max() == 10
    # the reference's 90% of type 0 is not the pseudo-spots' prior
    np.testing.assert_allclose(fractions.mean(0), 1 / 3, atol=0.03)
    # thinned to the spots' depth (cells hold ~600 counts, more than the 300 asked)
    assert abs(pooled.sum(1).mean() - 300) < 10 and (pooled == np.round(pooled)).all()
    again, _ = pseudo_spots(counts, codes, 3, depths, n=3000, max_cells=10, seed=1)
    np.testing.assert_array_equal(pooled, again)


def test_type_profiles_pool_counts_and_keep_type_libraries():
    counts = np.array([[90.0, 10.0], [1.0, 1.0], [10.0, 30.0], [20.0, 20.0]])
    ref = reference_cells(counts, np.array([0, 0, 1, 1]), ["a", "b"], shrink=1.0)
    # type a pools 91 / 102 on gene 0 (the shallow cell weighs by its counts)
    np.testing.assert_allclose(ref.profiles[0] / ref.profiles[0].sum(), [91 / 102, 11 / 102])
    # each cell carries its type's mean library: a cell-number mixture
    np.testing.assert_allclose(ref.profiles.sum(1), [51.0, 51.0, 40.0, 40.0], rtol=1e-6)
    # without types: every cell its own composition at the mean library (as before)
    ref = reference_cells(counts, np.zeros(4, dtype=int), ["all"], shrink=1.0)
    np.testing.assert_allclose(ref.profiles, counts / counts.sum(1, keepdims=True) * 45.5)


def test_the_reference_pools_each_type_once_for_means_recall_and_depth():
    from cellweave.mapping.attention.reliability import type_recall

    rng = np.random.default_rng(2)
    codes = np.repeat([0, 1, 2], [30, 20, 10])
    counts = rng.poisson(np.repeat(rng.gamma(2.0, 2.0, size=(3, 25)), [30, 20, 10], axis=0))
    ref = reference_cells(counts.astype(np.float32), codes, ["a", "b", "c"], shrink=0.5)
    for t in range(3):
        np.testing.assert_array_equal(ref.pooled[t], counts[codes == t].sum(0))
    np.testing.assert_array_equal(ref.type_totals, [counts[codes == t].sum() for t in range(3)])
    np.testing.assert_array_equal(
        type_recall(counts, codes, 3, pooled=ref.pooled), type_recall(counts, codes, 3)
    )


@pytest.fixture(scope="module")
def data():
    return simulate_spatial(n_spots=200, n_genes=60, n_ref_cells=300, random_state=0)


def test_pseudo_spot_panels_go_through_the_platform_factor(data):
    sp, sc = data
    model = AttentionMapper(sc, sp, cell_type_key="cell_type", pseudo_spots=40)
    model.train(max_epochs=1, device="cpu")
    module, rows = model.module, torch.arange(40)
    counts = module.lab_counts.numpy()
    mask = np.zeros((40, 4), dtype=bool)
    mask[:, 0] = True
    expected = (
        SpotViews({"panel": log_panel(counts * np.exp(module.log_r.detach().numpy()))}, mask)
        .standardize(model.stats)
        .inputs["panel"]
    )
    np.testing.assert_allclose(module.labelled_panel(rows).detach().numpy(), expected, atol=1e-4)
    assert module.n_cells_labelled == 40 and module.lab_targets.shape == (40, 6)


def test_pseudo_spots_map_fractions_with_known_truth(data):
    sp, sc = data
    truth = sp.obsm["true_fractions"]
    model = AttentionMapper(sc, sp, cell_type_key="cell_type", pseudo_spots=600)
    fractions = (
        model.train(max_epochs=30, device="cpu").map().cell_type_fractions(sc.obs["cell_type"])
    )
    scores = fraction_scores(truth, fractions[truth.columns])
    assert scores["rmse"] < 0.12 and scores["pcc_mean"] > 0.8


def test_pseudo_spots_by_default_only_when_a_type_is_shallow(data):
    from cellweave.mapping.attention.options import PSEUDO_SPOTS

    sp, sc = data
    deep = AttentionMapper(sc, sp, cell_type_key="cell_type")
    assert deep.options["pseudo_spots"] == 0 and deep.options["lambda_cells"] == 0.0
    shallow = sc.copy()  # the reference thinned to ~1% of its counts: every type shallow
    rng = np.random.default_rng(0)
    X = sc.X.toarray() if hasattr(sc.X, "toarray") else np.asarray(sc.X)
    shallow.X = rng.binomial(X.astype(np.int64), 0.01).astype(np.float32)
    shallow = shallow[shallow.X.sum(1) > 0].copy()
    model = AttentionMapper(shallow, sp, cell_type_key="cell_type")
    assert model.options["pseudo_spots"] == PSEUDO_SPOTS and model.options["lambda_cells"] == 1.0
    # explicit values win, and the cells themselves can still be the labelled rows
    model = AttentionMapper(shallow, sp, cell_type_key="cell_type", pseudo_spots=0, lambda_cells=1)
    assert model.options["pseudo_spots"] == 0
    model.train(max_epochs=1, device="cpu")
    module = model.module
    assert module.lab_counts is None and module.n_cells_labelled == shallow.n_obs
    # the cells' panel is the reference's own: no second copy of it to move to a device
    module.move_data(torch.device("cpu"))
    copies = [
        name
        for name, value in vars(module).items()
        if name != "ref_panel"
        and isinstance(value, torch.Tensor)
        and value.shape == module.ref_panel.shape
        and torch.equal(value, module.ref_panel)
    ]
    assert copies == []
    rows = torch.arange(5)
    assert torch.equal(module.labelled_panel(rows), module.ref_panel[rows])
    # without types: no type loss, no pseudo-spots
    plain = AttentionMapper(shallow, sp)
    assert plain.options["pseudo_spots"] == 0 and plain.options["lambda_cells"] == 0.0


@pytest.mark.parametrize("pseudo", [0, 300])
def test_same_seed_same_fractions_on_two_threads(data, pseudo):
    """Repeated candidate rows are summed in a fixed order in the backward pass, so two
    runs with one random_state agree exactly however many threads torch uses."""
    from cellweave.mapping import map_cells

    sp, ref = data
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [
            map_cells(
                ref, sp.copy(), method="attention", cell_type_key="cell_type",
                max_epochs=3, pseudo_spots=pseudo, random_state=1,
            ).plan.toarray()
            for _ in range(2)
        ]  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(runs[0], runs[1])

"""Optimal-transport projection of batches in a latent space (cellweave.mosaic.transport)."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cellweave import tl
from cellweave.errors import EmptyDataError, InputError, MissingKeyError, NonFiniteError
from cellweave.mosaic import barycentric_projection


def _clusters(rng, n_per, centers, noise):
    labels = np.repeat(np.arange(len(centers)), n_per)
    return centers[labels] + noise * rng.normal(size=(labels.size, centers.shape[1])), labels


@pytest.mark.parametrize("n_candidates", [None, 30])
def test_a_translated_copy_lands_on_its_twins(n_candidates):
    # squared-Euclidean OT between a cloud and its translate matches every point with its twin
    rng = np.random.default_rng(0)
    target = rng.normal(size=(300, 5))
    offset = np.full(5, 0.3)
    source = target + offset
    moved = barycentric_projection(source, target, epsilon=0.005, n_candidates=n_candidates)
    before = np.linalg.norm(source - target, axis=1).mean()
    after = np.linalg.norm(moved - target, axis=1).mean()
    assert after < 0.35 * before


def test_source_cells_move_to_their_own_type():
    # source cells: blurred and shifted copies of three types; the projection must land each
    # on its own type's target cells (label agreement with the nearest target cell)
    rng = np.random.default_rng(1)
    centers = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    target, t_lab = _clusters(rng, 200, centers, 0.5)
    source, s_lab = _clusters(rng, 100, centers, 1.2)
    source = source + np.array([0.0, 0.0, 1.5])  # a batch effect along an unused axis

    def agreement(x):
        nearest = ((x[:, None, :] - target[None]) ** 2).sum(-1).argmin(1)
        return (t_lab[nearest] == s_lab).mean()

    moved = barycentric_projection(source, target)
    assert agreement(moved) > 0.9  # chance: 1/3
    # the batch offset is gone: the moved cells sit on the target's plane
    assert abs(moved[:, 2].mean()) < 0.2 < abs(source[:, 2].mean())
    # balanced: each type receives mass in proportion (no piling onto one type)
    nearest = ((moved[:, None] - target[None]) ** 2).sum(-1).argmin(1)
    counts = np.bincount(t_lab[nearest], minlength=3)
    assert counts.min() > 70


def test_transport_batches_writes_a_new_key_and_keeps_the_input():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(90, 4)).astype(np.float32)
    obs = pd.DataFrame(
        {"batch": np.repeat(["a", "b", "c"], 30)}, index=[f"c{i}" for i in range(90)]
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_cellweave"] = x.copy()
    out = tl.transport_batches(adata, "c", copy=True)
    assert "X_cellweave_ot" not in adata.obsm  # copy=True leaves the input alone
    np.testing.assert_array_equal(out.obsm["X_cellweave"], x)
    moved = out.obsm["X_cellweave_ot"]
    np.testing.assert_array_equal(moved[:60], x[:60])  # target cells keep their place
    assert not np.allclose(moved[60:], x[60:])
    params = out.uns["cellweave_transport"]["params"]
    assert params["source"] == ["c"] and params["target"] == ["a", "b"]
    assert tl.transport_batches(adata, ["c"], target="a", key_added="X_moved") is None
    np.testing.assert_array_equal(adata.obsm["X_moved"][30:60], x[30:60])  # "b" not a target


def test_transport_batches_bad_input():
    obs = pd.DataFrame({"batch": ["a"] * 5 + ["b"] * 5}, index=[f"c{i}" for i in range(10)])
    adata = ad.AnnData(obs=obs)
    with pytest.raises(MissingKeyError, match="X_cellweave"):
        tl.transport_batches(adata, "b")
    adata.obsm["X_cellweave"] = np.zeros((10, 2))
    with pytest.raises(MissingKeyError, match="donor"):
        tl.transport_batches(adata, "b", batch_key="donor")
    with pytest.raises(InputError, match="'z' is not in"):
        tl.transport_batches(adata, "z")
    with pytest.raises(EmptyDataError, match="no target"):
        tl.transport_batches(adata, ["a", "b"])
    with pytest.raises(InputError, match="both source and target"):
        tl.transport_batches(adata, "a", target=["a", "b"])
    adata.obsm["X_cellweave"][0, 0] = np.nan
    with pytest.raises(NonFiniteError):
        tl.transport_batches(adata, "b")
    with pytest.raises(InputError, match="epsilon"):
        barycentric_projection(np.ones((3, 2)), np.ones((3, 2)), epsilon=0)
    with pytest.raises(InputError, match="same"):
        barycentric_projection(np.ones((3, 2)), np.ones((3, 3)))

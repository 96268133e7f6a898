"""Tests of cellweave.graph against hand-counted rings and brute-force truth."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import shortest_path
from scipy.spatial.distance import cdist

from cellweave.errors import InputError, MissingKeyError, NonFiniteError
from cellweave.graph import (
    GridInfo,
    detect_grid,
    graph_rings,
    grid_rings,
    knn_graph,
    radius_graph,
    ring_weights,
    spatial_neighbors,
    visium_array_to_xy,
)

# ----------------------------------------------------------------------------- lattices


def square_lattice(nx: int, ny: int) -> np.ndarray:
    """Integer (i, j) indices of a full nx x ny square lattice."""
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    return np.column_stack([i.ravel(), j.ravel()])


def hex_xy(axial: np.ndarray) -> np.ndarray:
    """Axial hex indices (q, r) -> Cartesian points with unit neighbour distance."""
    q, r = axial[:, 0], axial[:, 1]
    return np.column_stack([q + r / 2, r * np.sqrt(3) / 2])


def hex_hops(axial: np.ndarray) -> np.ndarray:
    """True hop distance between all pairs of a *full* hex lattice in axial indices."""
    dq = axial[:, None, 0] - axial[None, :, 0]
    dr = axial[:, None, 1] - axial[None, :, 1]
    return (np.abs(dq) + np.abs(dr) + np.abs(dq + dr)) // 2


def lattice_hops(index: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Hop distances on the lattice graph whose edges are the index offsets ``steps``.

    Built from the integer indices only (no geometry), so it is independent truth for the
    distance-based ring construction, holes included.
    """
    diff = index[:, None, :] - index[None, :, :]
    adj = (diff[:, :, None, :] == steps[None, None, :, :]).all(axis=-1).any(axis=-1)
    return shortest_path(sp.csr_matrix(adj), unweighted=True)


SQUARE_STEPS = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])
HEX_STEPS = np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [1, -1], [-1, 1]])


def transform(points: np.ndarray, *, scale: float, angle: float, shift=(0.0, 0.0)):
    c, s = np.cos(angle), np.sin(angle)
    return scale * points @ np.array([[c, -s], [s, c]]).T + np.asarray(shift)


def jitter(points: np.ndarray, frac: float, scale: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return points + rng.normal(scale=frac * scale, size=points.shape)


def ring_counts(order: sp.csr_matrix, i: int, max_order: int) -> list[int]:
    row = order.getrow(i).toarray().ravel()
    return [int((row == k).sum()) for k in range(1, max_order + 1)]


def assert_rings_match(order: sp.csr_matrix, hops: np.ndarray, max_order: int) -> None:
    truth = np.where((hops >= 1) & (hops <= max_order), hops, 0)
    np.testing.assert_array_equal(order.toarray(), truth)


def hex_patch(radius: int) -> np.ndarray:
    """Axial indices of a hexagon-shaped hex patch (all cells within ``radius`` hops)."""
    q, r = np.meshgrid(np.arange(-radius, radius + 1), np.arange(-radius, radius + 1))
    axial = np.column_stack([q.ravel(), r.ravel()])
    return axial[np.abs(axial.sum(axis=1)) <= radius]


# ----------------------------------------------------------------------------- square grid


def test_square_grid_interior_edge_corner_counts():
    index = square_lattice(10, 10)
    order = grid_rings(index * 1.0, max_order=2)
    assert order.dtype == np.int8
    at = {tuple(p): k for k, p in enumerate(index)}
    assert ring_counts(order, at[5, 5], 2) == [4, 8]
    assert ring_counts(order, at[0, 0], 2) == [2, 3]  # (1,0),(0,1) | (2,0),(1,1),(0,2)
    assert ring_counts(order, at[0, 5], 2) == [3, 5]  # edge: (0,3),(0,7),(1,4),(1,6),(2,5)
    assert ring_counts(order, at[1, 1], 2) == [4, 6]  # (3,1),(1,3),(2,2),(2,0),(0,2),(0,0)
    # On a full square grid the hop distance is the Manhattan distance.
    manhattan = np.abs(index[:, None, :] - index[None, :, :]).sum(axis=-1)
    assert_rings_match(order, manhattan, 2)


def test_square_grid_third_order_ring():
    index = square_lattice(9, 9)
    order = grid_rings(index * 2.5, max_order=3)
    assert ring_counts(order, 40, 3) == [4, 8, 12]  # centre of 9x9


def test_square_grid_anndata_distances():
    index = square_lattice(8, 8)
    adata = ad.AnnData(np.zeros((64, 1)), obsm={"spatial": index * 100.0})
    spatial_neighbors(adata, max_order=2)
    order = adata.obsp["spatial_order"]
    dist = adata.obsp["spatial_distances"]
    conn = adata.obsp["spatial_connectivities"]
    truth = cdist(index * 100.0, index * 100.0)
    # distances are Euclidean and on exactly the ring pattern
    assert (dist != conn).nnz == dist.nnz  # values differ from 1.0 but same pattern
    np.testing.assert_array_equal(dist.indices, order.indices)
    np.testing.assert_array_equal(dist.indptr, order.indptr)
    rows, cols = order.nonzero()
    np.testing.assert_allclose(np.asarray(dist[rows, cols]).ravel(), truth[rows, cols])
    # order 1 at 100; order 2 at 200 (straight) or 100*sqrt(2) (diagonal)
    d1 = dist[order == 1]
    d2 = np.unique(np.round(np.asarray(dist[order == 2]).ravel(), 6))
    np.testing.assert_allclose(d1, 100.0)
    np.testing.assert_allclose(d2, [100 * np.sqrt(2), 200.0])
    assert set(np.unique(conn.data)) == {1.0}
    params = adata.uns["spatial_neighbors"]["params"]
    assert params["method"] == "grid"
    assert params["grid"] == "square"
    assert params["spacing"] == pytest.approx(100.0)
    assert params["max_order"] == 2


# ----------------------------------------------------------------------------- hex grid


@pytest.mark.parametrize(
    ("scale", "angle", "noise"),
    [(1.0, 0.0, 0.0), (137.3, 0.0, 0.0), (55.0, 0.4, 0.0), (0.01, 1.1, 0.03), (220.0, -2.0, 0.05)],
)
def test_hex_grid_detection_and_rings(scale, angle, noise):
    axial = hex_patch(6)  # 127 spots, centre has full rings up to order 6
    points = transform(hex_xy(axial), scale=scale, angle=angle, shift=(1e3 * scale, -7.0))
    points = jitter(points, noise, scale, seed=1)
    info = detect_grid(points)
    assert info.kind == "hex"
    assert info.spacing == pytest.approx(scale, rel=0.02)
    assert info.score > 0.8
    order = grid_rings(points, max_order=2)
    centre = int(np.flatnonzero((axial == 0).all(axis=1))[0])
    assert ring_counts(order, centre, 2) == [6, 12]
    assert_rings_match(order, hex_hops(axial), 2)


def test_hex_grid_is_symmetric_and_has_no_diagonal():
    points = transform(hex_xy(hex_patch(5)), scale=3.0, angle=0.3)
    order = grid_rings(points, max_order=3)
    assert (order != order.T).nnz == 0
    assert order.diagonal().max() == 0
    assert set(np.unique(order.data)) == {1, 2, 3}


def test_square_grid_rotated_and_jittered():
    index = square_lattice(12, 11)
    points = jitter(transform(index, scale=7.0, angle=0.7), 0.04, 7.0, seed=3)
    info = detect_grid(points)
    assert info.kind == "square"
    assert info.spacing == pytest.approx(7.0, rel=0.02)
    manhattan = np.abs(index[:, None, :] - index[None, :, :]).sum(axis=-1)
    assert_rings_match(grid_rings(points, max_order=2), manhattan, 2)


@pytest.mark.parametrize("kind", ["square", "hex"])
def test_detection_tolerates_ten_percent_jitter(kind):
    index = square_lattice(30, 30)
    points = hex_xy(index) if kind == "hex" else index * 1.0
    info = detect_grid(jitter(transform(points, scale=3.0, angle=1.3), 0.1, 3.0, seed=5))
    assert info.kind == kind
    assert info.spacing == pytest.approx(3.0, rel=0.05)


@pytest.mark.parametrize(("kind", "steps"), [("square", SQUARE_STEPS), ("hex", HEX_STEPS)])
def test_grid_with_holes_matches_lattice_bfs(kind, steps):
    rng = np.random.default_rng(4)
    index = square_lattice(14, 14) - 7
    index = index[rng.random(len(index)) > 0.15]  # 15 % of the spots missing
    index = index[(index[:, 0] - 3) ** 2 + (index[:, 1] + 1) ** 2 > 5]  # plus a round hole
    points = hex_xy(index) if kind == "hex" else index * 1.0
    points = jitter(transform(points, scale=40.0, angle=-0.2), 0.02, 40.0)
    assert detect_grid(points).kind == kind
    assert_rings_match(grid_rings(points, max_order=2), lattice_hops(index, steps), 2)


def test_forced_grid_kind_skips_detection():
    rng = np.random.default_rng(0)
    index = square_lattice(3, 3)  # too small and too regular to matter: force it
    order = grid_rings(index[rng.permutation(9)] * 2.0, max_order=1, grid="square")
    assert sorted(np.asarray((order == 1).sum(axis=1)).ravel()) == [2, 2, 2, 2, 3, 3, 3, 3, 4]


# ----------------------------------------------------------------------------- detection


def test_detect_grid_rejects_irregular_clouds():
    rng = np.random.default_rng(0)
    assert detect_grid(rng.uniform(0, 100, size=(2000, 2))).kind is None
    assert detect_grid(rng.normal(size=(300, 2))).kind is None
    # a square lattice in 3-D is not a 2-D spot array
    cube = np.column_stack([square_lattice(5, 5), np.zeros(25)])
    assert detect_grid(cube).kind is None
    # small random clouds: the order threshold grows as 2/sqrt(bonds), so no false lattices
    assert all(detect_grid(rng.uniform(size=(n, 2))).kind is None for n in range(10, 60))
    coincident = detect_grid(np.zeros((5, 2)))  # no positive distance: no spacing either
    assert coincident.kind is None and np.isnan(coincident.spacing)
    few = detect_grid(square_lattice(2, 3) * 1.0)  # too few points to call a lattice
    assert few.kind is None and few.spacing == pytest.approx(1.0)


def test_visium_array_indices_warn_and_convert():
    rows, cols = np.meshgrid(np.arange(12), np.arange(24), indexing="ij")
    keep = (rows + cols) % 2 == 0
    array_row, array_col = rows[keep], cols[keep]
    with pytest.warns(UserWarning, match="Visium"):
        info = detect_grid(np.column_stack([array_row, array_col]))
    assert info.kind == "square"
    assert info.spacing == pytest.approx(np.sqrt(2))
    xy = visium_array_to_xy(array_row, array_col, spacing=100.0)
    hexinfo = detect_grid(xy)
    assert isinstance(hexinfo, GridInfo)
    assert (hexinfo.kind, hexinfo.spacing, hexinfo.score) == (
        "hex",
        pytest.approx(100.0),
        pytest.approx(1.0),
    )
    order = grid_rings(xy, max_order=2)
    centre = int(np.flatnonzero((array_row == 6) & (array_col == 12))[0])
    assert ring_counts(order, centre, 2) == [6, 12]
    neighbours = order.getrow(centre).indices[order.getrow(centre).data == 1]
    offsets = {(array_row[j] - 6, array_col[j] - 12) for j in neighbours}
    assert offsets == {(0, 2), (0, -2), (1, 1), (1, -1), (-1, 1), (-1, -1)}
    with pytest.raises(InputError, match="Visium"):
        visium_array_to_xy([0, 0], [0, 1])


@pytest.mark.real_data
def test_paste_breast_slice_is_a_unit_square_grid(real_data):
    adata = ad.read_h5ad(real_data("paste_breast_slice1.h5ad"))
    info = detect_grid(adata.obsm["spatial"])
    assert info.kind == "square"
    assert info.spacing == pytest.approx(1.0, abs=0.05)
    spatial_neighbors(adata, max_order=2)
    order = adata.obsp["spatial_order"]
    degree = np.asarray((order == 1).sum(axis=1)).ravel()
    assert np.bincount(degree).argmax() == 4
    assert degree.max() <= 5  # a few jittered diagonals may sneak in, never a full hex ring
    assert adata.uns["spatial_neighbors"]["params"]["grid"] == "square"


@pytest.mark.real_data
def test_merfish_cells_are_not_a_grid_and_use_knn(real_data):
    adata = ad.read_h5ad(real_data("merfish_hypothalamus_spatial.h5ad"))
    assert detect_grid(adata.obsm["spatial"]).kind is None
    spatial_neighbors(adata, n_neighbors=8)
    params = adata.uns["spatial_neighbors"]["params"]
    assert params == {"method": "knn", "n_neighbors": 8, "spatial_key": "spatial", "max_order": 1}
    conn = adata.obsp["spatial_connectivities"]
    assert (conn != conn.T).nnz == 0
    assert np.asarray(conn.sum(axis=1)).min() >= 8
    with pytest.raises(InputError, match="no square or hexagonal lattice"):
        spatial_neighbors(adata, method="grid")


@pytest.mark.real_data
def test_bdtnp_3d_knn_and_radius(real_data):
    adata = ad.read_h5ad(real_data("bdtnp_drosophila_insitu.h5ad"))
    coords = np.asarray(adata.obsm["spatial"])
    assert coords.shape[1] == 3
    conn, dist = knn_graph(coords, n_neighbors=6)
    assert np.asarray(conn.sum(axis=1)).min() >= 6
    rows, cols = dist.nonzero()
    np.testing.assert_allclose(
        dist.data, np.linalg.norm(coords[rows] - coords[cols], axis=1), rtol=1e-12
    )
    spatial_neighbors(adata, method="radius", radius=12.0)
    assert adata.uns["spatial_neighbors"]["params"]["method"] == "radius"
    assert adata.obsp["spatial_distances"].data.max() <= 12.0


# ----------------------------------------------------------------------------- kNN / radius


@pytest.mark.parametrize("n_dims", [2, 3])
def test_knn_graph_contains_true_neighbours(n_dims):
    rng = np.random.default_rng(n_dims)
    coords = rng.uniform(size=(300, n_dims))
    conn, dist = knn_graph(coords, n_neighbors=5)
    assert (conn != conn.T).nnz == 0
    assert conn.diagonal().max() == 0
    assert np.asarray(conn.sum(axis=1)).min() >= 5
    full = cdist(coords, coords)
    np.fill_diagonal(full, np.inf)
    truth = np.argsort(full, axis=1)[:, :5]
    for i in range(len(coords)):
        assert set(truth[i]) <= set(conn.getrow(i).indices)
    # every edge is a kNN edge of one of its ends
    rows, cols = conn.nonzero()
    in_knn = (truth[rows] == cols[:, None]).any(axis=1) | (truth[cols] == rows[:, None]).any(axis=1)
    assert in_knn.all()
    np.testing.assert_allclose(np.asarray(dist[rows, cols]).ravel(), full[rows, cols])


def test_knn_graph_with_duplicate_points():
    coords = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [6.0, 5.0]])
    conn, dist = knn_graph(coords, n_neighbors=2)
    assert conn.diagonal().max() == 0
    assert np.asarray(conn.sum(axis=1)).min() >= 2
    assert dist[0, 1] == 0.0 and conn[0, 1] == 1.0  # explicit zero distance kept


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 40),
    n_dims=st.sampled_from([2, 3]),
    radius=st.floats(0.05, 1.5),
    seed=st.integers(0, 2**32 - 1),
)
def test_radius_graph_matches_brute_force(n, n_dims, radius, seed):
    coords = np.random.default_rng(seed).uniform(size=(n, n_dims))
    conn, dist = radius_graph(coords, radius=radius)
    full = cdist(coords, coords)
    truth = (full <= radius) & ~np.eye(n, dtype=bool)
    np.testing.assert_array_equal(conn.toarray() == 1.0, truth)
    np.testing.assert_allclose(dist.toarray(), np.where(truth, full, 0.0), atol=1e-12)


# ----------------------------------------------------------------------------- rings


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 30),
    p=st.floats(0.0, 0.3),
    max_order=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_graph_rings_equal_shortest_path_hops(n, p, max_order, seed):
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < p, k=1)
    adj = sp.csr_matrix(upper | upper.T)
    order = graph_rings(adj, max_order=max_order)
    assert adj.nnz == int(upper.sum()) * 2  # input left untouched
    hops = shortest_path(adj, unweighted=True)
    assert_rings_match(order, hops, max_order)


def test_spatial_neighbors_knn_order_two_are_two_hops():
    rng = np.random.default_rng(7)
    adata = ad.AnnData(np.zeros((200, 1)), obsm={"spatial": rng.uniform(size=(200, 2))})
    spatial_neighbors(adata, method="knn", n_neighbors=4, max_order=2)
    order = adata.obsp["spatial_order"]
    base, _ = knn_graph(adata.obsm["spatial"], n_neighbors=4)
    assert_rings_match(order, shortest_path(base, unweighted=True), 2)


def test_ring_weights_values_and_normalisation():
    order = grid_rings(square_lattice(6, 6) * 1.0, max_order=2)
    before = order.copy()
    raw = ring_weights(order, weights=(1.0, 0.25), normalize=None)
    np.testing.assert_array_equal(
        raw.toarray(), np.select([order.toarray() == 1, order.toarray() == 2], [1.0, 0.25])
    )
    row = ring_weights(order, weights=(1.0, 0.25))
    np.testing.assert_allclose(np.asarray(row.sum(axis=1)).ravel(), 1.0)
    interior = 2 * 6 + 2  # spot (2, 2): 4 at weight 1, 8 at weight 0.25 -> total 6
    assert row[interior, interior + 1] == pytest.approx(1 / 6)
    sym = ring_weights(order, weights=(1.0, 0.25), normalize="sym")
    assert abs(sym - sym.T).max() < 1e-12
    only_first = ring_weights(order, weights=(1.0, 0.0), normalize=None)
    assert (only_first != (order == 1)).nnz == 0
    with pytest.raises(InputError, match="one weight per ring order"):
        ring_weights(order, weights=(1.0,))
    with pytest.raises(InputError, match="non-negative"):
        ring_weights(order, weights=(1.0, -1.0))
    assert (order != before).nnz == 0 and order.nnz == before.nnz  # input left untouched
    empty = ring_weights(sp.csr_matrix((3, 3), dtype=np.int8))
    assert empty.nnz == 0 and empty.shape == (3, 3)


# ----------------------------------------------------------------------------- AnnData API


def make_adata(coords: np.ndarray) -> ad.AnnData:
    return ad.AnnData(np.ones((len(coords), 2), dtype=np.float32), obsm={"spatial": coords})


def test_spatial_neighbors_writes_keys_params_and_roundtrips(tmp_path):
    points = transform(hex_xy(hex_patch(4)), scale=80.0, angle=0.2)
    adata = make_adata(points)
    assert spatial_neighbors(adata, max_order=2, key_added="hexg") is None
    uns = adata.uns["hexg_neighbors"]
    assert uns["connectivities_key"] == "hexg_connectivities"
    assert uns["distances_key"] == "hexg_distances"
    assert uns["order_key"] == "hexg_order"
    params = uns["params"]
    assert params["method"] == "grid" and params["grid"] == "hex" and params["max_order"] == 2
    assert params["spacing"] == pytest.approx(80.0)
    for key in ("hexg_connectivities", "hexg_distances", "hexg_order"):
        assert sp.issparse(adata.obsp[key]) and adata.obsp[key].format == "csr"
    assert adata.obsp["hexg_order"].dtype == np.int8
    path = tmp_path / "g.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert back.uns["hexg_neighbors"]["params"]["grid"] == "hex"
    assert (back.obsp["hexg_order"] != adata.obsp["hexg_order"]).nnz == 0


def test_spatial_neighbors_copy_semantics():
    adata = make_adata(square_lattice(5, 5) * 1.0)
    out = spatial_neighbors(adata, copy=True)
    assert out is not adata
    assert "spatial_connectivities" in out.obsp and "spatial_neighbors" in out.uns
    assert "spatial_connectivities" not in adata.obsp and "spatial_neighbors" not in adata.uns


def test_spatial_neighbors_method_choice():
    rng = np.random.default_rng(2)
    cloud = make_adata(rng.uniform(0, 10, size=(100, 2)))
    spatial_neighbors(cloud, radius=1.5)  # auto without lattice, radius given -> radius graph
    assert cloud.uns["spatial_neighbors"]["params"]["method"] == "radius"
    assert cloud.obsp["spatial_distances"].data.max() <= 1.5
    grid = make_adata(square_lattice(6, 6) * 1.0)
    spatial_neighbors(grid, method="knn", n_neighbors=3)
    assert grid.uns["spatial_neighbors"]["params"]["method"] == "knn"
    assert set(np.unique(grid.obsp["spatial_order"].data)) == {1}
    spatial_neighbors(grid, grid="hex")  # forced kind: no detection, rings by distance
    assert grid.uns["spatial_neighbors"]["params"]["grid"] == "hex"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "radius"}, "needs a radius"),
        ({"method": "knn", "n_neighbors": 0}, "n_neighbors"),
        ({"method": "knn", "n_neighbors": 2.5}, "n_neighbors"),
        ({"method": "knn", "n_neighbors": 30}, "n_neighbors"),
        ({"method": "radius", "radius": -1.0}, "radius"),
        ({"method": "nope"}, "method"),
        ({"grid": "triangle"}, "grid"),
        ({"max_order": 0}, "max_order"),
        ({"tol": 0.6}, "tol"),
        ({"method": "grid"}, "no square or hexagonal lattice"),
    ],
)
def test_spatial_neighbors_bad_params(kwargs, match):
    adata = make_adata(np.random.default_rng(0).uniform(size=(25, 2)))
    with pytest.raises(InputError, match=match):
        spatial_neighbors(adata, **kwargs)


def test_spatial_neighbors_missing_key_and_nan():
    adata = make_adata(square_lattice(4, 4) * 1.0)
    with pytest.raises(MissingKeyError, match="obsm"):
        spatial_neighbors(adata, spatial_key="xy")
    adata.obsm["spatial"][3, 0] = np.nan
    with pytest.raises(InputError):
        spatial_neighbors(adata)


def test_array_functions_reject_bad_coords():
    with pytest.raises(NonFiniteError):
        knn_graph(np.array([[0.0, 1.0], [np.inf, 2.0], [1.0, 1.0]]), n_neighbors=1)
    with pytest.raises(InputError, match="shape"):
        radius_graph(np.arange(5.0), radius=1.0)
    with pytest.raises(InputError, match="no square or hexagonal lattice"):
        grid_rings(np.random.default_rng(0).uniform(size=(100, 2)))
    with pytest.raises(InputError, match="3-D"):
        grid_rings(np.zeros((10, 3)), grid="square")

"""cellweave.metrics.scib: scib-metrics 0.5.10 scores without JAX, and label transfer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.stats import chi2
from sklearn.model_selection import train_test_split

from cellweave.errors import InputError
from cellweave.metrics import scib
from cellweave.metrics.integration import graph_connectivity as symmetric_graph_connectivity
from cellweave.metrics.kbet import _kbet_acceptance


def blobs(n_per: int, n_labels: int, *, batch_offset: float, seed: int = 0, dim: int = 5):
    """Label blobs 20 apart; two batches, shifted by ``batch_offset`` along the last axis."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"type{i}" for i in range(n_labels)], n_per)
    batches = rng.choice(["b0", "b1"], size=labels.size)
    centres = 20.0 * np.eye(n_labels, dim)
    x = centres[pd.factorize(labels)[0]] + rng.normal(size=(labels.size, dim))
    x[:, -1] += batch_offset * (batches == "b1")
    return x, labels, batches


@pytest.fixture(scope="module")
def mixed():
    x, labels, batches = blobs(200, 3, batch_offset=0.0)
    return scib.scib_scores(x, labels, batches)


@pytest.fixture(scope="module")
def separated():
    x, labels, batches = blobs(200, 3, batch_offset=30.0)
    return scib.scib_scores(x, labels, batches)


def test_keys_are_the_metrics_json_schema(mixed):
    assert tuple(mixed) == scib.SCIB_KEYS
    assert set(scib.SCIB_KEYS) == {
        "nmi", "ari", "asw_label", "clisi", "isolated_labels", "asw_batch", "ilisi", "kbet",
        "graph_connectivity", "bio", "batch", "total",
    }  # fmt: skip
    assert all(isinstance(v, float) for v in mixed.values())


def test_aggregates_are_plain_means(mixed):
    bio = np.mean([mixed[k] for k in scib.BIO_KEYS])
    batch = np.mean([mixed[k] for k in scib.BATCH_KEYS])
    assert mixed["bio"] == pytest.approx(bio)
    assert mixed["batch"] == pytest.approx(batch)
    assert mixed["total"] == pytest.approx(0.6 * bio + 0.4 * batch)


def test_mixed_batches_and_separated_labels_score_near_one(mixed):
    assert mixed["nmi"] == pytest.approx(1.0)
    assert mixed["ari"] == pytest.approx(1.0)
    assert mixed["clisi"] == pytest.approx(1.0, abs=1e-3)
    assert mixed["asw_label"] > 0.85 and mixed["isolated_labels"] > 0.85
    assert mixed["asw_batch"] > 0.95
    assert mixed["ilisi"] > 0.85  # random mixing: effective number of batches close to 2
    assert mixed["kbet"] > 0.8  # ~1 - alpha when batches are exchangeable
    # directed graph (as scib-metrics): a cell no other cell points to is its own piece
    assert mixed["graph_connectivity"] > 0.97
    assert mixed["total"] > 0.9


def test_separated_batches_score_near_zero(mixed, separated):
    assert separated["asw_batch"] < 0.15
    assert separated["ilisi"] < 0.02
    assert separated["kbet"] < 0.02
    # each label falls apart into its two batches, of about equal size
    assert separated["graph_connectivity"] == pytest.approx(0.5, abs=0.05)
    assert separated["batch"] < 0.25 < mixed["batch"] - 0.5


def test_input_errors():
    x, labels, batches = blobs(20, 2, batch_offset=0.0)
    with pytest.raises(InputError, match="batches"):
        scib.scib_scores(x, labels, np.full(labels.size, "b"))
    with pytest.raises(InputError, match="missing"):
        scib.scib_scores(x, np.where(np.arange(labels.size) == 0, None, labels), batches)
    with pytest.raises(InputError, match="n_neighbors"):
        scib.scib_scores(x, labels, batches, n_neighbors=10)


# --------------------------------------------------------------------------------------
# Pieces on hand-made cases
# --------------------------------------------------------------------------------------


def test_kbet_chi_square_by_hand():
    batch = np.array(["a"] * 10 + ["b"] * 10)
    # rows 0-9: 10 neighbours all from batch a; rows 10-19: 5 from each batch
    pure = np.tile(np.arange(10), (10, 1))
    balanced = np.tile(np.r_[np.arange(5), np.arange(10, 15)], (10, 1))
    nb = np.vstack([pure, balanced])
    # expected 5/5 per row: pure rows have stat 25/5 + 25/5 = 10 on 1 dof
    assert chi2.sf(10.0, 1) < 0.05
    assert _kbet_acceptance(nb, batch, 0.05) == 0.5
    assert _kbet_acceptance(nb, batch, chi2.sf(10.0, 1) / 2) == 1.0


def test_kbet_skips_small_and_single_batch_labels():
    x, labels, batches = blobs(100, 2, batch_offset=0.0)
    batches = np.where(labels == "type0", "b0", batches)  # type0 seen in one batch only
    labels = np.r_[labels, ["tiny"] * 5]
    x = np.vstack([x, 40.0 + np.random.default_rng(1).normal(size=(5, 5))])
    batches = np.r_[batches, ["b0", "b1", "b0", "b1", "b0"]]
    per_label = scib.kbet(x, batches, labels, per_label=True)
    assert np.isnan(per_label["type0"]) and np.isnan(per_label["tiny"])
    assert per_label["type1"] > 0.8
    assert scib.kbet(x, batches, labels) == pytest.approx(per_label["type1"])


def test_smooth_knn_dist_calibrates_each_row():
    rng = np.random.default_rng(0)
    dist, _ = scib.scib_neighbors(rng.normal(size=(300, 4)), n_neighbors=15)
    sigma, rho = scib._smooth_knn_dist(dist)
    assert np.allclose(rho, dist[:, 1])  # nearest non-self neighbour
    mass = np.exp(-np.maximum(dist[:, 1:] - rho[:, None], 0) / sigma[:, None]).sum(axis=1)
    assert np.allclose(mass, np.log2(15), atol=1e-3)


def test_umap_connectivities_fuzzy_union():
    rng = np.random.default_rng(0)
    dist, idx = scib.scib_neighbors(rng.normal(size=(200, 3)), n_neighbors=10)
    g = scib.umap_connectivities(dist, idx)
    assert abs(g - g.T).max() < 1e-6
    assert g.diagonal().max() == 0.0 and g.data.min() > 0 and g.data.max() <= 1.0
    # the nearest neighbour of every cell is fully connected to it
    assert np.allclose(g[np.arange(200), idx[:, 1]], 1.0)


def test_graph_connectivity_is_directed_and_strong():
    # 0 <-> 1 and 2 -> 0: the strongly connected pieces are {0, 1} and {2}
    indices = np.array([[0, 1], [1, 0], [2, 0]])
    assert scib.graph_connectivity_directed(indices, ["a", "a", "a"]) == pytest.approx(2 / 3)
    # the symmetrised graph of cellweave.metrics.integration sees one piece
    graph = sparse.csr_matrix((np.ones(3), ([0, 1, 2], [1, 0, 0])), shape=(3, 3))
    assert symmetric_graph_connectivity(graph + graph.T, ["a", "a", "a"]) == 1.0
    # per label mean: label b is one cell
    assert scib.graph_connectivity_directed(indices, ["a", "a", "b"]) == pytest.approx(1.0)


def test_leiden_recovers_disconnected_groups():
    x, labels, _ = blobs(40, 2, batch_offset=0.0)
    out = scib.leiden_nmi_ari(x, labels)
    assert out["nmi"] == pytest.approx(1.0) and out["ari"] == pytest.approx(1.0)
    again = scib.leiden_nmi_ari(x, labels)
    assert again == out  # seeded


# --------------------------------------------------------------------------------------
# Label transfer
# --------------------------------------------------------------------------------------


def test_labelled_split_is_the_sklearn_protocol():
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c"], p=[0.6, 0.3, 0.1], size=5000)
    mask = scib.labelled_split(labels)
    train, _ = train_test_split(
        np.arange(labels.size), train_size=0.01, stratify=labels, random_state=0
    )
    assert np.array_equal(np.flatnonzero(mask), np.sort(train))
    assert mask.sum() == 50


def test_label_transfer_on_separable_data():
    x, labels, _ = blobs(2000, 3, batch_offset=0.0)
    assert scib.label_transfer_balanced_accuracy(x, labels) == 1.0
    # shuffled embedding rows: the classifier learns nothing, ~1/3 balanced accuracy
    shuffled = x[np.random.default_rng(1).permutation(labels.size)]
    assert scib.label_transfer_balanced_accuracy(shuffled, labels) < 0.45


def test_label_transfer_of_given_predictions_by_hand():
    labels = np.repeat(["a", "b", "c"], [3000, 2000, 1000])
    predictions = np.where(labels == "c", "a", labels)  # every c wrong
    held_out = ~scib.labelled_split(labels)
    ba = scib.label_transfer_balanced_accuracy(None, labels, predictions=predictions)
    assert ba == pytest.approx(2 / 3)
    assert held_out.sum() == 6000 - 60


def test_label_transfer_needs_two_cells_per_label():
    with pytest.raises(InputError, match="single cell"):
        scib.labelled_split(np.r_[np.repeat(["a", "b"], 200), ["c"]])


def test_integration_report_schema():
    x, labels, batches = blobs(150, 3, batch_offset=0.0)  # 1% = 4 labelled cells
    report = scib.integration_report(x, labels, batches, seconds=1.5, predictions=labels)
    assert set(report) == {"metrics", "label_transfer", "seconds"}
    assert tuple(report["metrics"]) == scib.SCIB_KEYS
    assert report["label_transfer"]["model_balanced_accuracy"] == 1.0
    assert set(report["label_transfer"]) == {"balanced_accuracy", "model_balanced_accuracy"}
    assert report["seconds"] == 1.5


# --------------------------------------------------------------------------------------
# Agreement with scib-metrics itself (bench extra)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mop_rna_embedding(real_data):
    """PCA of 1,000 RNA cells of the MOp mosaic (two batches), its 4 commonest cell types."""
    import mudata as md

    import cellweave as cw

    rna = md.read_h5ad(str(real_data("mop_mosaic_rna_atac.h5mu")), "rna")
    labels = rna.obs["cell_type"].astype(str).to_numpy()
    common = pd.Series(labels).value_counts().index[:4]
    cells = np.flatnonzero(np.isin(labels, common))
    keep = np.sort(np.random.default_rng(0).choice(cells, 1000, replace=False))
    x = cw.pp.pca(cw.pp.log_normalize(rna.X[keep]), n_comps=20).astype(np.float32)
    return x, labels[keep], rna.obs["batch"].astype(str).to_numpy()[keep]


@pytest.mark.slow
@pytest.mark.real_data
def test_agrees_with_scib_metrics_on_mop(mop_rna_embedding):
    """Same neighbour lists in, same scores out (float32 rounding aside). scib-metrics'
    kBET needs pynndescent on each label (minutes); bench_mosaic.py --scib-check compares it
    with scib-metrics' own neighbours."""
    pytest.importorskip("scib_metrics")
    from scib_metrics.metrics._kbet import kbet as sm_kbet
    from scib_metrics.nearest_neighbors import NeighborsResults

    x, labels, batches = mop_rna_embedding
    mine = scib.scib_scores(x, labels, batches)
    dist, idx = scib.scib_neighbors(x, n_neighbors=90)
    nn = NeighborsResults(indices=idx, distances=dist)
    nn15 = nn.subset_neighbors(15)
    ours = scib.umap_connectivities(dist[:, :15], idx[:, :15])
    assert abs(ours - nn15.knn_graph_connectivities).max() < 1e-6
    ref = scib.scib_metrics_reference(x, labels, batches, neighbors=(dist, idx), with_kbet=False)
    compared = (*scib.BIO_KEYS, "asw_batch", "ilisi", "graph_connectivity")  # kBET: below
    for key in compared:
        assert mine[key] == pytest.approx(ref[key], abs=2e-3), key
    # the kBET test itself, on the same neighbour lists
    acceptance, _, _ = sm_kbet(nn.subset_neighbors(50), batches)
    assert _kbet_acceptance(idx[:, :50], batches, 0.05) == pytest.approx(float(acceptance))

"""MosaicModel end to end on small simulated mosaics with known truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from cellweave.errors import FileFormatError, InputError, MissingKeyError
from cellweave.metrics import ari
from cellweave.mosaic import MosaicModel, UnknownLabelError, integrate
from cellweave.sim import simulate_mosaic

BATCHES = {"cite": ("rna", "protein"), "multiome": ("rna", "atac"), "atac_only": ("atac",)}
FAST = {"encoder_hidden": (64,), "n_embedding": 32, "decoder_hidden": (32,), "n_latent": 8}


def _labelled(mdata, fraction: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    keep = rng.random(mdata.n_obs) < fraction
    labels = mdata.obs["cell_type"].astype(str).where(keep, None)
    mdata.obs["some_labels"] = labels.to_numpy()


@pytest.fixture(scope="module")
def sim():
    mdata, full = simulate_mosaic(
        n_cells=900,
        batches=BATCHES,
        n_genes=80,
        n_peaks=200,
        n_proteins=10,
        n_cell_types=4,
        latent_dim=4,
        return_full=True,
        random_state=0,
    )
    _labelled(mdata, 0.1)
    return mdata, full


@pytest.fixture(scope="module")
def trained(sim):
    mdata, _ = sim
    model = MosaicModel(mdata, batch_key="batch", label_key="some_labels", random_state=0, **FAST)
    model.train(max_epochs=40, batch_size=128, progress=False)
    return model


def _naive_embedding(mdata) -> np.ndarray:
    """Per-modality PCA (log-normalized) / LSI-free baseline, zero-filled for absent cells."""
    from cellweave.pp import log_normalize, pca

    blocks = []
    for mod in mdata.mod:
        present = mdata.obs_names.isin(mdata[mod].obs_names)
        block = np.zeros((mdata.n_obs, 8), dtype=np.float32)
        x = mdata[mod][mdata.obs_names[present]].X
        block[present] = pca(log_normalize(x), n_comps=8)
        blocks.append(block)
    return np.hstack(blocks)


def _transfer(z: np.ndarray, types: np.ndarray, batches: np.ndarray, held: str) -> float:
    train = batches != held
    clf = KNeighborsClassifier(10).fit(z[train], types[train])
    return float((clf.predict(z[~train]) == types[~train]).mean())


def test_latent_clusters_types_and_mixes_batches(sim, trained):
    mdata, _ = sim
    z = trained.get_latent_representation()
    assert z.shape == (mdata.n_obs, 8) and np.isfinite(z).all()
    types = mdata.obs["cell_type"].astype(str).to_numpy()
    batches = mdata.obs["batch"].astype(str).to_numpy()
    naive = _naive_embedding(mdata)
    # cell types transfer from the other batches (chance 0.25); the naive embedding can only
    # compare cells through a modality they share
    ours = {h: _transfer(z, types, batches, h) for h in ("cite", "multiome", "atac_only")}
    base = {h: _transfer(naive, types, batches, h) for h in ours}
    assert ours["cite"] > 0.7 and ours["multiome"] > 0.7 and ours["atac_only"] > 0.4
    assert np.mean(list(ours.values())) > np.mean(list(base.values())) + 0.1
    # batches are mixed: the latent's iLISI is close to the true latent's
    from cellweave.metrics import ilisi

    assert ilisi(z, batches) > 0.8 * ilisi(mdata.obsm["true_latent"], batches)


def test_semi_supervised_labels_and_probabilities(sim, trained):
    mdata, _ = sim
    labels, probs = trained.predict_labels(return_probabilities=True)
    truth = mdata.obs["cell_type"].astype(str).to_numpy()
    unlabelled = mdata.obs["some_labels"].isna().to_numpy()
    assert (labels.astype(str).to_numpy()[unlabelled] == truth[unlabelled]).mean() > 0.7
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert list(probs.columns) == [f"type_{k}" for k in range(4)]
    clusters = trained.get_cluster_probabilities()
    assert clusters.shape == (mdata.n_obs, 4)
    assert ari(truth, clusters.argmax(1)) > 0.4


def test_attention_weights_cover_the_measured_modalities(sim, trained):
    mdata, _ = sim
    att = trained.get_attention()
    assert list(att.columns) == ["rna", "atac", "protein"]
    present = np.column_stack([np.asarray(mdata.obsm[m]).ravel() for m in att.columns])
    np.testing.assert_allclose(att.to_numpy().sum(1), 1.0, rtol=1e-5)
    assert np.all(att.to_numpy()[~present] == 0)
    single = present.sum(1) == 1
    np.testing.assert_allclose(att.to_numpy()[single].max(1), 1.0)


def _gene_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a - a.mean(0), b - b.mean(0)
    den = np.sqrt((a**2).sum(0) * (b**2).sum(0))
    return np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1), 0.0)


def test_impute_rna_for_atac_only_cells_beats_knn_and_mean(sim, trained):
    mdata, full = sim
    imputed = trained.impute_modality("rna", transform_batch="multiome")
    missing = ~full.obs["measured_rna"].to_numpy()
    assert imputed.n_obs == int(missing.sum())
    truth = full["rna"].layers["true_expression"][missing]
    truth = np.log1p(1e4 * truth / truth.sum(1, keepdims=True))
    model = np.log1p(1e4 * imputed.X / imputed.X.sum(1, keepdims=True))
    # baseline: mean of the 15 nearest RNA-measured cells in the same latent space
    z = trained.get_latent_representation()
    rna_cells = np.flatnonzero(~missing)
    counts = mdata["rna"][mdata.obs_names[rna_cells]].X.toarray()
    norm = np.log1p(1e4 * counts / counts.sum(1, keepdims=True))
    nn = NearestNeighbors(n_neighbors=15).fit(z[rna_cells])
    knn = norm[nn.kneighbors(z[missing], return_distance=False)].mean(1)
    r_model = np.median(_gene_pearson(model, truth))
    r_knn = np.median(_gene_pearson(knn, truth))
    assert r_model > 0.4  # the mean profile scores 0 (no variation across cells)
    assert r_model > r_knn - 0.02
    protein = trained.impute_modality("protein", cells="all", library_size=1000.0)
    np.testing.assert_allclose(protein.X.sum(1), 1000.0, rtol=1e-4)


def test_differential_finds_the_true_changes(sim, trained):
    _, full = sim
    de = trained.differential("cell_type", "type_0", "type_1", modality="rna", n_samples=2000)
    assert list(de.columns[:3]) == ["proba_de", "bayes_factor", "lfc_mean"]
    assert de["proba_de"].is_monotonic_decreasing and de["is_de_fdr"].dtype == bool
    expr = full["rna"].layers["true_expression"]
    prop = expr / expr.sum(1, keepdims=True)
    types = full.obs["cell_type"].astype(str).to_numpy()
    lfc = np.log2(prop[types == "type_0"].mean(0)) - np.log2(prop[types == "type_1"].mean(0))
    true = pd.Series(lfc, index=full["rna"].var_names).loc[de.index]
    assert stats.spearmanr(de["lfc_mean"], true).statistic > 0.7
    big, small = true.abs() > 1.0, true.abs() < 0.1
    # the Bayes factor ranks the genes that truly change above those that do not
    bf_big, bf_small = de["bayes_factor"][big].to_numpy(), de["bayes_factor"][small].to_numpy()
    auc = (bf_big[:, None] > bf_small[None, :]).mean()
    assert auc > 0.75
    with pytest.raises(InputError):
        trained.differential("cell_type", "type_0", mode="bayes")


def test_save_load_round_trip(tmp_path, sim, trained):
    mdata, _ = sim
    path = trained.save(tmp_path / "model")
    assert {p.name for p in path.iterdir()} == {
        "model.json",
        "representation.npz",
        "graph.npz",
        "weights.pt",
    }
    loaded = MosaicModel.load(path, mdata)
    np.testing.assert_allclose(
        loaded.get_latent_representation(), trained.get_latent_representation(), atol=1e-5
    )
    assert loaded.init_params == trained.init_params
    assert loaded.data.label_classes == trained.data.label_classes
    bad = mdata.copy()
    bad.obs["some_labels"] = bad.obs["some_labels"].replace({"type_0": "type_9"})
    with pytest.raises(UnknownLabelError, match="type_9"):
        MosaicModel.load(path, bad)
    with pytest.raises(Exception, match="not empty"):
        trained.save(path)
    query = mdata.copy()
    del query.obs["some_labels"]  # new data without labels: the saved classes are predicted
    labels = MosaicModel.load(path, query).predict_labels()
    assert list(labels.cat.categories) == trained.data.label_classes


def test_load_refuses_an_older_model_format(tmp_path, sim, trained):
    mdata, _ = sim
    path = trained.save(tmp_path / "model")
    meta = json.loads((path / "model.json").read_text())
    assert meta["format"] == 2
    del meta["format"]  # as written before the protein decoder predicted absolute counts
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match=r"format 1.*train the model again"):
        MosaicModel.load(path, mdata)


def test_write_results_with_integrate(sim):
    mdata, _ = sim
    data = mdata.copy()
    out = integrate(
        data, batch_key="batch", label_key="some_labels", max_epochs=3, copy=True, **FAST
    )
    assert "X_cellweave" not in data.obsm
    assert out.obsm["X_cellweave"].shape == (mdata.n_obs, 8)
    assert out.obsm["cellweave_clusters"].shape == (mdata.n_obs, 4)
    assert out.obsm["cellweave_attention"].shape == (mdata.n_obs, 3)
    assert out.obs["cellweave_label"].isin([f"type_{k}" for k in range(4)]).all()
    assert out.uns["cellweave"]["params"]["model"]["batch_key"] == "batch"
    assert out.uns["cellweave"]["modalities"] == ["rna", "atac", "protein"]


@pytest.mark.parametrize("mixture", ["exact", "gumbel", "marginal"])
def test_single_modality_batch_integration(mixture):
    mdata = simulate_mosaic(
        n_cells=400,
        batches={"a": ("rna",), "b": ("rna",)},
        n_genes=60,
        n_cell_types=3,
        batch_effect=1.0,
        random_state=2,
    )
    adata = mdata["rna"].copy()
    integrate(
        adata, modality="rna", batch_key="batch", n_clusters=3, mixture=mixture, max_epochs=15,
        **FAST,
    )  # fmt: skip
    z = adata.obsm["X_cellweave"]
    types = adata.obs["cell_type"].astype(str).to_numpy()
    batch = adata.obs["batch"].astype(str).to_numpy()
    from cellweave.metrics import ilisi
    from cellweave.pp import log_normalize, pca

    naive = pca(log_normalize(adata.X), n_comps=8)
    # batches mixed (the naive PCA keeps them apart), cell types kept across them
    assert ilisi(z, batch) > ilisi(naive, batch) + 0.3
    assert _transfer(z, types, batch, "b") > 0.75
    with pytest.raises(MissingKeyError):
        MosaicModel(adata, modality="rna", batch_key="sample")


def test_killed_training_resumes_from_its_checkpoint(tmp_path, sim):
    mdata, _ = sim
    kwargs = dict(batch_key="batch", random_state=0, n_clusters=4, **FAST)
    first = MosaicModel(mdata, **kwargs)
    ckpt = tmp_path / "ckpt"
    done = first.train(max_epochs=2, checkpoint_dir=ckpt, early_stopping=False, progress=False)
    assert done.epochs == [0, 1] and (ckpt / "last.ckpt").exists()
    # a new process: same data and parameters, resume=True continues after epoch 1
    second = MosaicModel(mdata, **kwargs)
    before = {k: v.clone() for k, v in second.module.state_dict().items()}
    resumed = second.train(
        max_epochs=4, checkpoint_dir=ckpt, resume=True, early_stopping=False, progress=False
    )
    assert resumed.epochs == [2, 3]
    assert resumed.global_step > done.global_step
    after = second.module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_graph_loss_is_part_of_training(sim):
    mdata, _ = sim
    model = MosaicModel(mdata, batch_key="batch", n_clusters=4, graph_key="feature_links", **FAST)
    assert model.module.graph.has_graph and model.module.graph.n_edges > 0
    model.train(max_epochs=6, progress=False, early_stopping=False)
    history = model.module.history
    graph_losses = [h["train_graph"] for h in history]
    assert graph_losses[-1] < graph_losses[0]
    # every term of the objective ran: adversary (near chance: 3 batches), MMD, alignment
    assert {"train_adversarial", "train_mmd", "train_align", "train_kl"} <= set(history[-1])
    assert 0.5 < history[-1]["train_adversarial"] < 2.0
    # linked gene-peak/protein pairs end up closer in V than random pairs
    v = model.module.graph.mean().detach().numpy()
    g = model.graph.tocoo()
    linked = (v[g.row] * v[g.col]).sum(1)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, v.shape[0], (2, g.nnz))
    assert np.median(linked) > np.median((v[a] * v[b]).sum(1))


def test_imputed_protein_is_absolute_and_matches_the_truth(sim, trained):
    # protein decoders predict absolute counts (totals are biological on real data), so the
    # imputation keeps each cell's predicted total unless a library size is given
    _, full = sim
    imputed = trained.impute_modality("protein")
    assert imputed.uns["cellweave_impute"]["library_size"] == "predicted"
    pred = np.asarray(imputed.X, dtype=np.float64)
    assert pred.sum(1).std() > 0
    truth = np.asarray(full["protein"][imputed.obs_names].layers["true_expression"])
    prop = lambda x: np.log1p(1e4 * x / x.sum(1, keepdims=True))  # noqa: E731
    r = np.median(_gene_pearson(prop(pred), prop(truth)))
    assert r > 0.4  # the mean profile scores 0
    scaled = trained.impute_modality("protein", library_size=500.0)
    np.testing.assert_allclose(scaled.X.sum(1), 500.0, rtol=1e-4)


def test_history_one_row_per_epoch_saved_with_the_model(tmp_path, sim, trained):
    history = trained.history
    assert list(history.index) == trained.fit_result.epochs
    assert {"loss", "val_loss", "kl", "seconds"} <= set(history.columns)
    # the module's own per-epoch record agrees with the one fit keeps
    logged = [row["train_loss"] for row in trained.module.history]
    np.testing.assert_allclose(history["loss"].to_numpy(), logged, rtol=1e-6)
    assert history["val_loss"].min() == pytest.approx(trained.fit_result.best_score)
    loaded = MosaicModel.load(trained.save(tmp_path / "model"), sim[0])
    pd.testing.assert_frame_equal(loaded.history, history, check_dtype=False)

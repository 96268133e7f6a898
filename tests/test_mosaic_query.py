"""Query mapping onto a trained mosaic model (scArches-style) on the mosaic simulator: a
held-out batch mapped onto a reference trained on the others."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from cellweave import io
from cellweave.cli import main
from cellweave.errors import InputError, MissingKeyError, NoSharedFeaturesError, NotCountsError
from cellweave.mosaic import MosaicModel
from cellweave.sim import simulate_mosaic

BATCHES = {
    "cite": ("rna", "protein"),
    "multiome": ("rna", "atac"),
    "atac_only": ("atac",),
    "held": ("rna", "atac"),
}
TRAIN = {"max_epochs": 40, "batch_size": 128, "progress": False}


def _subset(mdata, cells, mods=None):
    """The cells ``cells`` (obs names) of ``mdata`` as a MuData of the modalities that hold
    some of them (or ``mods``)."""
    parts = {}
    for name, adata in mdata.mod.items():
        keep = adata.obs_names.isin(cells)
        if keep.any() and (mods is None or name in mods):
            parts[name] = adata[keep].copy()
    with md.set_options(pull_on_update=False):
        out = md.MuData(parts)
    out.obs = mdata.obs.loc[out.obs_names, ["batch", "cell_type"]].copy()
    out.obs["batch"] = out.obs["batch"].astype(str)
    return out


@pytest.fixture(scope="module")
def sim():
    return simulate_mosaic(
        n_cells=1200,
        batches=BATCHES,
        n_genes=80,
        n_peaks=200,
        n_proteins=10,
        n_cell_types=4,
        latent_dim=4,
        random_state=0,
    )


@pytest.fixture(scope="module")
def split(sim):
    batch = sim.obs["batch"].astype(str)
    ref = _subset(sim, sim.obs_names[(batch != "held").to_numpy()])
    query = _subset(sim, sim.obs_names[(batch == "held").to_numpy()])
    return ref, query


@pytest.fixture(scope="module")
def reference(split, fast_mosaic):
    ref, _ = split
    model = MosaicModel(
        ref, batch_key="batch", label_key="cell_type", random_state=0, **fast_mosaic
    )
    model.train(**TRAIN)
    return model


@pytest.fixture(scope="module")
def mapped(reference, split):
    _, query = split
    before = {k: v.clone() for k, v in reference.module.state_dict().items()}
    model = MosaicModel.load_query_data(reference, query, batch_key="batch")
    model.train_query(**TRAIN)
    return model, before


def _knn_accuracy(z_ref, y_ref, z_query, y_query) -> float:
    clf = KNeighborsClassifier(15).fit(z_ref, y_ref)
    return float((clf.predict(z_query) == y_query).mean())


def test_query_latent_mixes_with_the_reference_of_the_same_types(
    sim, split, reference, mapped, fast_mosaic
):
    ref, query = split
    model, _ = mapped
    truth = query.obs["cell_type"].astype(str).to_numpy()
    z_ref = reference.get_latent_representation()
    y_ref = ref.obs["cell_type"].astype(str).to_numpy()
    z_query = model.get_latent_representation()
    assert z_query.shape == (query.n_obs, 8) and np.isfinite(z_query).all()
    query_acc = _knn_accuracy(z_ref, y_ref, z_query, truth)
    # the same design trained on every batch together (the held-out batch unlabelled)
    full_data = sim.copy()
    labels = sim.obs["cell_type"].astype(str).where(sim.obs["batch"] != "held", None)
    full = MosaicModel(full_data, batch_key="batch", label_key=labels.to_numpy(), **fast_mosaic)
    full.train(**TRAIN)
    z = full.get_latent_representation()
    held = (sim.obs["batch"] == "held").to_numpy()
    types = sim.obs["cell_type"].astype(str).to_numpy()
    full_acc = _knn_accuracy(z[~held], types[~held], z[held], types[held])
    assert query_acc > 0.8  # chance: 0.25 (4 types)
    assert query_acc >= full_acc - 0.08, (query_acc, full_acc)
    # the model's own transferred labels: kNN on the reference's labelled cells, classifier
    knn, probs = model.knn_labels()
    assert (knn.astype(str).to_numpy() == truth).mean() > 0.8
    assert np.allclose(probs.to_numpy().sum(1), 1.0, atol=1e-5)
    assert (model.predict_labels().astype(str).to_numpy() == truth).mean() > 0.8


def test_frozen_reference_weights_do_not_change(reference, mapped):
    model, before = mapped
    after = model.module.state_dict()
    n_ref = len(reference.data.batch_names)
    assert model.data.batch_names == [*reference.data.batch_names, "held"]
    assert model.query_info["reference_batches"] == n_ref
    learned = 0
    for name, old in before.items():
        new = after[name]
        block = tuple(slice(0, n) for n in old.shape)
        assert torch.equal(new[block], old), name  # the reference's entries, bit-equal
        if new.shape != old.shape:
            start = old.mean(0) if new.shape[1:] == old.shape[1:] else 0.0
            learned += int((new[n_ref:] != start).any())
    assert learned > 0  # the query batch's decoder rows did learn
    assert any(bool((p[n_ref:] != 0).any()) for p in model.module.input_shift)
    # the reference model itself is untouched
    for name, value in reference.module.state_dict().items():
        assert torch.equal(value, before[name])


def test_unfrozen_fine_tunes_the_reference_weights(reference, split):
    _, query = split
    model = MosaicModel.load_query_data(reference, query, batch_key="batch", unfrozen=True)
    model.train_query(max_epochs=2, batch_size=128, progress=False)
    name = "head.weight"
    assert not torch.equal(model.module.state_dict()[name], reference.module.state_dict()[name])


def test_query_with_a_subset_of_modalities_and_missing_features(reference, split):
    _, query = split
    rna = query["rna"]
    dropped = rna[:, 10:].copy()  # 10 genes not measured by the query
    q = md.MuData({"rna": dropped})
    q.obs = query.obs.loc[q.obs_names].copy()
    model = MosaicModel.load_query_data(reference, q, batch_key="batch")
    assert model.query_info["missing_features"] == {"rna": 10}
    assert model.data["atac"].present.sum() == 0 and model.data["protein"].present.sum() == 0
    model.train_query(max_epochs=3, batch_size=128, progress=False)
    rna_index = model.data.names.index("rna")
    bias = model.module.decoders[rna_index].bias
    assert torch.all(bias[-1, :10] == -30.0)  # masked features carry no mass
    assert torch.isfinite(bias).all()
    truth = q.obs["cell_type"].astype(str).to_numpy()
    assert (model.knn_labels()[0].astype(str).to_numpy() == truth).mean() > 0.7


@pytest.mark.parametrize(
    "change, error, words",
    [
        ("rename_modality", InputError, "not in the reference model"),
        ("no_shared", NoSharedFeaturesError, "shares no feature"),
        ("collide", InputError, "also a reference batch"),
        ("not_counts", NotCountsError, "count"),
        ("no_batch", MissingKeyError, "no obs column"),
    ],
)
def test_bad_queries_are_one_line_errors(reference, split, change, error, words):
    _, query = split
    rna = query["rna"].copy()
    name = "rna"
    if change == "rename_modality":
        name = "genes"
    elif change == "no_shared":
        rna.var_names = [f"x{i}" for i in range(rna.n_vars)]
    elif change == "not_counts":
        rna.X = rna.X.toarray().astype(np.float32) * 0.5 + 0.25
    q = md.MuData({name: rna})
    q.obs = query.obs.loc[q.obs_names].copy()
    if change == "collide":
        q.obs["batch"] = "cite"
    if change == "no_batch":
        q.obs = q.obs.drop(columns="batch")
    with pytest.raises(error) as err:
        MosaicModel.load_query_data(reference, q, batch_key="batch")
    assert words in str(err.value) and "\n" not in str(err.value)


def test_save_load_round_trip(tmp_path, reference, mapped, split):
    _, query = split
    model, _ = mapped
    # the reference from its folder maps the query as the in-memory reference does
    reference.save(tmp_path / "ref")
    from_disk = MosaicModel.load_query_data(tmp_path / "ref", query, batch_key="batch")
    in_memory = MosaicModel.load_query_data(reference, query, batch_key="batch")
    assert np.allclose(
        from_disk.get_latent_representation(), in_memory.get_latent_representation(), atol=1e-6
    )
    assert np.array_equal(from_disk.reference_latent[1], in_memory.reference_latent[1])
    # a trained query model saved and loaded gives the same latent and labels
    model.save(tmp_path / "query")
    loaded = MosaicModel.load(tmp_path / "query", query)
    assert loaded.query_info["reference_batches"] == model.query_info["reference_batches"]
    assert np.allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-6
    )
    assert loaded.knn_labels()[0].equals(model.knn_labels()[0])
    with pytest.raises(InputError, match="load_query_data"):
        MosaicModel.load(tmp_path / "query", reference.mdata)  # reference batches


def test_train_query_needs_a_query_model(reference):
    with pytest.raises(InputError, match="load_query_data"):
        reference.train_query(max_epochs=1)


def test_cli_reference_model(tmp_path, reference, split):
    _, query = split
    reference.save(tmp_path / "ref")
    path, out = tmp_path / "query.h5mu", tmp_path / "out.h5mu"
    io.write(query, path)
    args = [path, "--reference-model", tmp_path / "ref", "-o", out, "--max-epochs", "3"]
    code = main(["integrate", *map(str, args), "--label-key", "cell_type", "--save-model",
                 str(tmp_path / "qmodel")])  # fmt: skip
    assert code == 0
    result = md.read_h5mu(out)
    assert result.obsm["X_cellweave"].shape == (query.n_obs, 8)
    assert result["rna"].obsm["X_cellweave"].shape == (query["rna"].n_obs, 8)
    for key in ("cellweave_label", "cellweave_knn_label", "cellweave_knn_label_probability"):
        assert key in result.obs
    assert (tmp_path / "qmodel" / "model.json").exists()
    # bad input: one line, exit 2
    clash = query.copy()
    clash.obs["batch"] = "cite"
    io.write(clash, tmp_path / "clash.h5mu")
    bad = [
        [tmp_path / "clash.h5mu", "--reference-model", tmp_path / "ref", "-o", tmp_path / "a.h5mu"],
        [path, "--reference-model", tmp_path / "nope", "-o", tmp_path / "b.h5mu"],
        [path, "--reference-model", tmp_path / "ref", "-o", tmp_path / "c.h5mu",
         "--labelled-fraction", "0.1"],
        [path, "--fine-tune", "-o", tmp_path / "d.h5mu"],
    ]  # fmt: skip
    for args in bad:
        assert main(["integrate", *map(str, args)]) == 2, args


def test_one_modality_reference_takes_an_anndata_query(split, fast_mosaic):
    ref, query = split
    model = MosaicModel(
        ref["rna"], modality="rna", batch_key="batch", random_state=0, **fast_mosaic
    )
    model.train(max_epochs=3, batch_size=128, progress=False)
    rna = query["rna"].copy()
    rna.obs["batch"] = "held"
    mapped = MosaicModel.load_query_data(model, rna, batch_key="batch")
    assert mapped.get_latent_representation().shape == (rna.n_obs, 8)
    assert isinstance(rna, ad.AnnData)


def test_query_rows_follow_the_query_cell_order(reference, split):
    _, query = split
    shuffled = query[query.obs_names[::-1]].copy()
    model = MosaicModel.load_query_data(reference, shuffled, batch_key="batch")
    assert model.data.obs_names.equals(shuffled.obs_names)
    plain = MosaicModel.load_query_data(reference, query, batch_key="batch")
    np.testing.assert_allclose(
        model.get_latent_representation()[::-1], plain.get_latent_representation(), atol=1e-5
    )


def test_spread_labels_uses_the_unlabelled_cells():
    from cellweave.mosaic.labels import spread_labels

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    truth = np.repeat([0, 1, 2], 100)
    latent = centres[truth] + rng.normal(0, 0.5, (300, 2))
    probs = np.full((300, 3), 1 / 3)
    probs[np.arange(300), truth] += 0.1  # a weak classifier, right on most cells ...
    wrong = rng.choice(300, 45, replace=False)
    probs[wrong] = np.eye(3)[(truth[wrong] + 1) % 3] * 0.3 + 0.2  # ... confidently wrong here
    probs /= probs.sum(1, keepdims=True)
    codes = np.full(300, -1)
    codes[[0, 100, 200, 201, 202]] = [0, 1, 2, 2, 2]  # five labelled cells
    out = spread_labels(latent, probs, codes)
    assert np.allclose(out.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == truth).mean() < 0.9
    assert (out.argmax(1) == truth).mean() > 0.98


def test_predict_labels_spread_keeps_the_labelled_cells(reference, split):
    ref, _ = split
    labels, probs = reference.predict_labels(return_probabilities=True, spread=True)
    assert np.allclose(probs.to_numpy().sum(1), 1.0, atol=1e-5)
    truth = ref.obs["cell_type"].astype(str).to_numpy()
    assert (labels.astype(str).to_numpy() == truth).mean() > 0.99  # every cell labelled
    assert list(labels.cat.categories) == reference.data.label_classes


def test_query_rows_start_from_the_batches_that_measured_the_modality(reference, split):
    from cellweave.mosaic.surgery import measured_batches

    _, query = split
    state = reference.module.state_dict()
    names = reference.data.batch_names
    codes = reference.data.batch_codes
    measured = measured_batches(state, len(reference.data.modalities))
    for i, m in enumerate(reference.data.modalities):
        truth = np.isin(np.arange(len(names)), np.unique(codes[m.present]))
        np.testing.assert_array_equal(measured[i], truth, err_msg=m.name)
    assert not measured[reference.data.names.index("rna")].all()  # atac_only: no RNA
    model = MosaicModel.load_query_data(reference, query, batch_key="batch")
    n_ref = len(names)
    for i, rows in enumerate(measured):
        dec = model.module.decoders[i]
        for key in ("scale", "log_theta"):
            if f"decoders.{i}.{key}" not in state:  # Bernoulli (ATAC): no dispersion
                continue
            ref_rows = state[f"decoders.{i}.{key}"]
            start = getattr(dec, key).detach()[n_ref]
            torch.testing.assert_close(start, ref_rows[torch.as_tensor(rows)].mean(0))
            if not rows.all():  # an untrained row would have pulled the mean away
                assert not torch.allclose(start, ref_rows.mean(0))


def test_validation_losses_is_the_one_seeded_evaluation_loop(reference, split):
    """validation_noise and train_query's start score share validation_losses: the module's
    validation loss per batch, seeded, the module's mode and torch's random stream kept."""
    from cellweave.mosaic.query import validation_losses

    _, query = split
    model = MosaicModel.load_query_data(reference, query, batch_key="batch")
    module = model.module
    module.train()
    state = torch.get_rng_state()
    groups = [np.arange(0, 40), np.arange(40, 100)]

    def batches():
        for cells in groups:
            b = model.datamodule.batch(torch.as_tensor(cells), sort=True)
            b.total = 100
            yield b

    losses = validation_losses(model, batches(), seed=3)
    assert module.training and torch.equal(torch.get_rng_state(), state)
    assert losses == validation_losses(model, batches(), seed=3)
    assert losses != validation_losses(model, batches(), seed=4)  # sampled latents
    module.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        by_hand = [float(module.objective(b, train=False)["loss"]) for b in batches()]
    # each batch's share of the 100 cells: the shares add up to the mean over all of them
    shares = [x * len(c) / 100 for x, c in zip(by_hand, groups, strict=True)]
    assert losses == pytest.approx(shares, rel=1e-6)


def test_query_early_stopping_ignores_changes_within_the_validation_noise(reference, split):
    from cellweave.mosaic.query import validation_noise

    _, query = split
    model = MosaicModel.load_query_data(reference, query, batch_key="batch")
    n_val = round(0.1 * query.n_obs)
    noise = validation_noise(model, n_val, seed=0)
    assert noise == validation_noise(model, n_val, seed=0) > 0  # seeded
    # a standard error: shrinks as 1 / sqrt(validation cells)
    assert validation_noise(model, 4 * n_val, seed=0) == pytest.approx(noise / 2)
    # and matches the spread of the loss over random validation sets of that size
    rng = np.random.default_rng(1)
    losses = []
    with torch.no_grad():
        for _ in range(12):
            cells = torch.as_tensor(np.sort(rng.choice(model.data.n_cells, n_val, replace=False)))
            b = model.datamodule.batch(cells, sort=True)
            losses.append(float(model.module.objective(b, train=False)["loss"]))
    assert 0.4 < noise / np.std(losses, ddof=1) < 2.5, (noise, np.std(losses, ddof=1))
    start = {k: v.clone() for k, v in model.module.state_dict().items()}
    result = model.train_query(max_epochs=3, batch_size=128, progress=False, random_state=0)
    info = model.query_info
    assert model.train_params["min_delta"] == info["min_delta"] == noise
    # the trained weights are kept only when they beat the start by more than the noise
    kept = all(torch.equal(v, start[k]) for k, v in model.module.state_dict().items())
    assert kept == info["kept_start"]
    assert kept == (not float(result.best_score) < info["start_val_loss"] - noise)
    # an explicit min_delta: plain early stopping, the trained weights kept
    model = MosaicModel.load_query_data(reference, query, batch_key="batch")
    model.train_query(max_epochs=2, batch_size=128, progress=False, min_delta=0.0)
    assert model.query_info["min_delta"] == 0.0 and not model.query_info["kept_start"]
    assert any(bool((p[-1] != 0).any()) for p in model.module.input_shift)

"""Tests of the multi-omics mosaic simulator against its own stored ground truth."""

from __future__ import annotations

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from cellweave.errors import InputError
from cellweave.sim.mosaic import DEFAULT_BATCHES, MODALITIES, simulate_mosaic

FOUR_BATCHES = {
    "cite": ("rna", "protein"),
    "multiome": ("rna", "atac"),
    "atac_only": ("atac",),
    "trimodal": ("rna", "atac", "protein"),
}


@pytest.fixture(scope="module")
def four():
    """(mosaic, full) with all three modalities over four batches."""
    return simulate_mosaic(n_cells=3200, batches=FOUR_BATCHES, return_full=True, random_state=3)


def presence(mdata: md.MuData, mod: str) -> np.ndarray:
    return np.asarray(mdata.obsm[mod]).ravel().astype(bool)


def dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def corr_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching columns of ``a`` and ``b`` (across rows)."""
    a = (a - a.mean(0)) / a.std(0)
    b = (b - b.mean(0)) / b.std(0)
    return (a * b).mean(0)


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


# ----------------------------------------------------------------------------- layout


def check_layout(mdata: md.MuData, batches: dict[str, tuple[str, ...]]) -> None:
    used = [m for m in MODALITIES if any(m in mods for mods in batches.values())]
    assert list(mdata.mod) == used
    assert isinstance(mdata.obs["batch"].dtype, pd.CategoricalDtype)
    assert isinstance(mdata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert list(mdata.obs["batch"].cat.categories) == list(batches)
    assert mdata.obsm["true_latent"].shape == (
        mdata.n_obs,
        mdata.uns["sim"]["params"]["latent_dim"],
    )
    batch = mdata.obs["batch"].astype(str).to_numpy()
    for mod in used:
        expected = np.isin(batch, [b for b, mods in batches.items() if mod in mods])
        np.testing.assert_array_equal(presence(mdata, mod), expected)
        adata = mdata.mod[mod]
        # exactly the measured cells, in the global order, with matching annotations
        assert list(adata.obs_names) == list(mdata.obs_names[expected])
        np.testing.assert_array_equal(adata.obs["batch"].astype(str), batch[expected])
        np.testing.assert_array_equal(
            adata.obs["cell_type"].astype(str), mdata.obs["cell_type"].astype(str)[expected]
        )
        assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
        assert np.all(adata.X.data == np.round(adata.X.data)) and np.all(adata.X.data > 0)
    # cells are grouped by batch
    runs = (batch[1:] != batch[:-1]).sum() + 1
    assert runs == len(batches)


@pytest.mark.parametrize(
    "batches",
    [DEFAULT_BATCHES, FOUR_BATCHES, {"only": ("protein",)}, {"a": ("atac",), "b": ("protein",)}],
    ids=["default", "four", "protein-only", "atac-protein"],
)
def test_layout_matches_batches_spec(batches):
    mdata = simulate_mosaic(
        n_cells=240, batches=batches, n_genes=60, n_peaks=200, n_proteins=10, random_state=0
    )
    check_layout(mdata, batches)
    assert mdata.obs["batch"].value_counts().tolist() == [240 // len(batches)] * len(batches)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(st.sets(st.sampled_from(MODALITIES), min_size=1), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_layout_any_batches(specs, seed):
    batches = {f"b{i}": tuple(sorted(mods)) for i, mods in enumerate(specs)}
    mdata = simulate_mosaic(
        n_cells=100,
        batches=batches,
        n_genes=40,
        n_peaks=120,
        n_proteins=8,
        n_cell_types=3,
        random_state=seed,
    )
    check_layout(mdata, batches)


def test_batch_sizes_fractions():
    mdata = simulate_mosaic(
        n_cells=1001,
        batch_sizes={"paired": 0.5, "rna_only": 0.3, "atac_only": 0.2},
        n_peaks=300,
        n_genes=50,
    )
    counts = mdata.obs["batch"].value_counts()
    assert counts.to_dict() == {"paired": 501, "rna_only": 300, "atac_only": 200}
    assert mdata.uns["sim"]["params"]["batch_sizes"] == {
        "paired": 501,
        "rna_only": 300,
        "atac_only": 200,
    }


def test_full_holds_every_modality_and_agrees_with_mosaic(four):
    mosaic, full = four
    assert full.obs_names.equals(mosaic.obs_names)
    np.testing.assert_array_equal(full.obsm["true_latent"], mosaic.obsm["true_latent"])
    for mod in mosaic.mod:
        assert full.mod[mod].n_obs == full.n_obs
        assert presence(full, mod).all()
        mask = presence(mosaic, mod)
        np.testing.assert_array_equal(full.obs[f"measured_{mod}"].to_numpy(), mask)
        part = full.mod[mod][mosaic.mod[mod].obs_names]
        assert (part.X != mosaic.mod[mod].X).nnz == 0
        np.testing.assert_array_equal(
            part.layers["true_expression"], mosaic.mod[mod].layers["true_expression"]
        )
    # the mosaic itself does not depend on return_full
    alone = simulate_mosaic(n_cells=3200, batches=FOUR_BATCHES, random_state=3)
    for mod in mosaic.mod:
        assert (alone.mod[mod].X != mosaic.mod[mod].X).nnz == 0


# ----------------------------------------------------------------------------- ground truth


def test_true_expression_follows_documented_model(four):
    """The stored means are reproduced from the stored latent, loadings, shifts and factors."""
    _, full = four
    sim = full.uns["sim"]
    z = full.obsm["true_latent"].astype(np.float64)
    batch = full.obs["batch"].astype(str).to_numpy()
    for mod in ("rna", "atac", "protein"):
        adata = full.mod[mod]
        shift = sim["batch_shift"][mod].loc[adata.var_names, batch].to_numpy().T
        eta = z @ adata.varm["true_loadings"].T + adata.var["true_baseline"].to_numpy()
        if mod == "rna":
            prob = np.exp(eta + shift)
            expected = (
                adata.obs["true_library_size"].to_numpy()[:, None] * prob / prob.sum(1)[:, None]
            )
        elif mod == "atac":
            depth = np.log(adata.obs["true_depth"].to_numpy())[:, None]
            expected = 1 / (1 + np.exp(-(eta + shift + depth)))
        else:
            pi = sim["params"]["protein_background_prob"]
            scale = adata.obs["true_library_size"].to_numpy()[:, None] * np.exp(shift)
            scale = scale * adata.var["background_mean"].to_numpy()
            expected = scale * (1 + (1 - pi) * np.exp(eta))
        # float32 storage (and a tanh-based sigmoid): relative 1e-3, absolute 1e-6 for tiny p
        np.testing.assert_allclose(adata.layers["true_expression"], expected, rtol=1e-3, atol=1e-6)


def test_linked_gene_peak_pairs_correlate(four):
    _, full = four
    cells = (full.obs["batch"] == "multiome").to_numpy()
    rna = full.mod["rna"]
    atac = full.mod["atac"]
    gene = np.log(
        rna.layers["true_expression"][cells] / rna.obs["true_library_size"].to_numpy()[cells, None]
    )
    peak = logit(atac.layers["true_expression"][cells]) - np.log(
        atac.obs["true_depth"].to_numpy()[cells, None]
    )
    links = full.uns["sim"]["links"]
    gp = links[links["kind"] == "gene_peak"]
    gi = rna.var_names.get_indexer(gp["source"])
    pi = atac.var_names.get_indexer(gp["target"])
    signed = corr_columns(gene[:, gi], peak[:, pi]) * gp["sign"].to_numpy()
    single = atac.var["n_linked_genes"].to_numpy()[pi] == 1
    rng = np.random.default_rng(0)
    unlinked = np.flatnonzero(atac.var["n_linked_genes"].to_numpy() == 0)
    random_pairs = corr_columns(
        gene[:, rng.integers(rna.n_vars, size=3000)], peak[:, rng.choice(unlinked, size=3000)]
    )
    assert np.median(signed[single]) > 0.75
    assert np.median(signed[~single]) > 0.45  # two genes share the peak's loading
    assert np.median(np.abs(random_pairs)) < 0.4
    assert np.median(signed[single]) > 2 * np.median(np.abs(random_pairs))
    assert 0.1 < (gp["sign"] == -1).mean() < 0.3


def test_protein_tracks_its_gene(four):
    _, full = four
    cells = (full.obs["batch"] == "trimodal").to_numpy()
    prot, rna = full.mod["protein"], full.mod["rna"]
    p = np.log(prot.layers["true_expression"][cells])
    g = np.log(rna.layers["true_expression"][cells])
    own = corr_columns(p, g[:, rna.var_names.get_indexer(prot.var["gene"])])
    other = corr_columns(p, g[:, np.random.default_rng(1).integers(rna.n_vars, size=prot.n_vars)])
    assert np.median(own) > 0.8
    assert np.median(own) > np.median(np.abs(other)) + 0.4
    # protein counts are much larger than RNA counts
    assert prot.X.mean() > 50 * rna.X.mean()


@pytest.mark.parametrize(
    ("mod", "pair"), [("rna", ("cite", "multiome")), ("protein", ("cite", "trimodal"))]
)
def test_batch_shift_recoverable(four, mod, pair):
    mosaic, _ = four
    adata = mosaic.mod[mod]
    stored = mosaic.uns["sim"]["batch_shift"][mod]
    truth = (stored[pair[0]] - stored[pair[1]]).loc[adata.var_names].to_numpy()
    x = dense(adata.X)
    checked = 0
    for cell_type in adata.obs["cell_type"].cat.categories:
        rows = [
            ((adata.obs["batch"] == b) & (adata.obs["cell_type"] == cell_type)).to_numpy()
            for b in pair
        ]
        if min(r.sum() for r in rows) < 40:
            continue
        sums = [x[r].sum(0) for r in rows]
        ok = (sums[0] > 100) & (sums[1] > 100)
        ratio = np.log(sums[0][ok] / rows[0].sum()) - np.log(sums[1][ok] / rows[1].sum())
        ratio -= np.median(ratio - truth[ok])  # library scales: one constant per batch pair
        slope = np.polyfit(truth[ok], ratio, 1)[0]
        assert ok.sum() >= min(100, ok.size // 2)
        assert np.corrcoef(ratio, truth[ok])[0, 1] > 0.95
        assert 0.9 < slope < 1.1
        assert np.std(ratio - truth[ok]) < 0.25
        checked += 1
    assert checked >= 3
    effect = mosaic.uns["sim"]["params"]["batch_effect"]
    assert abs(np.std(stored.to_numpy()) - effect) < 0.1 * effect


def test_batch_effect_parameter_scales_shifts():
    for effect in (0.0, 1.2):
        mdata = simulate_mosaic(n_cells=200, n_genes=400, n_peaks=800, batch_effect=effect)
        shifts = np.concatenate(
            [s.to_numpy().ravel() for s in mdata.uns["sim"]["batch_shift"].values()]
        )
        assert abs(np.std(shifts) - effect) <= 0.05 * effect + 1e-9


def test_library_sizes_match_parameter(four):
    mosaic, _ = four
    rna = mosaic.mod["rna"]
    totals = np.asarray(rna.X.sum(1)).ravel()
    scale = mosaic.uns["sim"]["library_scale"]["rna"]
    for batch in ("cite", "multiome", "trimodal"):
        rows = (rna.obs["batch"] == batch).to_numpy()
        expected = 2000.0 * scale[batch]
        assert totals[rows].mean() == pytest.approx(expected, rel=0.05)
        assert rna.obs["true_library_size"][rows].mean() == pytest.approx(expected, rel=0.05)
    assert np.corrcoef(totals, rna.obs["true_library_size"])[0, 1] > 0.9
    assert 0.5 < np.exp(np.std(np.log(scale.to_numpy()))) < 2.0


@pytest.mark.parametrize("target", [0.03, 0.07, 0.15])
def test_atac_sparsity_matches_target(target):
    mdata = simulate_mosaic(
        n_cells=600, n_genes=100, n_peaks=1500, atac_open_fraction=target, chunk_size=128
    )
    x = mdata.mod["atac"].X
    assert set(np.unique(x.data)) == {1.0}
    assert x.nnz / np.prod(x.shape) == pytest.approx(target, rel=0.1)


def test_cell_types_separable_and_shared(four):
    mosaic, _ = four
    z, labels = mosaic.obsm["true_latent"], mosaic.obs["cell_type"].to_numpy()
    accuracy = cross_val_score(KNeighborsClassifier(n_neighbors=15), z, labels, cv=3).mean()
    assert accuracy > 0.95
    # the continuous state is a real within-type axis: pseudotime is linear in the latent
    t = mosaic.obs["pseudotime"].to_numpy()
    directions = mosaic.uns["sim"]["type_directions"]
    centres = mosaic.uns["sim"]["type_centres"]
    proj = np.einsum(
        "ij,ij->i", z - centres.loc[labels].to_numpy(), directions.loc[labels].to_numpy()
    )
    length = mosaic.uns["sim"]["params"]["trajectory_length"]
    sd = mosaic.uns["sim"]["params"]["within_type_sd"]
    expected = np.sqrt(length**2 / 12 / (length**2 / 12 + sd**2))  # t ~ U(0, 1)
    assert np.corrcoef(proj, t)[0, 1] == pytest.approx(expected, abs=0.03)
    # every type in every batch, with proportions that follow the stored (different) ones
    observed = pd.crosstab(mosaic.obs["batch"], mosaic.obs["cell_type"], normalize="index")
    stored = mosaic.uns["sim"]["cell_type_proportions"].loc[observed.index, observed.columns]
    assert (observed.to_numpy() > 0).all()
    np.testing.assert_allclose(observed.to_numpy(), stored.to_numpy(), atol=0.05)
    assert np.ptp(stored.to_numpy(), axis=0).max() > 0.05


def test_missing_types_absent_from_batch():
    mdata = simulate_mosaic(
        n_cells=600, n_genes=50, n_peaks=200, missing_types={"rna_only": ["type_2", 5]}
    )
    in_batch = mdata.obs.loc[mdata.obs["batch"] == "rna_only", "cell_type"].astype(str)
    assert not set(in_batch) & {"type_2", "type_5"}
    others = mdata.obs.loc[mdata.obs["batch"] != "rna_only", "cell_type"].astype(str)
    assert {"type_2", "type_5"} <= set(others)
    assert list(mdata.uns["sim"]["params"]["missing_types"]["rna_only"]) == ["type_2", "type_5"]


def test_feature_graphs_and_coordinates(four):
    mosaic, _ = four
    names = mosaic.var_names
    links = mosaic.uns["sim"]["links"]
    truth = mosaic.varp["feature_links"]
    assert (truth != truth.T).nnz == 0
    assert set(np.unique(truth.data)) == {-1.0, 1.0}
    i, j = names.get_indexer(links["source"]), names.get_indexer(links["target"])
    np.testing.assert_array_equal(np.asarray(truth[i, j]).ravel(), links["sign"].to_numpy())
    assert truth.nnz == 2 * len(links)
    # the window prior is symmetric, unsigned and contains most true gene-peak links
    prior = mosaic.varp["gene_peak"]
    assert (prior != prior.T).nnz == 0 and set(np.unique(prior.data)) == {1.0}
    gp = (links["kind"] == "gene_peak").to_numpy()
    recall = (np.asarray(prior[i[gp], j[gp]]).ravel() > 0).mean()
    assert recall > 0.85
    # prior pairs really are within the window of the gene body
    atac, rna = mosaic.mod["atac"].var, mosaic.mod["rna"].var
    rows, cols = prior.nonzero()
    gene = names[rows[rows < mosaic.mod["rna"].n_vars]]
    peak = names[cols[rows < mosaic.mod["rna"].n_vars]]
    window = mosaic.uns["sim"]["params"]["prior_window"]
    g, p = rna.loc[gene], atac.loc[peak]
    assert (g["chrom"].to_numpy() == p["chrom"].to_numpy()).all()
    assert (p["end"].to_numpy() >= g["start"].to_numpy() - window).all()
    assert (p["start"].to_numpy() <= g["end"].to_numpy() + window).all()
    # peak names encode their coordinates, as in the real data ("chr1_4914570_4914685")
    assert list(atac.index) == [
        f"{c}_{s}_{e}" for c, s, e in atac[["chrom", "start", "end"]].itertuples(index=False)
    ]
    assert atac.index.is_unique
    # gene-protein prior and truth agree with the protein's gene
    prot = mosaic.mod["protein"].var
    pairs = mosaic.varp["gene_protein"][
        names.get_indexer(prot["gene"]), names.get_indexer(prot.index)
    ]
    assert np.all(np.asarray(pairs).ravel() == 1.0)


# ----------------------------------------------------------------------------- API


def test_reproducible_and_seeded():
    kw = {"n_cells": 300, "n_genes": 50, "n_peaks": 300, "batches": FOUR_BATCHES}
    a, b = simulate_mosaic(random_state=5, **kw), simulate_mosaic(random_state=5, **kw)
    c = simulate_mosaic(random_state=6, **kw)
    g = simulate_mosaic(random_state=np.random.default_rng(5), **kw)
    for mod in a.mod:
        assert (a.mod[mod].X != b.mod[mod].X).nnz == 0
        assert (a.mod[mod].X != c.mod[mod].X).nnz > 0
        assert a.mod[mod].shape == g.mod[mod].shape
    np.testing.assert_array_equal(a.obsm["true_latent"], b.obsm["true_latent"])
    pd.testing.assert_frame_equal(a.uns["sim"]["links"], b.uns["sim"]["links"])


def test_store_means_switch():
    kw = {"n_cells": 100, "n_genes": 30, "n_peaks": 100}
    assert "true_expression" in simulate_mosaic(**kw).mod["atac"].layers
    assert "true_expression" not in simulate_mosaic(store_means=False, **kw).mod["rna"].layers


def test_h5mu_round_trip(tmp_path):
    mdata = simulate_mosaic(
        n_cells=300,
        batches=FOUR_BATCHES,
        n_genes=60,
        n_peaks=400,
        n_proteins=12,
        missing_types={"cite": ["type_1"]},
    )
    path = tmp_path / "mosaic.h5mu"
    with md.set_options(pull_on_update=False):
        mdata.write(path)
        back = md.read_h5mu(path)
    assert back.obs_names.equals(mdata.obs_names)
    for mod in mdata.mod:
        assert (back.mod[mod].X != mdata.mod[mod].X).nnz == 0
        np.testing.assert_array_equal(presence(back, mod), presence(mdata, mod))
        pd.testing.assert_frame_equal(
            back.uns["sim"]["batch_shift"][mod], mdata.uns["sim"]["batch_shift"][mod]
        )
    for key in ("feature_links", "gene_peak", "gene_protein"):
        assert (back.varp[key] != mdata.varp[key]).nnz == 0
    pd.testing.assert_frame_equal(back.uns["sim"]["links"], mdata.uns["sim"]["links"])
    pd.testing.assert_series_equal(back.obs["batch"], mdata.obs["batch"])
    np.testing.assert_array_equal(back.obsm["true_latent"], mdata.obsm["true_latent"])
    assert back.uns["sim"]["params"]["n_cells"] == 300


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batches": {"a": ("rna", "hic")}}, "unknown modality 'hic'"),
        ({"batches": {"a": ()}}, "measures no modality"),
        ({"batches": {}}, "non-empty dict"),
        ({"n_cells": 0}, "n_cells=0"),
        ({"n_cells": 2.5}, "n_cells=2.5"),
        ({"n_cells": 2}, "gets 0 of n_cells=2"),
        ({"batch_sizes": [0.5, 0.5]}, "2 entries but there are 3 batches"),
        ({"batch_sizes": [0.5, 0.4, 0.3]}, "sum to 1.2"),
        ({"batch_sizes": {"paired": 0.5, "x": 0.5}}, "do not match"),
        ({"batch_sizes": [0.5, 0.6, -0.1]}, "positive fractions"),
        ({"n_genes": 0}, "n_genes=0"),
        ({"n_peaks": 0}, "n_peaks=0"),
        ({"batches": {"a": ("protein",)}, "n_proteins": 600}, "exceeds n_genes"),
        ({"atac_open_fraction": 1.0}, r"atac_open_fraction=1.0 .* \(0, 1\)"),
        ({"rna_dispersion": 0}, "rna_dispersion=0"),
        ({"batch_effect": -0.1}, "batch_effect=-0.1"),
        ({"batch_effect": float("nan")}, "batch_effect=nan"),
        ({"links_per_gene": 10.0}, "increase n_peaks"),
        ({"missing_types": {"nope": ["type_0"]}}, "unknown batch 'nope'"),
        ({"missing_types": {"paired": ["type_99"]}}, "unknown cell type 'type_99'"),
        ({"missing_types": {"paired": list(range(8))}}, "every cell type from batch"),
        (
            {"missing_types": {b: ["type_0"] for b in DEFAULT_BATCHES}},
            "'type_0' from every batch",
        ),
        ({"store_means": "yes"}, "store_means"),
        ({"return_full": 1}, "return_full"),
        ({"chunk_size": 0}, "chunk_size=0"),
    ],
)
def test_invalid_input_raises(kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        simulate_mosaic(**{"n_cells": 60, "n_genes": 50, "n_peaks": 300, **kwargs})
    assert "\n" not in str(info.value)

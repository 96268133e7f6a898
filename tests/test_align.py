"""Section alignment: known rigid/non-rigid transforms recovered on the simulator and on a real
PASTE slice; what is written; bad input."""

from __future__ import annotations

import inspect
import json

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cellweave.align import (
    SOLVERS,
    align_sections,
    apply_transform,
    check_options,
    perturb_section,
    procrustes,
)
from cellweave.errors import (
    InputError,
    InvalidOptionError,
    MissingKeyError,
    NoSharedFeaturesError,
)
from cellweave.sim import simulate_spatial


def rotation(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def perturbed(adata, *, angle, shift=(7.0, -4.0), drop=0.1, thin=0.5, seed=0, **kwargs):
    """Rotated, shifted, 10% of spots dropped, counts binomially thinned to half."""
    return perturb_section(
        adata, angle=angle, shift=shift, drop=drop, thin=thin, random_state=seed, **kwargs
    )


def median_error(adata_b, truth, key="spatial_aligned") -> float:
    return float(np.median(np.linalg.norm(adata_b.obsm[key] - truth, axis=1)))


@pytest.fixture(scope="module")
def section():
    spatial, _ = simulate_spatial(n_spots=250, grid="hex", n_genes=80, random_state=3)
    return spatial


@pytest.mark.parametrize("angle", [35.0, 190.0])
def test_rigid_recovery_on_simulator(section, angle):
    moved, truth = perturbed(section, angle=angle, seed=int(angle))
    align_sections(section, moved)
    assert median_error(moved, truth) < 0.5  # hex lattice: spot spacing 1
    info = moved.uns["alignment"]
    assert info["angle"] == pytest.approx(-angle if angle < 180 else 360 - angle, abs=1.0)
    assert info["params"]["alpha"] == 0.1


def test_rigid_recovery_on_real_paste_slice(real_data):
    slice1 = ad.read_h5ad(real_data("paste_breast_slice1.h5ad"))
    moved, truth = perturbed(slice1, angle=70.0, shift=(-12.0, 30.0), seed=1)
    align_sections(slice1, moved)
    assert median_error(moved, truth) < 0.5  # ST array: neighbours at distance ~1


def test_balanced_plan_is_worse_with_dropped_spots(section):
    """Partial transport (the default) leaves the dropped spots' partners unmatched."""
    moved, truth = perturbed(section, angle=20.0, drop=0.3, seed=5)
    partial = align_sections(section, moved, copy=True)
    balanced = align_sections(section, moved, overlap=None, refine=0, copy=True)
    assert median_error(partial, truth) < median_error(balanced, truth)


def test_reflection_only_when_allowed(section):
    moved, truth = perturbed(section, angle=60.0, mirror=True, seed=2)
    align_sections(section, moved, reflection=True)
    assert median_error(moved, truth) < 0.5
    assert np.linalg.det(moved.uns["alignment"]["rotation"]) == pytest.approx(-1.0)
    align_sections(section, moved, reflection=False)
    assert np.linalg.det(moved.uns["alignment"]["rotation"]) == pytest.approx(1.0)
    assert median_error(moved, truth) > 1.0


def test_nonrigid_recovers_a_smooth_warp(section):
    moved, truth = perturbed(section, angle=40.0, warp=1.5, seed=4)
    align_sections(section, moved)
    rigid_error = median_error(moved, truth)
    align_sections(section, moved, nonrigid=True)
    assert rigid_error > 0.5
    assert median_error(moved, truth) < 0.5


def test_perturb_section_truth():
    """The moved copy is the truth rotated about its centroid and shifted; counts thinned."""
    spatial, _ = simulate_spatial(n_spots=60, grid="square", n_genes=40, random_state=0)
    moved, truth = perturb_section(spatial, angle=90.0, shift=(1.0, 2.0), drop=0.5, thin=0.5)
    assert moved.n_obs == 30
    np.testing.assert_allclose(truth, spatial[moved.obs_names].obsm["spatial"])
    centred = truth - truth.mean(axis=0)
    np.testing.assert_allclose(
        moved.obsm["spatial"], centred @ rotation(90.0).T + truth.mean(axis=0) + [1.0, 2.0]
    )
    assert moved.X.sum() < 0.6 * spatial[moved.obs_names].X.sum()


def test_two_modalities_with_feature_pairs(section):
    """B measures other features (renamed, rescaled): matched through feature_pairs."""
    moved, truth = perturbed(section, angle=110.0, seed=6)
    other = ad.AnnData(
        np.log1p(moved.X.toarray()) * 3.0 + 1.0, obsm={"spatial": moved.obsm["spatial"]}
    )
    other.var_names = [f"protein_{g}" for g in moved.var_names]
    with pytest.raises(NoSharedFeaturesError, match="feature_pairs"):
        align_sections(section, other)
    pairs = {g: f"protein_{g}" for g in section.var_names}
    align_sections(section, other, feature_pairs=pairs)
    assert median_error(other, truth) < 0.5


def test_outputs_and_copy(section):
    moved, _ = perturbed(section, angle=10.0, seed=7)
    before = moved.obsm["spatial"].copy()
    out_b = align_sections(section, moved, copy=True, key_added="aligned")
    assert "aligned" not in moved.obsm and "alignment" not in moved.uns
    np.testing.assert_array_equal(moved.obsm["spatial"], before)
    assert "aligned" not in section.obsm  # copy=True changes neither section
    info = out_b.uns["alignment"]
    assert sp.issparse(info["matching"]) and info["matching"].shape == (moved.n_obs, section.n_obs)
    # the matching points at the right spots: the heaviest partner is the spot's original
    rows = np.asarray(info["matching"].argmax(axis=1)).ravel()
    matched = np.asarray(info["matching"].sum(axis=1)).ravel() > 0
    original = section.obs_names.get_indexer(moved.obs_names)
    assert (rows[matched] == original[matched]).mean() > 0.95
    assert 0.6 < info["matched_fraction"] <= 1.0
    assert info["params"]["key_added"] == "aligned"
    np.testing.assert_allclose(apply_transform(out_b), out_b.obsm["aligned"])


def test_subsampled_large_sections(section):
    moved, truth = perturbed(section, angle=25.0, seed=8)
    align_sections(section, moved, max_spots=150)
    assert median_error(moved, truth) < 0.5
    assert moved.obsm["spatial_aligned"].shape == (moved.n_obs, 2)
    # the final matching is made on every spot, not only on the 150 subsampled
    matching = moved.uns["alignment"]["matching"]
    assert (matching.getnnz(axis=1) > 0).sum() > 150


def test_structure_only_without_any_shared_feature(section):
    """Modality-agnostic: no feature names in common, only geometry + expression ranks."""
    moved, truth = perturbed(section, angle=145.0, seed=9)
    moved.var_names = [f"feature_{i}" for i in range(moved.n_vars)]
    align_sections(section, moved, structure_only=True)
    assert median_error(moved, truth) < 0.5


def test_procrustes_recovers_known_transform():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(30, 2))
    target = 2.0 * source @ rotation(33.0).T + np.array([3.0, -1.0])
    fit = procrustes(np.eye(30), target, source, scale=True)
    assert fit.angle == pytest.approx(33.0)
    assert fit.scale == pytest.approx(2.0)
    np.testing.assert_allclose(fit(source), target, atol=1e-10)


def test_missing_coordinates(section):
    moved = section.copy()
    del moved.obsm["spatial"]
    with pytest.raises(MissingKeyError, match="spatial"):
        align_sections(section, moved)


def test_no_shared_genes(section):
    other = section.copy()
    other.var_names = [f"x{i}" for i in range(other.n_vars)]
    with pytest.raises(NoSharedFeaturesError, match="structure_only"):
        align_sections(section, other)


def test_too_large_problem_is_refused_before_allocating():
    n = 10_050  # a 10050 x 10050 distance matrix exceeds the limit
    rng = np.random.default_rng(0)
    big = ad.AnnData(sp.random(n, 5, density=0.5, format="csr", random_state=0, dtype=np.float32))
    big.X.data[:] = 1.0
    big.obsm["spatial"] = rng.random((n, 2)) * 100
    with pytest.raises(InputError, match="subsample"):
        align_sections(big, big.copy(), max_spots=n)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 2.0}, "alpha"),
        ({"overlap": 0.0}, "overlap"),
        ({"rigid": False}, "nothing to fit"),
        ({"refine": -1}, "refine"),
        ({"max_spots": 3}, "max_spots"),
    ],
)
def test_bad_options(section, kwargs, match):
    with pytest.raises(InputError, match=match):
        align_sections(section, section.copy(), **kwargs)


def test_coordinate_dimensions_must_agree(section):
    other = section.copy()
    other.obsm["spatial"] = np.c_[other.obsm["spatial"], np.zeros(other.n_obs)]
    with pytest.raises(InputError, match="same number of coordinate columns"):
        align_sections(section, other)


# --------------------------------------------------------------------------------------------
# option checks through the solver registry; what is written under key_added; copy
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"alpha": "abc"}, ("alpha='abc'", "[0, 1]")),
        ({"refine": 2.5}, ("refine=2.5", "integer >= 0")),
        ({"reflection": "yes"}, ("reflection='yes'", "true or false")),
        ({"n_init": 0}, ("n_init=0", ">= 1")),
        ({"overlap": 1.5}, ("overlap=1.5",)),
        ({"epsilon": 0.0}, ("epsilon=0.0", "> 0")),
        ({"nonrigid_bandwidth": 0.0}, ("nonrigid_bandwidth=0.0", "> 0")),
        ({"nonrigid_smoothness": float("nan")}, ("nonrigid_smoothness=nan",)),
        ({"max_spots": 9}, ("max_spots=9", ">= 10")),
        ({"rigid": "no"}, ("rigid='no'",)),
        ({"structure_only": 1}, ("structure_only=1",)),
    ],
)
def test_invalid_options_are_one_line_before_any_work(section, kwargs, words):
    """Checked before the inputs: a section without coordinates still gets the option error."""
    bare = section.copy()
    del bare.obsm["spatial"]
    with pytest.raises(InvalidOptionError) as info:
        align_sections(section, bare, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(InvalidOptionError, match="unknown option 'bogus'") as info:
        check_options({"refine": 2, "bogus": 1})
    assert "valid options: " in str(info.value) and "nonrigid_bandwidth" in str(info.value)
    assert check_options({"refine": 2.0, "overlap": None, "alpha": 1}) == {
        "refine": 2,
        "overlap": None,
        "alpha": 1.0,
    }


def test_registry_declares_every_solver_option_with_the_defaults_of_align_sections():
    assert list(SOLVERS) == ["fgw", "structure", "rigid", "nonrigid"]
    assert [SOLVERS[n].kind for n in SOLVERS] == ["matching", "matching", "transform", "transform"]
    general = {"spatial_key", "genes", "feature_pairs", "layer", "random_state", "device"}
    general |= {"key_added", "copy"}
    signature = inspect.signature(align_sections).parameters
    keywords = {n for n, p in signature.items() if p.kind is p.KEYWORD_ONLY} - general
    declared = {}
    for name in SOLVERS:
        for option in SOLVERS[name].options.values():
            declared[option.name] = option.default
    declared.update({"rigid": True, "nonrigid": False, "structure_only": False})
    assert keywords == set(declared)
    for key, default in declared.items():
        assert signature[key].default == default, key


def fresh(adata):
    """A copy with only the coordinates in obsm and nothing in uns (the module's section is
    aligned in place by the tests above)."""
    out = adata.copy()
    for key in set(out.obsm) - {"spatial"}:
        del out.obsm[key]
    out.uns.clear()
    return out


def test_key_added_names_everything_written(section):
    reference = fresh(section)
    moved, truth = perturbed(reference, angle=30.0, seed=10)
    assert align_sections(reference, moved, key_added="xy") is None  # copy=False: in place
    assert "spatial_aligned" not in moved.obsm and "spatial_aligned" not in moved.uns
    assert median_error(moved, truth, key="xy") < 0.5
    np.testing.assert_array_equal(reference.obsm["xy"], section.obsm["spatial"])
    entry = moved.uns["xy"]
    assert entry is moved.uns["alignment"]  # the same entry, under the legacy key too
    assert entry["params"]["key_added"] == "xy"
    json.dumps(entry["params"])  # JSON-safe
    assert entry["params"]["overlap"] == 0.7 and entry["params"]["epsilon"] == "exact"
    np.testing.assert_allclose(apply_transform(moved, key="xy"), moved.obsm["xy"])
    with pytest.raises(InputError, match="uns\\['nope'\\]"):
        apply_transform(moved, key="nope")


def test_copy_returns_the_aligned_copy_of_b_only(section):
    reference = fresh(section)
    moved, _ = perturbed(reference, angle=75.0, seed=11)
    out = align_sections(reference, moved, copy=True)
    assert isinstance(out, ad.AnnData) and out is not moved
    assert out.n_obs == moved.n_obs and "spatial_aligned" not in moved.obsm
    assert "spatial_aligned" not in reference.obsm
    align_sections(reference, moved)  # in place: the same numbers
    np.testing.assert_array_equal(out.obsm["spatial_aligned"], moved.obsm["spatial_aligned"])


def test_balanced_plan_is_reported_as_balanced(section):
    moved, _ = perturbed(section, angle=15.0, seed=12)
    out = align_sections(section, moved, overlap=None, copy=True)
    assert out.uns["alignment"]["fgw_start"] == "balanced"
    assert out.uns["alignment"]["params"]["overlap"] == "balanced"

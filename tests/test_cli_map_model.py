"""``cellweave map --method attention --save-model DIR`` and ``cellweave map --model DIR``:
the saved attention mapper maps a section again, and a new one, by inference only."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pytest

from cellweave import io
from cellweave.cli.map import map_cmd
from cellweave.metrics import fraction_scores
from cellweave.sim import simulate_spatial

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args: str) -> int:
    """Run the command as `cellweave map` does: CellweaveErrors -> one line, exit 2."""
    from cellweave.cli import main
    from cellweave.cli.app import cli

    if "map" not in cli.commands:
        cli.add_command(map_cmd)
    return main(["map", *args])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Two sections of one simulated tissue (first: training, second: new), the reference,
    and the model trained on the first saved with --save-model."""
    root = tmp_path_factory.mktemp("map_model")
    sp, ref = simulate_spatial(n_spots=300, n_genes=60, n_ref_cells=300, random_state=3)
    for adata in (sp, ref):
        del adata.uns["sim"]
    first, second = sp[:150].copy(), sp[150:].copy()
    for name, adata in (("sc", ref), ("first", first), ("second", second)):
        io.write(adata, root / f"{name}.h5ad")
    code = invoke(
        *(str(root / f) for f in ("sc.h5ad", "first.h5ad")),
        "-o",
        str(root / "trained.h5ad"),
        "--method",
        "attention",
        "--cell-type-key",
        "cell_type",
        "--genes",
        "none",
        "--device",
        "cpu",
        "--save-model",
        str(root / "model"),
    )
    assert code == 0
    return root


def _fractions(path) -> tuple[ad.AnnData, np.ndarray]:
    adata = ad.read_h5ad(path)
    return adata, np.asarray(adata.obsm["cell_type_fractions"], dtype=float)


def test_save_model_writes_a_model_folder(saved):
    names = sorted(p.name for p in (saved / "model").iterdir())
    assert names == ["arrays.npz", "model.json", "weights.pt"]
    meta = json.loads((saved / "model" / "model.json").read_text())
    assert meta["cell_type_key"] == "cell_type" and len(meta["genes"]) == 60


def test_loaded_model_reproduces_the_saved_one(saved):
    out = saved / "again.h5ad"
    sc, first = str(saved / "sc.h5ad"), str(saved / "first.h5ad")
    code = invoke(sc, first, "-o", str(out), "--model", str(saved / "model"), "--genes", "all")
    assert code == 0
    trained, before = _fractions(saved / "trained.h5ad")
    again, after = _fractions(out)
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert list(again.obsm["cell_type_fractions"].columns) == list(
        trained.obsm["cell_type_fractions"].columns
    )
    np.testing.assert_allclose(again.obsm["X_cellweave"], trained.obsm["X_cellweave"], atol=1e-5)
    assert again.obsm["predicted_genes"].shape == (150, 60)
    assert again.uns["mapping"]["params"]["model"].endswith("model")


def test_loaded_model_maps_a_new_section(saved):
    out = saved / "second_out.h5ad"
    sc, second = str(saved / "sc.h5ad"), str(saved / "second.h5ad")
    code = invoke(sc, second, "-o", str(out), "--model", str(saved / "model"))
    assert code == 0
    mapped, pred = _fractions(out)
    truth = mapped.obsm["true_fractions"]
    frame = mapped.obsm["cell_type_fractions"]
    held_out = fraction_scores(truth, frame[truth.columns])
    trained, _ = _fractions(saved / "trained.h5ad")
    on_train = fraction_scores(
        trained.obsm["true_fractions"],
        trained.obsm["cell_type_fractions"][truth.columns],
    )
    assert pred.shape[0] == 150
    assert held_out["rmse"] < 0.15 and held_out["rmse"] < 1.5 * on_train["rmse"]
    assert held_out["pcc_mean"] > 0.8


def _bad(saved, tmp_path, capsys, *args: str) -> str:
    code = invoke(*args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return err.lower()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--method", "ot"), ("--model", "attention")),
        (("--param", "max_epochs=3"), ("--model", "--param")),
        (("--save-model", "{tmp}/m2"), ("--model", "--save-model")),
        (("--evaluate",), ("--model", "--evaluate")),
    ],
)
def test_model_with_a_training_option_is_refused(saved, tmp_path, capsys, extra, words):
    extra = tuple(e.format(tmp=tmp_path) for e in extra)
    sc, sp = str(saved / "sc.h5ad"), str(saved / "second.h5ad")
    err = _bad(saved, tmp_path, capsys, sc, sp, "-o", str(tmp_path / "o.h5ad"), "--model",
               str(saved / "model"), *extra)  # fmt: skip
    assert all(w in err for w in words)
    assert not (tmp_path / "o.h5ad").exists()


def test_model_folder_missing_or_not_a_model(saved, tmp_path, capsys):
    sc, sp = str(saved / "sc.h5ad"), str(saved / "second.h5ad")
    out = str(tmp_path / "o.h5ad")
    err = _bad(saved, tmp_path, capsys, sc, sp, "-o", out, "--model", str(tmp_path / "none"))
    assert "does not exist" in err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model.json").write_text("{}")
    err = _bad(saved, tmp_path, capsys, sc, sp, "-o", out, "--model", str(tmp_path / "junk"))
    assert "not a saved model" in err


def test_section_or_reference_lacking_the_model_genes(saved, tmp_path, capsys):
    section = ad.read_h5ad(saved / "second.h5ad")[:, 10:].copy()
    io.write(section, tmp_path / "fewer.h5ad")
    sc, out, model = str(saved / "sc.h5ad"), str(tmp_path / "o.h5ad"), str(saved / "model")
    err = _bad(saved, tmp_path, capsys, sc, str(tmp_path / "fewer.h5ad"), "-o", out,
               "--model", model)  # fmt: skip
    assert "lacks 10 of the model's 60 genes" in err and "section" in err
    ref = ad.read_h5ad(saved / "sc.h5ad")[:, 5:].copy()
    io.write(ref, tmp_path / "ref.h5ad")
    sp = str(saved / "second.h5ad")
    err = _bad(saved, tmp_path, capsys, str(tmp_path / "ref.h5ad"), sp, "-o", out,
               "--model", model)  # fmt: skip
    assert "lacks 5 of the model's 60 genes" in err and "reference" in err


def test_reference_without_the_model_types(saved, tmp_path, capsys):
    ref = ad.read_h5ad(saved / "sc.h5ad")
    del ref.obs["cell_type"]
    io.write(ref, tmp_path / "ref.h5ad")
    sp, out = str(saved / "second.h5ad"), str(tmp_path / "o.h5ad")
    err = _bad(saved, tmp_path, capsys, str(tmp_path / "ref.h5ad"), sp, "-o", out,
               "--model", str(saved / "model"))  # fmt: skip
    assert "cell_type" in err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--save-model", "{tmp}/m"), ("--save-model", "attention")),
        (("--method", "attention", "--save-model", "{tmp}/m", "--evaluate"), ("--evaluate",)),
        (("--method", "attention", "--save-model", "{model}"), ("not empty",)),
    ],
)
def test_save_model_refused_where_there_is_no_model(saved, tmp_path, capsys, extra, words):
    extra = tuple(e.format(tmp=tmp_path, model=saved / "model") for e in extra)
    sc, sp = str(saved / "sc.h5ad"), str(saved / "first.h5ad")
    err = _bad(saved, tmp_path, capsys, sc, sp, "-o", str(tmp_path / "o.h5ad"), *extra)
    assert all(w in err for w in words)
    assert not (tmp_path / "m").exists()


def test_model_maps_without_the_reference_exactly_as_with_it(saved):
    """The model folder carries its reference cells: `--model DIR SP` writes the same
    mapping, fractions, latent and predicted genes as `--model DIR SC SP`."""
    model, sc, second = str(saved / "model"), str(saved / "sc.h5ad"), str(saved / "second.h5ad")
    with_sc, without = saved / "with_sc.h5ad", saved / "without_sc.h5ad"
    assert invoke(sc, second, "-o", str(with_sc), "--model", model, "--genes", "all") == 0
    assert invoke(second, "-o", str(without), "--model", model, "--genes", "all") == 0
    a, b = ad.read_h5ad(with_sc), ad.read_h5ad(without)
    for key in ("cell_type_fractions", "X_cellweave", "predicted_genes"):
        np.testing.assert_array_equal(np.asarray(b.obsm[key]), np.asarray(a.obsm[key]))
    plan_a, plan_b = a.uns["mapping"]["plan"], b.uns["mapping"]["plan"]
    assert (plan_a != plan_b).nnz == 0 and plan_a.nnz > 0
    assert list(a.uns["mapping"]["cell_names"]) == list(b.uns["mapping"]["cell_names"])
    np.testing.assert_array_equal(b.uns["mapping"]["cell_totals"], a.uns["mapping"]["cell_totals"])


def test_loaded_without_reference_the_api_maps_as_with_it(saved):
    from cellweave.mapping.attention import AttentionMapper

    ref, section = ad.read_h5ad(saved / "sc.h5ad"), ad.read_h5ad(saved / "second.h5ad")
    alone = AttentionMapper.load(saved / "model")
    assert list(alone.adata_sc.obs_names) == list(ref.obs_names)
    assert list(alone.adata_sc.obs["cell_type"]) == list(ref.obs["cell_type"])
    with_ref = AttentionMapper.load(saved / "model", ref)
    np.testing.assert_array_equal(
        alone.map(section).plan.toarray(), with_ref.map(section).plan.toarray()
    )


def test_model_without_its_reference_cells_needs_sc(saved, tmp_path, capsys):
    from cellweave.mapping.attention import AttentionMapper

    ref = ad.read_h5ad(saved / "sc.h5ad")
    AttentionMapper.load(saved / "model", ref).save(tmp_path / "bare", reference=False)
    sp, out = str(saved / "second.h5ad"), str(tmp_path / "o.h5ad")
    err = _bad(saved, tmp_path, capsys, sp, "-o", out, "--model", str(tmp_path / "bare"))
    assert "without its reference cells" in err and "pass the reference" in err
    err = _bad(saved, tmp_path, capsys, sp, "-o", out, "--model", str(saved / "model"),
               "--cell-type-key", "other")  # fmt: skip
    assert "'cell_type'" in err and "pass the reference" in err
    err = _bad(saved, tmp_path, capsys, sp, "-o", out, "--model", str(saved / "model"),
               "--genes", "NOT_A_GENE")  # fmt: skip
    assert "absent from the model's reference" in err
    assert not (tmp_path / "o.h5ad").exists()

"""One rule names the per-spot outputs of ``map_cells`` (``mapping.output_keys``): the
mapping writes under it, ``pl.mapping_plots`` draws what it names, and the demo maps
fractions with the library's default fractions method."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import pytest

import cellweave as cw
from cellweave.errors import InvalidOptionError
from cellweave.mapping import FRACTIONS_METHOD, output_keys
from cellweave.sim import simulate_spatial


def test_output_keys_default_and_key_added():
    default = {"fractions_key": "cell_type_fractions", "views_key": "view_weights"}
    assert output_keys(None) == default
    assert output_keys("run") == {"fractions_key": "run_fractions", "views_key": "run_view_weights"}
    with pytest.raises(InvalidOptionError, match="key_added"):
        output_keys("")


@pytest.fixture(scope="module")
def attention_run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp_, ref = simulate_spatial(n_spots=80, n_genes=40, n_ref_cells=120, random_state=2)
        panel = sp_[:, 5:].copy()
        cw.tl.map_cells(ref, panel, method="attention", cell_type_key="cell_type", key_added="run")
    return panel


def test_map_cells_writes_under_output_keys(attention_run):
    keys = output_keys("run")
    assert set(keys.values()) <= set(attention_run.obsm)
    # nothing under the default names when key_added was given
    assert not set(output_keys(None).values()) & set(attention_run.obsm)
    views = attention_run.obsm[keys["views_key"]]
    assert views.to_numpy().sum(axis=1) == pytest.approx(1.0, abs=1e-5)


def test_mapping_plots_draws_what_output_keys_names(attention_run, tmp_path):
    written = cw.pl.mapping_plots(attention_run, tmp_path / "p.png", **output_keys("run"))
    assert set(written) == {"fractions", "views", "truth"}
    assert all(path.stat().st_size > 1000 for path in written.values())
    # the default keys find nothing of a key_added run
    assert cw.pl.mapping_plots(attention_run, tmp_path / "q.png") == {}


def test_demo_maps_fractions_with_the_default_method(tmp_path):
    from cellweave.cli import demo

    ctx = demo.DemoContext(out=tmp_path, n_spots=150, n_cells=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        demo.section_spatial_data(ctx)
        rows = {measure: value for _, measure, value in demo.section_mapping(ctx)}
    assert rows["method (genes / fractions)"].endswith(f" / {FRACTIONS_METHOD}")
    label = f"cell-type fractions ({FRACTIONS_METHOD}): RMSE / mean per-type Pearson / JS"
    rmse, pcc, js = (float(v) for v in rows[label].split(" / "))
    # the simulator's truth: attention is well under `gradient`'s ~0.15 RMSE there
    assert rmse < 0.12 and pcc > 0.7 and 0 <= js < 0.2
    assert (tmp_path / "mapping_fractions.png").stat().st_size > 1000

"""Benchmark plumbing of the mapping rows run apart: DestVI's side file joins the
deconvolution table, its convergence measure, the scale rows' columns and the ablation
section's run lines."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_deconv
from _ablations import run_lines
from bench_destvi import flattening
from bench_mapping_scale import row


def test_side_files_join_the_deconvolution_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_deconv, "RESULTS", tmp_path)
    folder = tmp_path / "deconv"
    folder.mkdir()
    (folder / "mop_seed0.json").write_text(json.dumps({"ot": {"rmse": 0.2}}))
    (folder / "destvi_mop_seed0.json").write_text(json.dumps({"destvi_e300": {"rmse": 0.1}}))
    (folder / "destvi_sim_seed1.json").write_text(json.dumps({"destvi_e300": {"rmse": 0.3}}))
    assert bench_deconv.load_cache("mop") == {
        "0": {"ot": {"rmse": 0.2}, "destvi_e300": {"rmse": 0.1}}
    }
    assert bench_deconv.load_cache("sim") == {"1": {"destvi_e300": {"rmse": 0.3}}}


def test_flattening_tells_a_flat_end_from_a_falling_one():
    epochs = np.arange(300)
    flat = list(1000 * np.exp(-epochs / 20) + 500)  # converged long before the end
    falling = list(1000 - 2.0 * epochs)  # still dropping as fast as ever
    f, g = flattening(flat), flattening(falling)
    assert f["last_vs_previous_window"] == pytest.approx(0.0, abs=1e-3)
    assert f["share_of_total_drop_in_last_window"] < 0.01
    assert g["share_of_total_drop_in_last_window"] > 0.15
    assert flattening(flat[:60]) == {}  # too short to tell


def test_scale_row_states_cell_types_options_and_what_the_model_chose():
    args = Namespace(method="attention", spots=10, cells=5, genes=3, cell_type_key=None)
    result = {"seconds": 1.0, "cpu_seconds": 2.0, "peak_rss_gb": 9.5, "epochs": 30}
    line = row(args, result, {})
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:6] == ["attention", "10 x 5 x 3", "no", "`(defaults)`", "30", "-"]
    assert cells[9] == "NO"  # 9.5 GB misses the 8 GB target
    args.cell_type_key = "cell_type"
    line = row(args, {**result, "pseudo_spots": 4000}, {"pseudo_spots": 4000})
    assert '| yes | `{"pseudo_spots": 4000}` | 30 | 4000 |' in line


def test_ablation_section_states_the_run(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lines = run_lines(load_start=7.25)
    assert lines[0].startswith("- command: `")
    assert "load average" in lines[1] and "7.2 when the run started" in lines[1]
    assert lines[2].startswith("- versions: Python") and "cellweave" in lines[2]
    assert lines[-1] == "- threads: OMP_NUM_THREADS=1"


def test_deconv_ablations_run_every_variant_and_report_the_differences(monkeypatch):
    import pandas as pd

    import _ablations

    truth = pd.DataFrame({"a": [0.5, 1.0], "b": [0.5, 0.0]}, index=["s0", "s1"])
    seen = []

    def fake_run(variant, reference, spots, **kwargs):
        seen.append((variant, kwargs["seed"]))
        return truth if variant == "attention" else truth[["b", "a"]].set_axis(["a", "b"], axis=1)

    monkeypatch.setattr(bench_deconv, "truth_set", lambda *a: (None, None, truth, 2.0))
    monkeypatch.setattr(bench_deconv, "run_method", fake_run)
    table = _ablations.deconv_ablations("mop", [0, 1], Path("."))
    assert seen == [(v, s) for s in (0, 1) for v in _ablations.ABLATIONS]
    assert table.loc["attention", "rmse"] == pytest.approx(0.0)
    assert table.loc["attention_no_platform", "rmse"] > 0.3
    lines = _ablations.deconv_lines("mop", table, [0, 1])
    assert lines[0].startswith("### Fractions on `mop`") and "seeds 0, 1" in lines[0]
    assert "rmse - attention" in lines[2]

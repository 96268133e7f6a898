"""Progress of long jobs (issue 18): logger lines off a terminal, bars on one, the training
history, the CLI's --quiet / -v, and a ``cellweave --help`` that loads no heavy module."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console

from cellweave import _progress
from cellweave.train import CellweaveModule, fit


class Line(CellweaveModule):
    """Least squares ``y ~ x w``; validation on the same rows."""

    def __init__(self) -> None:
        super().__init__(lr=0.05)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])
        self.w = torch.nn.Parameter(torch.zeros(3))

    def loss(self, index):
        return ((self.x[index] @ self.w - self.y[index]) ** 2).mean()

    def validation_loss(self, index):
        return ((self.x[index] @ self.w - self.y[index]) ** 2).sum()


EPOCH = re.compile(
    r"training Line epoch (\d+)/(\d+): loss ([\d.e+-]+), val_loss ([\d.e+-]+); "
    r"(\S+) elapsed, ETA (\S+)"
)


@pytest.fixture
def off_terminal(monkeypatch):
    monkeypatch.delenv("CELLWEAVE_PROGRESS", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not _progress.progress_enabled()


def _fit_lines(caplog, **kwargs):
    with caplog.at_level(logging.INFO, logger="cellweave"):
        result = fit(Line(), n_train=64, n_val=64, batch_size=16, seed=0, **kwargs)
    lines = [r.getMessage() for r in caplog.records if r.name == "cellweave"]
    return result, lines


def test_off_terminal_one_line_per_epoch_with_val_loss_and_eta(off_terminal, caplog):
    result, lines = _fit_lines(caplog, max_epochs=5, early_stopping=False)
    epochs = [m for m in map(EPOCH.search, lines) if m]
    assert len(epochs) == 5, lines
    assert [int(m.group(1)) for m in epochs] == [1, 2, 3, 4, 5]
    assert {int(m.group(2)) for m in epochs} == {5}
    assert epochs[-1].group(6) in ("0.0s", "0s")  # nothing left after the last epoch
    # the history has one row per epoch and the numbers the lines show
    history = result.history
    assert list(history.index) == [0, 1, 2, 3, 4]
    assert {"loss", "val_loss", "seconds"} <= set(history.columns)
    logged = np.array([[float(m.group(3)), float(m.group(4))] for m in epochs])
    np.testing.assert_allclose(history[["loss", "val_loss"]].to_numpy(), logged, rtol=1e-3)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert result.best_score == pytest.approx(history["val_loss"].min())
    assert (history["seconds"] > 0).all()


def test_history_without_validation_has_nan_val_loss(off_terminal, caplog):
    result = fit(Line(), n_train=64, n_val=None, max_epochs=3, seed=0)
    assert len(result.history) == 3
    assert result.history["val_loss"].isna().all()
    assert result.history["loss"].notna().all()


def test_long_epochs_log_steps_between_epoch_lines(off_terminal, caplog, monkeypatch):
    from cellweave.train import callbacks

    monkeypatch.setattr(callbacks, "HEARTBEAT", 0.0)  # every step is "long"
    _, lines = _fit_lines(caplog, max_epochs=1, early_stopping=False)
    steps = [line for line in lines if "step " in line and "(running)" in line]
    assert len(steps) >= 3, lines  # 4 steps of 16 rows
    assert "step 1/4" in steps[0] and "ETA" in steps[0]


def test_fits_inside_an_evaluation_loop_log_epochs_as_debug(off_terminal, caplog):
    with caplog.at_level(logging.DEBUG, logger="cellweave"):
        for _ in _progress.track(["mf"], description="evaluating", label=str):
            fit(Line(), n_train=64, n_val=64, max_epochs=4, early_stopping=False, seed=0)
    epochs = [r for r in caplog.records if EPOCH.search(r.getMessage())]
    assert len(epochs) == 4
    assert {r.levelno for r in epochs} == {logging.DEBUG}  # the job's line names the work
    assert caplog.records[0].getMessage().startswith("evaluating mf (1/1)")


def test_a_terminal_gets_a_bar_and_no_log_lines(monkeypatch, caplog):
    out = io.StringIO()
    monkeypatch.setattr(_progress, "console", Console(file=out, force_terminal=True, width=150))
    _, lines = _fit_lines(caplog, max_epochs=3, early_stopping=False, progress=True)
    assert not [line for line in lines if "epoch" in line]
    text = out.getvalue()
    assert "training Line" in text and "val_loss" in text


def test_track_names_each_item_and_heartbeat_names_a_long_phase(off_terminal, caplog, monkeypatch):
    jobs = [(seed, name) for seed in (0, 1) for name in ("mf", "ae")]
    with caplog.at_level(logging.INFO, logger="cellweave"):
        for _ in _progress.track(
            jobs, description="evaluating", label=lambda j: f"{j[1]} seed {j[0]}"
        ):
            pass
        monkeypatch.setattr(_progress, "HEARTBEAT", 0.05)
        with _progress.status("aligning sections"):
            time.sleep(0.6)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[1].startswith("evaluating ae seed 0 (2/4)") and "ETA" in lines[1]
    assert any(line.startswith("evaluating mf seed 1 (3/4)") for line in lines)
    assert any(line.startswith("still aligning sections (") for line in lines), lines
    assert lines[-1].startswith("aligning sections: done in")


def test_duration_text():
    assert _progress.duration(4.21) == "4.2s"
    assert _progress.duration(75.2) == "1m15s"
    assert _progress.duration(3700) == "1h01m"
    assert _progress.duration(float("nan")) == "?"


# --- the CLI: --quiet, -v ------------------------------------------------------------------
def _impute_args(tmp_path):
    import anndata as ad
    from scipy import sparse

    rng = np.random.default_rng(0)
    adata = ad.AnnData(sparse.csr_matrix(rng.poisson(2.0, (40, 12)).astype(np.float32)))
    adata.obs_names = [f"s{i}" for i in range(40)]
    adata.var_names = [f"g{j}" for j in range(12)]
    adata.obsm["spatial"] = np.array([(i % 8, i // 8) for i in range(40)], dtype=float)
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    return ["impute", str(path), "-o", str(tmp_path / "out.h5ad"), "--overwrite", "--method",
            "mf", "--param", "max_epochs=3", "--param", "alpha=0.1",
            "--param", "spatial_weight=0.1", "--device", "cpu"]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "epoch_lines", "debug_lines"), [([], True, False), (["-q"], False, False),
                                              (["-v"], True, True)]
)  # fmt: skip
def test_cli_quiet_and_verbose(tmp_path, capsys, off_terminal, flags, epoch_lines, debug_lines):
    from cellweave.cli import main

    code = main([*flags, *_impute_args(tmp_path)])
    captured = capsys.readouterr()
    assert not logging.getLogger("cellweave").handlers  # main() leaves no handler behind
    assert code == 0, captured.err
    assert "wrote" in captured.out
    err = captured.err
    assert (
        bool(re.search(r"^\d\d:\d\d:\d\d training \w+ epoch 1/3: loss", err, re.M)) == epoch_lines
    )
    # -v: the phases' start lines (debug)
    assert ("imputing with mf ..." in err) == debug_lines, err
    if flags == ["-q"]:
        assert err.strip() == ""


def test_import_of_the_cli_loads_no_heavy_module():
    heavy = ["torch", "lightning", "scanpy", "anndata", "ot", "matplotlib", "pandas", "scipy"]
    code = (
        "import sys, cellweave.cli, cellweave.cli.app; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# --- pl.history --------------------------------------------------------------------------
def test_pl_history_is_log_scale_when_losses_span_decades(tmp_path):
    from matplotlib.image import imread

    from cellweave.cli._common import use_agg_backend
    from cellweave.plotting import history

    use_agg_backend()
    epochs = np.arange(30)
    wide = pd.DataFrame(
        {"loss": 1000 * 0.7**epochs, "val_loss": 1200 * 0.72**epochs, "kl": 5 + 0 * epochs,
         "seconds": 0.1}, index=pd.Index(epochs, name="epoch"))  # fmt: skip
    png = tmp_path / "history.png"
    fig = history(wide, save=png)
    assert fig.axes[0].get_yscale() == "log"
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["train loss", "validation loss", "kl"]  # seconds is not a loss
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    narrow = wide.assign(loss=2 + 0.01 * epochs, val_loss=2.1, kl=1.0)
    assert history(narrow, save=tmp_path / "narrow.png").axes[0].get_yscale() == "linear"
    # a FitResult (or a model) is read through its .history
    result = fit(Line(), n_train=64, n_val=64, max_epochs=2, seed=0, progress=False)
    assert history(result, save=tmp_path / "fit.png").axes[0].get_lines()


def test_pl_history_refuses_an_untrained_history():
    from cellweave.errors import InputError
    from cellweave.plotting import history

    with pytest.raises(InputError, match="empty"):
        history(pd.DataFrame())


def test_io_names_resolve_lazily():
    import cellweave.io as cio

    for name in cio.__all__:
        assert getattr(cio, name) is not None
    assert set(dir(cio)) >= set(cio.__all__)

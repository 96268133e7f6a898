"""Peers of the deconvolution benchmark (imports guarded: benchmarks only).

Each wrapper has the signature ``fractions(reference, spots, *, cell_type_key, random_state,
cells_per_spot) -> DataFrame`` (spots x cell types, rows sum to 1), takes raw counts in
``X`` of both, runs on CPU and follows the peer's documented tutorial:

``destvi``
    scvi-tools (``DestVI`` tutorial): ``CondSCVI.setup_anndata(labels_key=...)``,
    ``CondSCVI(weight_obs=False).train()`` (its default 300 epochs; ``prior="normal"``, its
    default, given explicitly, and its VampPrior handed over as tensors: two fixes for
    scvi-tools 1.4.2's ``from_rna_model``), then
    ``DestVI.from_rna_model`` on the spots and ``train(max_epochs=2500)``;
    ``get_proportions()``.
``cell2location``
    cell2location (its tutorial): ``filter_genes(cell_count_cutoff=5,
    cell_percentage_cutoff2=0.03, nonz_mean_cutoff=1.12)`` on the reference,
    ``RegressionModel.train(max_epochs=250)``, signatures = ``means_per_cluster_mu_fg``
    (posterior of 1000 samples); ``Cell2location(N_cells_per_location=<mean cells per
    spot>, detection_alpha=20)`` trained full-batch (``batch_size=None, train_size=1``) for
    ``epochs`` (the tutorial's :data:`C2L_EPOCHS` = 30,000; the benchmark's default
    :data:`C2L_BENCH_EPOCHS`, as its report states, since 30,000 do not fit its CPU
    time); the posterior mean of the cell abundances (``means_cell_abundance_w_sf``, 1000
    samples) scaled to sum 1 per spot.
``tangram``
    the wrapper of :mod:`peers_mapping` (``mode="cells"``, its defaults), fractions from
    ``project_cell_annotations``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

PEERS = {"tangram": "tangram", "destvi": "scvi", "cell2location": "cell2location"}

#: DestVI's spatial epochs (its tutorial; scvi-tools' own default is 2000).
DESTVI_EPOCHS = 2500
#: cell2location's reference regression epochs (its tutorial).
C2L_REF_EPOCHS = 250
#: cell2location's spatial epochs: the tutorial's 30,000 full-batch steps; ``--c2l-epochs``
#: of the harness lowers it where that does not fit the CPU time (stated in the report).
C2L_EPOCHS = 30_000
#: the epochs the benchmark ran (``--c2l-epochs``): see the report
C2L_BENCH_EPOCHS = 3_000
#: cell2location's ``detection_alpha``: 20, its tutorial's choice for per-spot detection
#: sensitivity that varies within a slide (our spots are thinned to a depth from pooled
#: totals that vary with their number of cells, and the simulator's library sizes vary).
C2L_DETECTION_ALPHA = 20


def available_peers() -> list[str]:
    """Peers whose package is importable here."""
    return [name for name, module in PEERS.items() if importlib.util.find_spec(module)]


def _quiet() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("scvi", "lightning", "pytorch_lightning", "lightning.pytorch", "cell2location"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def _pyro_shim() -> None:
    """cell2location 0.1.5 imports ``deep_getattr`` from ``pyro.infer.autoguide.utils``,
    which the installed pyro-ppl (1.9.1) no longer has: give it back (its old one-line
    definition) before cell2location is imported, leaving the installed packages as they are."""
    import functools

    import pyro.infer.autoguide.utils as utils

    if not hasattr(utils, "deep_getattr"):
        utils.deep_getattr = lambda obj, name: functools.reduce(getattr, name.split("."), obj)


def _counts_copy(adata: AnnData, obs: pd.DataFrame | None = None) -> AnnData:
    """A bare copy (counts, names, and the given obs) so peers add nothing to the inputs."""
    obs = obs if obs is not None else pd.DataFrame(index=adata.obs_names)
    out = AnnData(adata.X.copy(), obs=obs)
    out.var_names = adata.var_names
    return out


def tangram_fractions(
    reference: AnnData,
    spots: AnnData,
    *,
    cell_type_key: str,
    random_state: int = 0,
    cells_per_spot: float = 1.0,
) -> pd.DataFrame:
    """Tangram (cells mode, CPU) fractions via :func:`peers_mapping.tangram_fractions`."""
    from peers_mapping import tangram_fractions as run

    _quiet()
    return run(reference, spots, cell_type_key=cell_type_key, random_state=random_state)


def _vamp_prior_as_tensors(sc_model) -> None:
    """scvi-tools 1.4.2: ``CondSCVI.get_vamp_prior`` (the default prior's path in
    ``DestVI.from_rna_model``) returns numpy arrays that ``MRDeconv`` cannot register as
    buffers; hand them over as float32 tensors (same values)."""
    import torch

    original = sc_model.get_vamp_prior

    def as_tensors(adata=None, p: int = 10) -> dict:
        return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in original(adata, p=p).items()}

    sc_model.get_vamp_prior = as_tensors


def _elbo(model) -> list[float]:
    """The per-epoch training ELBO of a trained scvi-tools model (its ``history``)."""
    frame = model.history.get("elbo_train")
    return [] if frame is None else [float(v) for v in np.asarray(frame).ravel()]


def destvi_fractions(
    reference: AnnData,
    spots: AnnData,
    *,
    cell_type_key: str,
    random_state: int = 0,
    cells_per_spot: float = 1.0,
    sc_epochs: int | None = None,
    st_epochs: int = DESTVI_EPOCHS,
    history: dict | None = None,
) -> pd.DataFrame:
    """DestVI proportions (CondSCVI on the reference, DestVI on the spots; tutorial).

    ``sc_epochs`` (None: CondSCVI's default, 300) and ``st_epochs`` (the tutorial's
    :data:`DESTVI_EPOCHS`) lower the epochs where the CPU time does not allow the tutorial's;
    ``history``, a dict, receives both models' per-epoch training ELBO and CPU seconds
    (``condscvi_elbo``, ``destvi_elbo``, ``condscvi_cpu_seconds``, ``destvi_cpu_seconds``)
    so that convergence can be shown."""
    import scvi
    from scvi.model import CondSCVI, DestVI

    _quiet()
    scvi.settings.seed = random_state
    genes = spots.var_names.intersection(reference.var_names)
    sc = _counts_copy(reference[:, genes], reference.obs[[cell_type_key]].copy())
    st = _counts_copy(spots[:, genes])
    CondSCVI.setup_anndata(sc, labels_key=cell_type_key)
    # prior="normal" is CondSCVI's own default, passed explicitly: scvi-tools 1.4.2's
    # DestVI.from_rna_model reads it from the model's init kwargs (KeyError 'prior' otherwise)
    sc_model = CondSCVI(sc, weight_obs=False, prior="normal")
    sc_kwargs = {} if sc_epochs is None else {"max_epochs": int(sc_epochs)}
    c0 = time.process_time()
    sc_model.train(accelerator="cpu", enable_progress_bar=False, **sc_kwargs)
    c1 = time.process_time()
    _vamp_prior_as_tensors(sc_model)
    DestVI.setup_anndata(st)
    st_model = DestVI.from_rna_model(st, sc_model)
    st_model.train(max_epochs=int(st_epochs), accelerator="cpu", enable_progress_bar=False)
    if history is not None:
        history.update(
            condscvi_elbo=_elbo(sc_model),
            destvi_elbo=_elbo(st_model),
            condscvi_cpu_seconds=c1 - c0,
            destvi_cpu_seconds=time.process_time() - c1,
        )
    props = st_model.get_proportions()
    props.index = spots.obs_names
    return props


def cell2location_fractions(
    reference: AnnData,
    spots: AnnData,
    *,
    cell_type_key: str,
    random_state: int = 0,
    cells_per_spot: float = 1.0,
    epochs: int = C2L_EPOCHS,
) -> pd.DataFrame:
    """cell2location: reference signatures by regression, then the spatial model (tutorial
    settings, ``N_cells_per_location = cells_per_spot``); posterior-mean abundances scaled
    to fractions."""
    _pyro_shim()
    import cell2location
    import scvi
    from cell2location.models import Cell2location, RegressionModel
    from cell2location.utils.filtering import filter_genes

    _quiet()
    scvi.settings.seed = random_state
    ref = _counts_copy(reference, reference.obs[[cell_type_key]].copy())
    selected = filter_genes(
        ref, cell_count_cutoff=5, cell_percentage_cutoff2=0.03, nonz_mean_cutoff=1.12
    )
    ref = ref[:, selected].copy()
    RegressionModel.setup_anndata(ref, labels_key=cell_type_key)
    reg = RegressionModel(ref)
    # its default batch of 2,500 cells; one a cell short where a last batch of one cell
    # would remain (pyro's subsample plate fails on a 0-d index)
    batch = 2499 if ref.n_obs % 2500 == 1 else 2500
    reg.train(
        max_epochs=C2L_REF_EPOCHS, batch_size=batch, accelerator="cpu", enable_progress_bar=False
    )
    ref = reg.export_posterior(
        ref, sample_kwargs={"num_samples": 1000, "batch_size": 2500, "accelerator": "cpu"}
    )
    factors = list(ref.uns["mod"]["factor_names"])
    signatures = ref.varm["means_per_cluster_mu_fg"][
        [f"means_per_cluster_mu_fg_{f}" for f in factors]
    ].copy()
    signatures.columns = factors
    genes = spots.var_names.intersection(signatures.index)
    st = _counts_copy(spots[:, genes])
    Cell2location.setup_anndata(st)
    model = Cell2location(
        st,
        cell_state_df=signatures.loc[genes],
        N_cells_per_location=float(cells_per_spot),
        detection_alpha=C2L_DETECTION_ALPHA,
    )
    t0 = time.process_time()
    model.train(
        max_epochs=int(epochs),
        batch_size=None,
        train_size=1,
        accelerator="cpu",
        enable_progress_bar=False,
    )
    print(f"  cell2location: {epochs} epochs, {time.process_time() - t0:.0f} CPU s", flush=True)
    st = model.export_posterior(
        st, sample_kwargs={"num_samples": 1000, "batch_size": st.n_obs, "accelerator": "cpu"}
    )
    abundance = pd.DataFrame(st.obsm["means_cell_abundance_w_sf"])
    abundance.columns = [c.removeprefix("meanscell_abundance_w_sf_") for c in abundance.columns]
    abundance.index = spots.obs_names
    del cell2location
    return abundance.div(abundance.sum(axis=1).replace(0, 1), axis=0)


FRACTIONS = {
    "tangram": tangram_fractions,
    "destvi": destvi_fractions,
    "cell2location": cell2location_fractions,
}


def check_columns(pred: pd.DataFrame, types: pd.Index) -> pd.DataFrame:
    """``pred`` with exactly the columns ``types`` (absent ones 0), non-negative."""
    pred = pd.DataFrame(pred).copy()
    pred.columns = [str(c) for c in pred.columns]
    return (
        pred.reindex(columns=[str(t) for t in types], fill_value=0.0)
        .clip(lower=0)
        .astype(np.float64)
    )

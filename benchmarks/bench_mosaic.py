"""Mosaic integration benchmark: scib-metrics scores, label transfer, imputation and speed of
cellweave's mosaic model against an unintegrated baseline, MultiVI and totalVI.

    cd benchmarks
    python bench_mosaic.py                                   # every data set and method
    python bench_mosaic.py --datasets mop --methods unintegrated,multivi --multivi-epochs 5
    python bench_mosaic.py --scib-check                      # + scib-metrics' own values

Data sets: ``mop`` (../shared/data/mop_mosaic_rna_atac.h5mu: paired / rna_only / atac_only),
``reapseq`` (REAP-seq PBMC RNA + protein, protein hidden in one sample and imputed), ``sim``
(cellweave.sim.simulate_mosaic with RNA, ATAC and protein in four batch designs). Scores are
:func:`cellweave.metrics.scib.scib_scores` (scib-metrics 0.5.10 definitions, min-max scaling
off, BRAS off, batch = mean of five incl. PCR comparison against the unintegrated PCA + LSI
embedding, Total = 0.6 bio + 0.4 batch) and label transfer from 1% of the cells. Writes
benchmarks/results/mosaic.md (machine, versions, command, load, tables).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from _report import header, markdown_table

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "cellweave",
    "numpy",
    "scipy",
    "scikit-learn",
    "torch",
    "lightning",
    "anndata",
    "mudata",
    "scanpy",
    "igraph",
    "scvi-tools",
    "scib-metrics",
)
INTEGRATION = ("unintegrated", "multivi", "glue", "cellweave", "cellweave_ot", "cellweave_1pct")
# rows built from an earlier row's result (run_integration skips them without it)
NEEDS = {"cellweave_ot": "cellweave"}
IMPUTATION = ("knn", "totalvi", "cellweave")
SIM_BATCHES = {
    "cite": ("rna", "protein"),
    "multiome": ("rna", "atac"),
    "asap": ("atac", "protein"),
    "rna_only": ("rna",),
}
CONTROL_PROTEINS = ("control", "igg", "blank")


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def load_mop(data_dir: Path):
    import mudata as md

    return md.read_h5mu(data_dir / "mop_mosaic_rna_atac.h5mu")


def load_sim(n_cells: int, seed: int):
    import cellweave as cw

    return cw.sim.simulate_mosaic(n_cells=n_cells, batches=SIM_BATCHES, random_state=seed)


def load_reapseq(data_dir: Path, hide: str, n_genes: int):
    """REAP-seq with ``n_genes`` highly variable genes; returns (full MuData, hidden mask,
    mosaic MuData whose protein modality lacks the ``hide`` sample)."""
    import anndata as ad
    import mudata as md
    import scanpy as sc

    import cellweave as cw

    full = md.read_h5mu(data_dir / "reapseq_pbmc_rna_protein.h5mu")
    rna = full["rna"]
    rna = rna[:, np.asarray((rna.X > 0).sum(axis=0)).ravel() >= 10].copy()
    logn = ad.AnnData(cw.pp.log_normalize(rna.X), obs=rna.obs[["batch"]].copy())
    sc.pp.highly_variable_genes(logn, n_top_genes=n_genes, batch_key="batch")
    rna = rna[:, logn.var["highly_variable"].to_numpy()].copy()
    obs = full.obs[["batch"]].copy()
    protein = full["protein"][obs.index].copy()
    rna = rna[obs.index].copy()
    truth = md.MuData({"rna": rna, "protein": protein})
    truth.obs["batch"] = obs["batch"].astype(str).to_numpy()
    hidden = truth.obs["batch"].to_numpy() == hide
    if not hidden.any():
        raise SystemExit(f"--reapseq-hide {hide!r} is not a sample of the REAP-seq data")
    mosaic = md.MuData({"rna": rna.copy(), "protein": protein[~hidden].copy()})
    mosaic.obs["batch"] = truth.obs["batch"].to_numpy()
    mosaic.obsm["rna"] = np.ones(truth.n_obs, dtype=bool)
    mosaic.obsm["protein"] = ~hidden
    return truth, hidden, mosaic


# --------------------------------------------------------------------------------------
# Running one method, with its cost
# --------------------------------------------------------------------------------------


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, *args, **kwargs):
    """(result or None, seconds of CPU, load average before, error message or None)."""
    load = os.getloadavg()[0]
    c0 = _cpu_seconds()
    try:
        result = fn(*args, **kwargs)
    except Exception as err:  # a peer failing is reported, not fatal
        traceback.print_exc()
        return None, _cpu_seconds() - c0, load, f"{type(err).__name__}: {err}"
    return result, _cpu_seconds() - c0, load, None


def integration_methods(args, label_key: str, labelled: np.ndarray | None, done: dict):
    """name -> callable(mdata) -> peers_mosaic.Result (``done``: the results so far, by name;
    ``cellweave_ot`` moves the batches without RNA of the ``cellweave`` row's embedding)."""
    import peers_mosaic as peers

    params = args.cellweave_params

    def semi(mdata):
        data = mdata.copy()
        labels = data.obs[label_key].astype(object).to_numpy().copy()
        labels[~labelled] = np.nan
        data.obs["_labels_1pct"] = pd.Categorical(labels)
        return peers.cellweave_integrate(
            data,
            label_key="_labels_1pct",
            max_epochs=args.cellweave_epochs,
            seed=args.seed,
            params=params,
        )

    return {
        "unintegrated": lambda m: peers.unintegrated(m, random_state=args.seed),
        "multivi": lambda m: peers.multivi(m, max_epochs=args.multivi_epochs, seed=args.seed),
        "glue": lambda m: peers.glue(m, max_epochs=args.glue_epochs, seed=args.seed),
        "cellweave": lambda m: peers.cellweave_integrate(
            m, max_epochs=args.cellweave_epochs, seed=args.seed, params=params
        ),
        "cellweave_ot": lambda m: peers.cellweave_transport(m, done["cellweave"]),
        "cellweave_1pct": semi,
    }


# --------------------------------------------------------------------------------------
# Integration data sets
# --------------------------------------------------------------------------------------


def run_integration(name: str, mdata, methods: list[str], args) -> dict:
    import peers_mosaic as peers
    from cellweave.metrics.scib import (
        label_transfer_balanced_accuracy,
        labelled_split,
        scib_metrics_reference,
        scib_scores,
    )

    labels = mdata.obs["cell_type"].astype(str).to_numpy()
    batches = mdata.obs["batch"].astype(str).to_numpy()
    labelled = labelled_split(labels)
    # PCR comparison's reference (Benchmarker's pre_integrated_embedding_obsm_key)
    pre = peers.unintegrated(mdata, random_state=0).values
    done: dict = {}
    fns = integration_methods(args, "cell_type", labelled, done)
    rows, checks, notes = {}, {}, []
    for method in methods:
        if method.startswith("cellweave") and (reason := peers.cellweave_available()):
            notes.append(f"{name}/{method}: skipped, {reason}")
            continue
        if (need := NEEDS.get(method)) and need not in done:
            notes.append(f"{name}/{method}: skipped, it needs the {need} row before it")
            continue
        if method == "multivi" and "protein" in mdata.mod:
            notes.append(f"{name}/multivi: RNA + ATAC only (MultiVI's protein support not used)")
        print(f"[{name}] {method} ...", file=sys.stderr, flush=True)
        data = mdata
        if method == "multivi" and "protein" in mdata.mod:
            data = _without(mdata, "protein")
        result, cpu, load, error = timed(fns[method], data)
        if error:
            notes.append(f"{name}/{method}: failed, {error}")
            continue
        done[method] = result
        if result.extra.get("note"):
            notes.append(f"{name}/{method}: {result.extra['note']}")
        x = result.values
        if args.save_embeddings:
            args.save_embeddings.mkdir(parents=True, exist_ok=True)
            np.save(args.save_embeddings / f"{name}_{method}.npy", x)
        t0 = time.perf_counter()
        row = scib_scores(x, labels, batches, pre_embedding=pre)
        row["knn_transfer_1pct"] = label_transfer_balanced_accuracy(x, labels)
        predicted = result.extra.get("predicted")
        row["model_transfer_1pct"] = (
            label_transfer_balanced_accuracy(None, labels, predictions=predicted)
            if predicted is not None and method.endswith("1pct")
            else np.nan
        )
        row.update(_timing(result, cpu, load), score_s=time.perf_counter() - t0)
        if result.extra.get("epoch_seconds"):
            row["median_epoch_s"] = float(np.median(result.extra["epoch_seconds"]))
        rows[method] = row
        print(f"[{name}] {method}: {json.dumps(_round(row))}", file=sys.stderr, flush=True)
        if args.scib_check:
            checks[method] = scib_metrics_reference(x, labels, batches, pre_embedding=pre)
    return {"rows": rows, "checks": checks, "notes": notes}


def _without(mdata, mod: str):
    import mudata as md

    out = md.MuData({k: v for k, v in mdata.mod.items() if k != mod})
    out.obs["batch"] = mdata.obs["batch"].to_numpy()
    out.obs["cell_type"] = mdata.obs["cell_type"].to_numpy()
    for k in out.mod:
        out.obsm[k] = np.asarray(mdata.obsm[k])
    keep = np.asarray(out.obsm[next(iter(out.mod))]).ravel().astype(bool)
    for k in out.mod:
        keep |= np.asarray(out.obsm[k]).ravel().astype(bool)
    return out[keep].copy() if not keep.all() else out


def _timing(result, cpu, load) -> dict:
    """The training-time columns of a result row (``timed``'s result, CPU time and load)."""
    return {
        "train_s": result.seconds,
        "epochs": result.epochs or np.nan,
        "s_per_epoch": result.seconds_per_epoch,
        "cpu_s": cpu,
        "load": load,
    }


def _round(row: dict) -> dict:
    return {k: round(float(v), 4) for k, v in row.items() if isinstance(v, int | float)}


# --------------------------------------------------------------------------------------
# REAP-seq imputation
# --------------------------------------------------------------------------------------


def per_protein_pearson(imputed: np.ndarray, truth: np.ndarray, names: pd.Index) -> pd.Series:
    """Pearson correlation (log1p scale) between imputed and measured protein, per
    non-control protein that varies in both (indexed by protein name)."""
    keep = ~names.str.lower().str.contains("|".join(CONTROL_PROTEINS))
    a, b = np.log1p(np.asarray(imputed)[:, keep]), np.log1p(np.asarray(truth)[:, keep])
    out = {}
    for j, name in enumerate(names[keep]):
        if a[:, j].std() > 0 and b[:, j].std() > 0:
            out[name] = np.corrcoef(a[:, j], b[:, j])[0, 1]
    return pd.Series(out, dtype=float)


def protein_scores(imputed: np.ndarray, truth: np.ndarray, names: pd.Index) -> dict:
    """Median over non-control proteins of the per-protein Pearson (log1p scale) and
    Spearman correlations between imputed and measured protein of the hidden cells."""
    from scipy.stats import spearmanr

    pearson = per_protein_pearson(imputed, truth, names)
    cols = names.get_indexer(pearson.index)
    imputed, truth = np.asarray(imputed), np.asarray(truth)
    spearman = [spearmanr(imputed[:, j], truth[:, j]).statistic for j in cols]
    return {
        "pearson_median": float(np.median(pearson)),
        "spearman_median": float(np.median(spearman)),
        "n_proteins": len(pearson),
    }


def run_imputation(data_dir: Path, methods: list[str], args) -> dict:
    import peers_mosaic as peers

    truth, hidden, mosaic = load_reapseq(data_dir, args.reapseq_hide, args.reapseq_genes)
    measured = peers.full_matrix(truth, "protein")[hidden].toarray()
    names = truth["protein"].var_names
    fns = {
        "knn": lambda: peers.knn_impute(mosaic, "protein"),
        "totalvi": lambda: peers.totalvi_impute(
            truth, hidden, max_epochs=args.totalvi_epochs, seed=args.seed
        ),
        "cellweave": lambda: peers.cellweave_impute(
            mosaic,
            "protein",
            max_epochs=args.cellweave_epochs,
            seed=args.seed,
            params=args.cellweave_params,
        ),
    }
    rows, notes = {}, []
    for method in methods:
        if method == "cellweave" and (reason := peers.cellweave_available()):
            notes.append(f"reapseq/cellweave: skipped, {reason}")
            continue
        print(f"[reapseq] {method} ...", file=sys.stderr, flush=True)
        result, cpu, load, error = timed(fns[method])
        if error:
            notes.append(f"reapseq/{method}: failed, {error}")
            continue
        values = result.values[hidden] if result.values.shape[0] == truth.n_obs else result.values
        row = protein_scores(values, measured, names)
        row.update(_timing(result, cpu, load))
        rows[method] = row
        print(f"[reapseq] {method}: {json.dumps(_round(row))}", file=sys.stderr, flush=True)
    info = {
        "hidden": args.reapseq_hide,
        "n_hidden": int(hidden.sum()),
        "n_cells": truth.n_obs,
        "n_genes": truth["rna"].n_vars,
    }
    return {"rows": rows, "notes": notes, "info": info}


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

INTEGRATION_COLUMNS = {
    "bio": "bio",
    "batch": "batch",
    "total": "Total",
    "knn_transfer_1pct": "kNN transfer 1%",
    "model_transfer_1pct": "model transfer 1%",
    "nmi": "NMI",
    "ari": "ARI",
    "asw_label": "ASW label",
    "clisi": "cLISI",
    "isolated_labels": "isolated",
    "asw_batch": "ASW batch",
    "ilisi": "iLISI",
    "kbet": "kBET",
    "graph_connectivity": "graph conn.",
    "pcr_comparison": "PCR comp.",
}
COST_COLUMNS = {
    "train_s": "train s",
    "epochs": "epochs",
    "s_per_epoch": "s/epoch",
    "median_epoch_s": "median epoch s",
    "ratio_vs_multivi": "s/epoch / MultiVI's",
    "cpu_s": "CPU s",
    "load": "load avg before",
}


def integration_report(name: str, title: str, out: dict) -> list[str]:
    rows = out["rows"]
    md = [f"## {title}", ""]
    if not rows:
        return [*md, "(no method ran)", ""]
    df = pd.DataFrame(rows).T
    if "multivi" in df.index:
        df["ratio_vs_multivi"] = df["s_per_epoch"] / df.loc["multivi", "s_per_epoch"]
    scores = df[[c for c in INTEGRATION_COLUMNS if c in df]].rename(columns=INTEGRATION_COLUMNS)
    costs = df[[c for c in COST_COLUMNS if c in df]].rename(columns=COST_COLUMNS)
    md += [*markdown_table(scores.astype(float), digits=3, index_name="method"), ""]
    md += ["Cost (wall seconds of training, CPU seconds of all threads):", ""]
    md += [*markdown_table(costs.astype(float), digits=2, index_name="method"), ""]
    if out["checks"]:
        md += [f"### {name}: cellweave.metrics.scib vs scib-metrics 0.5.10 (pynndescent)", ""]
        for method, ref in out["checks"].items():
            mine = {k: rows[method][k] for k in ref}
            cmp = pd.DataFrame({"cellweave": mine, "scib-metrics": ref})
            cmp["abs diff"] = (cmp["cellweave"] - cmp["scib-metrics"]).abs()
            md += [f"{method}:", "", *markdown_table(cmp.T, digits=4, index_name=""), ""]
    return md


def imputation_report(out: dict) -> list[str]:
    info = out["info"]
    md = [
        "## REAP-seq PBMC: protein imputed from RNA",
        "",
        f"- protein of sample `{info['hidden']}` ({info['n_hidden']} of {info['n_cells']} cells) "
        f"hidden; {info['n_genes']} highly variable genes; scored against the measured protein "
        "of those cells: per-protein Pearson on log1p (and Spearman), median over the "
        "non-control proteins",
        "",
    ]
    if not out["rows"]:
        return [*md, "(no method ran)", ""]
    df = pd.DataFrame(out["rows"]).T
    md += [*markdown_table(df.astype(float), digits=3, index_name="method"), ""]
    return md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mop,reapseq,sim")
    parser.add_argument("--methods", default=",".join(dict.fromkeys(INTEGRATION + IMPUTATION)))
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--multivi-epochs", type=int, default=100)
    parser.add_argument(
        "--glue-epochs", type=int, default=None, help="cap per GLUE fit; default: scglue's"
    )
    parser.add_argument("--totalvi-epochs", type=int, default=None, help="default: scvi's")
    parser.add_argument("--cellweave-epochs", type=int, default=None, help="default: model's")
    parser.add_argument(
        "--cellweave-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="MosaicModel option for the cellweave rows (repeatable), as `cellweave integrate "
        "--param`",
    )
    parser.add_argument("--reapseq-hide", default="sample2")
    parser.add_argument("--reapseq-genes", type=int, default=4000)
    parser.add_argument("--sim-cells", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scib-check", action="store_true", help="also run scib-metrics")
    parser.add_argument("--save-embeddings", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mosaic.md")
    args = parser.parse_args()
    import click

    from cellweave.cli._common import parse_params

    # parsed once, before any method runs: a bad value stops here, not hours later
    try:
        args.cellweave_params = parse_params(tuple(args.cellweave_param))
    except click.BadParameter as err:
        parser.error(f"--cellweave-param: {err.format_message()}")

    import torch

    datasets = [d for d in args.datasets.split(",") if d]
    methods = [m for m in args.methods.split(",") if m]
    md = header("Mosaic integration benchmark", PACKAGES)
    md += [
        f"- threads: torch {torch.get_num_threads()}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; the machine is shared, so each method's "
        "row gives the 1-minute load average when it started",
        "- scores: `cellweave.metrics.scib.scib_scores` = scib-metrics 0.5.10 Benchmarker "
        "(Leiden NMI/ARI, silhouette label, cLISI, isolated labels; silhouette batch, iLISI, "
        "kBET, graph connectivity, PCR comparison against the unintegrated PCA + LSI "
        "embedding), pynndescent neighbours, no min-max scaling, BRAS off, Total = 0.6 bio + "
        "0.4 batch (agrees with Benchmarker to 3 decimals: tests/test_metrics_scib_golden.py); "
        "label transfer: balanced accuracy on the 99% of cells not in "
        "`train_test_split(train_size=0.01, stratify=labels, random_state=0)`, from a 10-NN "
        "classifier on the embedding (kNN) or the model's own semi-supervised predictions",
        f"- epochs: MultiVI {args.multivi_epochs} (scvi-tools defaults otherwise), totalVI "
        f"{args.totalvi_epochs or 'scvi default'}, cellweave "
        f"{args.cellweave_epochs or 'model default (early stopping)'}",
        "",
    ]
    notes: list[str] = []
    results = {}
    integration = [m for m in methods if m in INTEGRATION]
    for name in datasets:
        if name == "mop":
            results[name] = run_integration(name, load_mop(args.data_dir), integration, args)
            md += integration_report(
                name, "MOp mosaic (paired / rna_only / atac_only, 10,309 cells)", results[name]
            )
        elif name == "sim":
            data = load_sim(args.sim_cells, args.seed)
            results[name] = run_integration(name, data, integration, args)
            design = ", ".join(f"{b}: {'+'.join(m)}" for b, m in SIM_BATCHES.items())
            md += integration_report(
                name,
                f"Simulated mosaic ({args.sim_cells} cells; {design})",
                results[name],
            )
        elif name == "reapseq":
            imputation = [m for m in methods if m in IMPUTATION]
            results[name] = run_imputation(args.data_dir, imputation, args)
            md += imputation_report(results[name])
        else:
            raise SystemExit(f"unknown data set {name!r}: choose from mop, reapseq, sim")
        notes += results[name]["notes"]
    if notes:
        md += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

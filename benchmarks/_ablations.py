"""Ablations of the attention mapper (``bench_mapping.py --ablations``): the default against
the model without its neighbour view, without its platform factor, and with other top-k
sizes, on leave-gene-out gene prediction and on simulated cell-type fractions."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import pandas as pd

from _report import header, markdown_table

#: Packages whose versions the section states.
PACKAGES = ("cellweave", "numpy", "scipy", "torch", "anndata", "POT")

#: Variant name -> the options it changes from the default ``attention``.
ABLATIONS: dict[str, dict] = {
    "attention": {},
    "attention_no_neighbours": {"spatial_key": None},
    "attention_no_platform": {"platform_factor": False},
    "attention_top_k10": {"top_k": 10},
    "attention_top_k200": {"top_k": 200},
}


def gene_ablations(adata_sc, adata_sp, folds: int, params: dict | None = None):
    """Leave-gene-out evaluation (both schemes, the bench's folds) of every variant."""
    from cellweave.mapping.evaluate import available_methods, evaluate

    base = available_methods()["attention"]
    spec = {
        name: replace(base, name=name, params={**base.params, **(params or {}), **options})
        for name, options in ABLATIONS.items()
    }
    t0 = time.perf_counter()
    result = evaluate(adata_sc, adata_sp, methods=spec, folds=folds, scheme="both")
    print(f"ablations: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return result


def fraction_ablations(seeds: tuple[int, ...], n_spots: int = 500, n_genes: int = 200):
    """RMSE, per-type Pearson and JS of every variant's fractions on the simulator (mean
    over ``seeds``), with CPU seconds."""
    import cellweave as cw
    from cellweave.mapping.api import map_cells
    from cellweave.metrics import fraction_scores

    rows: dict[str, list[dict]] = {name: [] for name in ABLATIONS}
    for seed in seeds:
        spatial, reference = cw.sim.simulate_spatial(
            n_spots=n_spots, n_genes=n_genes, random_state=seed
        )
        truth = spatial.obsm.pop("true_fractions")
        for name, options in ABLATIONS.items():
            target = spatial.copy()
            c0 = time.process_time()
            map_cells(
                reference.copy(),
                target,
                method="attention",
                cell_type_key="cell_type",
                random_state=seed,
                **options,
            )
            pred = pd.DataFrame(target.obsm["cell_type_fractions"])
            pred.index = truth.index
            s = fraction_scores(truth, pred[truth.columns])
            rows[name].append(
                {
                    "rmse": s["rmse"],
                    "pcc_mean": s["pcc_mean"],
                    "js_mean": s["js_mean"],
                    "cpu_seconds": time.process_time() - c0,
                }
            )
            print(f"ablation seed {seed} {name}: rmse {s['rmse']:.3f}", file=sys.stderr)
    return pd.DataFrame({n: pd.DataFrame(r).mean() for n, r in rows.items()}).T


def run_lines(load_start: float | None = None) -> list[str]:
    """Command, machine (load when written, and at the start when given), versions and
    threads of this run, as the section's first lines."""
    lines = header("", PACKAGES)[2:]
    if load_start is not None:
        lines[1] += f" (load average {load_start:.1f} when the run started)"
    lines.append(f"- threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    return lines


def deconv_ablations(name: str, seeds, data_dir) -> pd.DataFrame:
    """RMSE, per-type Pearson, JS and CPU seconds of every variant on one truth set of
    ``bench_deconv.py`` (``"mop"``: pseudo-spots of real cells), mean over ``seeds``."""
    from bench_deconv import run_method, score_fractions, truth_set

    rows: dict[str, list[dict]] = {n: [] for n in ABLATIONS}
    for seed in seeds:
        reference, spots, truth, n_cells = truth_set(name, seed, data_dir)
        for variant in ABLATIONS:
            c0 = time.process_time()
            pred = run_method(
                variant, reference, spots, seed=seed, cells_per_spot=n_cells, c2l_epochs=0
            )
            score = score_fractions(truth, pred)
            rows[variant].append({**score, "cpu_seconds": time.process_time() - c0})
            print(f"{name} seed {seed} {variant}: {score}", file=sys.stderr, flush=True)
    return pd.DataFrame({n: pd.DataFrame(r).mean() for n, r in rows.items()}).T


def deconv_lines(name: str, table: pd.DataFrame, seeds) -> list[str]:
    """Markdown of :func:`deconv_ablations`' table, its RMSE differences to the default."""
    table = table.copy()
    table["rmse - attention"] = table["rmse"] - table.loc["attention", "rmse"]
    return [
        f"### Fractions on `{name}` (`bench_deconv.py`'s truth set), seeds "
        f"{', '.join(map(str, seeds))}",
        "",
        *markdown_table(table, digits=3, index_name="variant"),
        "",
    ]


def ablation_report(
    data: str, genes, fractions: pd.DataFrame | None, seeds, load_start: float | None = None
) -> list[str]:
    """Markdown: one row per variant, gene medians (both schemes) and fraction scores,
    after the run's command, machine, versions and load."""
    table = pd.DataFrame(index=pd.Index(list(ABLATIONS), name="variant"))
    table["options"] = [
        ", ".join(f"{k}={v}" for k, v in o.items()) or "(default)" for o in ABLATIONS.values()
    ]
    for scheme in ("normalized", "raw"):
        t = genes.tables[scheme]
        table[f"pcc {scheme}"] = t["pcc"].reindex(table.index)
        table[f"ssim {scheme}"] = t["ssim"].reindex(table.index)
    table["CV cpu_seconds"] = genes.tables["normalized"]["cpu_seconds"].reindex(table.index)
    if fractions is not None:
        table["fractions rmse"] = fractions["rmse"]
        table["fractions pcc_mean"] = fractions["pcc_mean"]
        table["fractions js_mean"] = fractions["js_mean"]
        table["fractions cpu_seconds"] = fractions["cpu_seconds"]
    md = [
        "## Ablations of `attention`",
        "",
        *run_lines(load_start),
        f"- genes: leave-gene-out on {data}, the folds above (5, rng 0), per-gene medians "
        "(normalized scheme primary)",
    ]
    if fractions is not None:
        md.append(
            "- fractions: `cw.sim.simulate_spatial(n_spots=500, n_genes=200, random_state=s)`, "
            f"s in {', '.join(map(str, seeds))}, `map_cells(..., method='attention', "
            "cell_type_key='cell_type', random_state=s, **options)`; RMSE, mean per-type "
            "Pearson, mean JS per spot: mean over seeds"
        )
    default = table.loc["attention"]
    alone = table.loc["attention_no_neighbours"]
    delta = default["pcc normalized"] - alone["pcc normalized"]
    dssim = default["ssim normalized"] - alone["ssim normalized"]
    md += [
        f"- neighbour view: default minus `spatial_key=None`, median PCC {delta:+.3f}, "
        f"SSIM {dssim:+.3f} (normalized)"
        + (
            f"; fractions RMSE {default['fractions rmse'] - alone['fractions rmse']:+.3f}"
            if fractions is not None
            else ""
        ),
        *(
            paired(genes.per_gene, "attention", "attention_no_neighbours", scheme)
            for scheme in ("normalized", "raw")
        ),
        "",
        *markdown_table(table, digits=3),
        "",
    ]
    return md


def paired(per_gene: pd.DataFrame, a: str, b: str, scheme: str) -> str:
    """One line: ``a`` vs ``b`` gene by gene (mean difference of PCC and SSIM, share of
    genes where ``a`` is better, two-sided Wilcoxon signed-rank p)."""
    from scipy.stats import wilcoxon

    part = per_gene[per_gene["scheme"] == scheme]
    out = []
    for metric in ("PCC", "SSIM"):
        wide = part.pivot_table(index="gene", columns="method", values=metric)[[a, b]].dropna()
        diff = wide[a] - wide[b]
        p = wilcoxon(wide[a], wide[b]).pvalue
        out.append(
            f"{metric} {diff.mean():+.4f} (better on {(diff > 0).mean():.0%} of "
            f"{len(diff)} genes, Wilcoxon p {p:.2g})"
        )
    return f"- `{a}` minus `{b}` per gene, {scheme} scheme: " + "; ".join(out)


def run_ablations(sc_path, sp_path, data: str, folds: int, cache, cached: bool) -> list[str]:
    """Both ablations (pickled into ``cache``; ``cached``: re-render the pickle)."""
    import pickle

    import anndata as ad

    seeds = (0, 1, 2)
    path = None if cache is None else cache / f"{data}_ablations.pkl"
    load_start = None
    if cached and path is not None and path.exists():
        genes, fractions = pickle.loads(path.read_bytes())
    else:
        load_start = os.getloadavg()[0]
        genes = gene_ablations(ad.read_h5ad(sc_path), ad.read_h5ad(sp_path), folds)
        fractions = fraction_ablations(seeds)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps((genes, fractions)))
    return ablation_report(data, genes, fractions, seeds, load_start)


if __name__ == "__main__":  # the fraction ablations on a deconvolution truth set, as JSON
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description="attention's ablations on a truth set")
    parser.add_argument("--set", default="mop")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    load = os.getloadavg()[0]
    result = deconv_ablations(args.set, seeds, args.data_dir)
    payload = {"set": args.set, "seeds": seeds, "load_start": load, "lines": run_lines(load)}
    payload["table"] = result.to_dict(orient="index")
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print("\n".join(deconv_lines(args.set, result, seeds)))

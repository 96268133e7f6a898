"""Spatial imputation benchmark: the molecular cross-validation protocol on the shared real
data and the simulator, the speed target, and the 50k x 5k scale run.

    python benchmarks/bench_impute.py                      # accuracy on all data sets
    python benchmarks/bench_impute.py --speed --scale      # + 4k x 2k timing, 50k x 5k memory
    python benchmarks/bench_impute.py --ablation           # spatial loss: space, ring weights
    python benchmarks/bench_impute.py --dropout            # simulator with dropout 0.3

Writes benchmarks/results/impute.md (machine, versions, command, tables).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from _report import header, markdown_table, replace_section, write_report

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "breast1": "paste_breast_slice1.h5ad",
    "breast2": "paste_breast_slice2.h5ad",
    "breast3": "paste_breast_slice3.h5ad",
    "breast4": "paste_breast_slice4.h5ad",
    "merfish": "merfish_hypothalamus_spatial.h5ad",
}
PACKAGES = ("cellweave", "numpy", "scipy", "scikit-learn", "torch", "lightning", "anndata")
REFERENCES = ("raw", "gene_mean")
BASELINES = ("knn", "spatial_knn", "rings", "diffusion", "nmf")
#: The spatial loss ablation (``--ablation``): MF variants scored by the same protocol, each
#: with its spatial strength chosen by the inner split (``mf``: the default).
ABLATIONS = {
    "mf_nospatial": ("mf_nospatial", {}),
    "mf (latent, rings 1, 0.5)": ("mf", {}),
    "mf genes space": ("mf", {"space": "genes", "spatial_weight": [0.0, 1e-4, 1e-3, 1e-2]}),
    "mf rings 1, 0": ("mf", {"weights": [1.0, 0.0]}),
    "mf rings 1, 0.25": ("mf", {"weights": [1.0, 0.25]}),
    "mf rings 1, 1": ("mf", {"weights": [1.0, 1.0]}),
}
#: Sections of the report written by --ablation / --dropout / --dropout-mcv or by hand
#: (Notes): a plain run keeps them.
KEPT_SECTIONS = (
    "## The spatial loss: space",
    "## Simulator with dropout 0.3",
    "## Dropout and molecular cross-validation",
    "## Graph peers",
    "## Notes",
)
#: What ``--dropout-mcv`` scores by the protocol on the dropout simulator.
DROPOUT_MCV_RUNS = {
    "rings": ("rings", {}),
    "mf": ("mf", {}),
    "mf zinb": ("mf", {"likelihood": "zinb"}),
    "auto": ("auto", {}),
    "auto zinb": ("auto", {"likelihood": "zinb"}),
}
#: The dropout benchmark (``--dropout``): label -> (method, options), fitted on all observed
#: counts of the simulator as ``cellweave simulate spatial`` makes it (dropout 0.3).
DROPOUT_RUNS = {
    **{name: (name, {}) for name in (*REFERENCES, "shrinkage", *BASELINES)},
    "mixture": ("mixture", {}),
    "mf": ("mf", {}),
    "mf nb": ("mf", {"likelihood": "nb"}),
    "mf zinb": ("mf", {"likelihood": "zinb"}),
    "ae": ("ae", {}),
    "ae zinb": ("ae", {"likelihood": "zinb"}),
    "auto": ("auto", {}),
    "auto zinb": ("auto", {"likelihood": "zinb"}),
}


def load(name: str, data_dir: Path):
    import cellweave as cw

    if name == "sim":
        # dropout=0: extra technical zeros are shared by both molecule halves and would bias
        # molecular cross-validation; sparsity comes from the low library size instead
        spatial, _ = cw.sim.simulate_spatial(
            n_spots=1500,
            n_genes=300,
            grid="hex",
            dropout=0.0,
            library_size=500.0,
            random_state=0,
        )
        return spatial
    return cw.io.read_anndata(data_dir / DATASETS[name])


def run_accuracy(names: list[str], data_dir: Path, seeds: list[int], methods) -> dict:
    from cellweave.impute import evaluate

    results = {}
    for name in names:
        adata = load(name, data_dir)
        truth = "true_expression" if name == "sim" else None
        t0 = time.perf_counter()
        result = evaluate(adata, methods=methods, seeds=seeds, truth_layer=truth)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        results[name] = result
    return results


def summarise(results: dict) -> tuple[pd.DataFrame, list[str]]:
    """Deviance table (data sets x methods) and one verdict line per data set."""
    table = pd.DataFrame({name: r.table["deviance"] for name, r in results.items()}).T
    lines = []
    for name, r in results.items():
        per_seed = r.per_seed.pivot_table(index="seed", columns="method", values="deviance")
        baselines = [m for m in (*REFERENCES, *BASELINES) if m in per_seed.columns]
        if "auto" not in per_seed.columns or not baselines:
            continue
        best = per_seed[baselines].mean().idxmin()
        wins = bool((per_seed["auto"].to_numpy()[:, None] < per_seed[baselines].to_numpy()).all())
        gain = 1 - per_seed["auto"].mean() / per_seed[best].mean()
        lines.append(
            f"| {name} | {best} | {per_seed[best].mean():.4f} | "
            f"{per_seed['auto'].mean():.4f} | {gain:+.1%} | {'yes' if wins else 'NO'} |"
        )
    return table, lines


def speed_run(path: Path, method: str = "auto") -> dict:
    """Read a simulated tissue and impute it (the child process whose peak memory counts)."""
    import cellweave as cw

    spatial = cw.io.read_anndata(path)
    t0, c0 = time.perf_counter(), time.process_time()
    cw.tl.impute(spatial, method=method, random_state=0)
    return {
        "n_spots": spatial.n_obs,
        "n_genes": spatial.n_vars,
        "method": method,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def isolated_speed_run(n_spots: int, n_genes: int) -> dict:
    """Simulate here (counts only), then time and measure the imputation in a fresh process
    so that its peak memory belongs to reading + imputing alone."""
    import tempfile

    import anndata as ad

    import cellweave as cw

    spatial, _ = cw.sim.simulate_spatial(
        n_spots=n_spots, n_genes=n_genes, grid="hex", n_ref_cells=10, random_state=0
    )
    counts = ad.AnnData(spatial.X, obsm={"spatial": spatial.obsm["spatial"]})
    del spatial
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tissue.h5ad"
        counts.write_h5ad(path)
        del counts
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_ablation(names: list[str], data_dir: Path, seeds: list[int]) -> list[str]:
    """Markdown lines: deviance of every :data:`ABLATIONS` variant per data set (mean over
    seeds, and its sd), and the strength the inner split chose (seed 0's)."""
    from cellweave.impute import evaluate
    from cellweave.impute.mf import mf_predict

    dev, chosen = {}, {}
    for name in names:
        adata = load(name, data_dir)
        for label, (method, params) in ABLATIONS.items():
            r = evaluate(
                adata, methods=[method], seeds=seeds, method_params={method: params},
                masked_fraction=None,
            )  # fmt: skip
            dev.setdefault(label, {})[name] = (
                f"{r.table.loc[method, 'deviance']:.4f} ± {r.table.loc[method, 'deviance_sd']:.4f}"
            )
        X, coords = ablation_inputs(adata)
        _, info = mf_predict(X, coords=coords, random_state=0, return_info=True)
        chosen[name] = info["chosen"]["spatial_weight"]
        print(f"ablation {name} done", file=sys.stderr)
    table = pd.DataFrame(dev).T[names]
    return [
        "## The spatial loss: space and ring weights (MCV deviance, mean ± sd over seeds)",
        "",
        "Each `mf` variant chooses its spatial strength by the inner split (default grid 0, "
        "0.01, 0.1, 1; the gene-space variant 0, 1e-4 ... 1e-2, as its loss sums over genes). "
        "Spatial strength `mf` chose on all the data (seed 0): "
        + ", ".join(f"{k} {v:g}" for k, v in chosen.items()),
        "",
        *markdown_table(table, index_name="variant"),
        "",
    ]


def ablation_inputs(adata):
    """Counts of the genes the protocol keeps and the coordinates."""
    import numpy as np
    from scipy import sparse

    from cellweave.impute.evaluate import gene_filter

    X = sparse.csr_matrix(adata.X, dtype=np.float64)
    return X[:, gene_filter(X, 0.1)], np.asarray(adata.obsm["spatial"], dtype=np.float64)


def run_dropout(sim_seeds: list[int], runs: dict | None = None) -> list[str]:
    """Markdown lines: error to the truth of every ``runs`` entry (label -> (method, options);
    default :data:`DROPOUT_RUNS`) fitted on all
    observed counts of the CLI's simulator (dropout 0.3), on all entries and on the entries
    dropout zeroed; mean over simulator seeds."""
    import numpy as np
    from scipy import sparse

    import cellweave as cw
    from cellweave.impute import METHODS

    rows = []
    for seed in sim_seeds:
        spatial, _ = cw.sim.simulate_spatial(random_state=seed)  # the CLI's defaults
        X = sparse.csr_matrix(spatial.X, dtype=np.float64)
        full = sparse.csr_matrix(spatial.layers["counts_full"]).toarray()
        dropped = (full > 0) & (X.toarray() == 0)
        truth = np.asarray(spatial.layers["true_expression"], dtype=np.float64)
        truth /= truth.sum(axis=1, keepdims=True)
        coords = np.asarray(spatial.obsm["spatial"], dtype=np.float64)
        for label, (method, params) in (runs or DROPOUT_RUNS).items():
            t0 = time.perf_counter()
            P = METHODS[method].fn(X, coords=coords, random_state=0, **params)
            diff = np.log1p(1e4 * P) - np.log1p(1e4 * truth)
            rows.append(
                {
                    "method": label,
                    "truth_log_rmse": float(np.sqrt(np.mean(diff**2))),
                    "dropped_log_rmse": float(np.sqrt(np.mean(diff[dropped] ** 2))),
                    "seconds": time.perf_counter() - t0,
                }
            )
        print(f"dropout sim {seed} done", file=sys.stderr)
    table = pd.DataFrame(rows).groupby("method", sort=False).mean()
    return [
        "## Simulator with dropout 0.3: error to the truth",
        "",
        f"`cw.sim.simulate_spatial(random_state=s)` for s in {sim_seeds} (the defaults of "
        "`cellweave simulate spatial`: 1,000 spots x 200 genes, dropout 0.3); every method "
        "fitted on all observed counts (no split); RMSE of `log1p(1e4 P)` vs "
        "`log1p(1e4 truth)` over all entries and over the entries dropout zeroed (non-zero "
        "in `counts_full`, zero in `X`); mean over the simulator seeds.",
        "",
        *markdown_table(table.sort_values("truth_log_rmse"), index_name="method"),
        "",
    ]


def run_dropout_mcv(seeds: list[int], runs: dict | None = None) -> list[str]:
    """Markdown lines: molecular cross-validation on the dropout simulator (seed 0) next to
    the error to the truth, for the models with and without the dropout likelihood (``runs``:
    label -> (method, options); default :data:`DROPOUT_MCV_RUNS`)."""
    import cellweave as cw
    from cellweave.impute import evaluate

    spatial, _ = cw.sim.simulate_spatial(random_state=0)
    rows = {}
    for label, (method, params) in (runs or DROPOUT_MCV_RUNS).items():
        r = evaluate(
            spatial, methods=[method], seeds=seeds, method_params={method: params},
            truth_layer="true_expression", masked_fraction=None,
        )  # fmt: skip
        rows[label] = r.table.loc[method, ["deviance", "deviance_sd", "truth_log_rmse"]]
    table = pd.DataFrame(rows).T
    return [
        "## Dropout and molecular cross-validation",
        "",
        f"The dropout simulator (seed 0) scored by the protocol (seeds {seeds}): the held-out "
        "half X2 shares the dropout holes of X1, so the deviance rewards reproducing them, "
        "while the error to the truth (`truth_log_rmse`, here of the fit on X1) rewards "
        "filling them.",
        "",
        *markdown_table(table, index_name="method"),
        "",
    ]


def run_peers(names: list[str], data_dir: Path, seeds: list[int], epochs: dict, out=None):
    """Markdown lines: STAGATE and GraphST (:mod:`peers_impute`) through the protocol next to
    ``auto`` and ``diffusion`` scored in the same run (mean deviance over ``seeds``); with
    ``out``, the section is written there after every data set (long runs keep their rows)."""
    from cellweave.impute import evaluate
    from peers_impute import PREDICTORS, available_peers, mcv

    peers = available_peers()
    rows = {}
    for name in names:
        adata = load(name, data_dir)
        r = evaluate(adata, methods=["auto", "diffusion"], seeds=seeds, masked_fraction=None)
        row = {m: r.table.loc[m, "deviance"] for m in ("auto", "diffusion")}
        for peer in peers:
            t = mcv(adata, PREDICTORS[peer], seeds=seeds, **epochs[peer])
            row[peer] = t["deviance"].mean()
            row[f"{peer} cpu s"] = t["cpu_seconds"].mean()
            print(f"peers {name} {peer}: {row[peer]:.4f}", file=sys.stderr)
        row["auto / best peer"] = row["auto"] / min(row[p] for p in peers)
        rows[name] = row
        lines = _peer_lines(pd.DataFrame(rows).T, seeds, epochs, peers)
        if out is not None:
            _write_section(
                out, [*lines[:2], f"- command: `{' '.join(['python', *sys.argv])}`", "", *lines[2:]]
            )
    return lines


def _peer_lines(table: pd.DataFrame, seeds, epochs: dict, peers) -> list[str]:
    sizes = ", ".join(f"{p} {', '.join(f'{k}={v}' for k, v in epochs[p].items())}" for p in peers)
    return [
        "## Graph peers: STAGATE and GraphST (MCV deviance)",
        "",
        f"Same protocol (genes non-zero in >= 10% of spots, X1 = Binomial(X, 0.5), seeds "
        f"{seeds}, deviance on X2); each peer's reconstructed log-normalized expression "
        f"mapped to proportions (`benchmarks/peers_impute.py`); {sizes}; CPU, "
        "`OMP_NUM_THREADS=1`. `auto` and `diffusion` scored in the same run.",
        "",
        *markdown_table(table, index_name="data"),
        "",
    ]


def _write_section(out: Path, lines: list[str]) -> None:
    text = out.read_text() if out.exists() else ""
    out.write_text(replace_section(text, lines[0], lines))


def accuracy_report(results: dict, seeds: str) -> list[str]:
    """Markdown lines: deviance table, auto's verdict per data set, every score per data set."""
    table, verdicts = summarise(results)
    md: list[str] = []

    md += [
        f"- protocol: molecular cross-validation (Batson et al. 2019); genes nonzero in "
        f">= 10% of spots; X1 = Binomial(X, 0.5) with seeds {seeds}; scored on all "
        "entries of X2; mean over seeds",
        "",
    ]
    md += [
        "## Poisson deviance per entry (lower is better)",
        "",
        *markdown_table(table, index_name="data"),
        "",
    ]
    md += [
        "## auto vs the best reference/baseline (per data set)",
        "",
        "| data | best baseline | its deviance | auto | auto's gain | auto wins every seed |",
        "|---|---|---:|---:|---:|---|",
        *verdicts,
        "",
    ]
    for name, r in results.items():
        md += [f"## {name}: all scores", "", *markdown_table(r.table, index_name="method"), ""]
    return md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join([*DATASETS, "sim"]))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="all")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--speed", action="store_true", help="time auto on 4,000 x 2,000")
    parser.add_argument("--scale", action="store_true", help="time + memory on 50k x 5k")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "impute.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ablation", action="store_true", help="spatial loss variants")
    parser.add_argument("--dropout", action="store_true", help="simulator with dropout 0.3")
    parser.add_argument("--dropout-mcv", action="store_true", help="MCV on that simulator")
    parser.add_argument("--peers", action="store_true", help="STAGATE and GraphST")
    parser.add_argument("--peer-epochs", default="1000,600", help="STAGATE,GraphST epochs")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(speed_run(Path(args.child))))
        return
    if args.ablation or args.dropout or args.dropout_mcv or args.peers:  # sections replaced
        names = [n for n in args.datasets.split(",") if n]
        seeds = [int(s) for s in args.seeds.split(",")]
        sections = []
        if args.ablation:
            sections.append(run_ablation(names, args.data_dir, seeds))
        if args.dropout:
            sections.append(run_dropout(seeds))
        if args.dropout_mcv:
            sections.append(run_dropout_mcv(seeds))
        if args.peers:
            st, gs = (int(v) for v in args.peer_epochs.split(","))
            epochs = {"stagate": {"n_epochs": st}, "graphst": {"epochs": gs}}
            sections.append(run_peers(names, args.data_dir, seeds, epochs, out=args.out))
        text = args.out.read_text() if args.out.exists() else ""
        for lines in sections:
            lines[2:2] = [f"- command: `{' '.join(['python', *sys.argv])}`", ""]
            text = replace_section(text, lines[0], lines)
        args.out.write_text(text)
        print(text)
        return

    names = [n for n in args.datasets.split(",") if n]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = "all" if args.methods == "all" else args.methods.split(",")
    md = header("Spatial imputation benchmark", PACKAGES)
    if names:  # --datasets "" runs only the speed/scale part
        results = run_accuracy(names, args.data_dir, seeds, methods)
        md += accuracy_report(results, args.seeds)
    if args.speed or args.scale:
        md += [
            "## Speed and memory (`method='auto'`, fresh process each)",
            "",
            "| spots x genes | seconds | CPU seconds | peak RSS (GB) |",
            "|---|---:|---:|---:|",
        ]
        sizes = ([(4000, 2000)] if args.speed else []) + ([(50000, 5000)] if args.scale else [])
        for n, g in sizes:
            r = isolated_speed_run(n, g)
            md.append(
                f"| {n} x {g} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
                f"{r['peak_rss_gb']:.2f} |"
            )
        md.append("")
    write_report(args.out, md, KEPT_SECTIONS)  # --ablation / --dropout sections kept as they are


if __name__ == "__main__":
    main()

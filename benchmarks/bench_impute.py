"""Spatial imputation benchmark: the molecular cross-validation protocol on the shared real
data and the simulator, the speed target, and the 50k x 5k scale run.

    python benchmarks/bench_impute.py                      # accuracy on all data sets
    python benchmarks/bench_impute.py --speed --scale      # + 4k x 2k timing, 50k x 5k memory

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

from _report import header, markdown_table

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


def speed_run(n_spots: int, n_genes: int, method: str = "auto") -> dict:
    import cellweave as cw

    spatial, _ = cw.sim.simulate_spatial(
        n_spots=n_spots, n_genes=n_genes, grid="hex", random_state=0
    )
    t0, c0 = time.perf_counter(), time.process_time()
    cw.impute.impute(spatial, method=method, random_state=0)
    return {
        "n_spots": n_spots,
        "n_genes": n_genes,
        "method": method,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def isolated_speed_run(n_spots: int, n_genes: int) -> dict:
    """Run in a fresh process so the peak memory belongs to this run alone."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", f"{n_spots},{n_genes}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    args = parser.parse_args()
    if args.child:
        n, g = (int(v) for v in args.child.split(","))
        print(json.dumps(speed_run(n, g)))
        return

    names = [n for n in args.datasets.split(",") if n]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = "all" if args.methods == "all" else args.methods.split(",")
    results = run_accuracy(names, args.data_dir, seeds, methods)
    table, verdicts = summarise(results)

    md = header("Spatial imputation benchmark", PACKAGES)
    md += [
        f"- protocol: molecular cross-validation (Batson et al. 2019); genes nonzero in "
        f">= 10% of spots; X1 = Binomial(X, 0.5) with seeds {args.seeds}; scored on all "
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

"""Mapping at scale: one method on simulated spots x reference cells, in a fresh process
(time, CPU time and peak resident memory of the whole ``map_cells`` call: training and
mapping for the trained methods).

    OMP_NUM_THREADS=2 python benchmarks/bench_mapping_scale.py --method attention \
        --spots 100000 --cells 50000
    # without cell types (no fractions, no type level); or the labelled pseudo-spot path
    # that the defaults take when the reference is shallow, forced on the simulator
    ... --cell-type-key none
    ... --options '{"pseudo_spots": 4000}'

Writes (or adds a row to) benchmarks/results/mapping_scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import header

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "mapping_scale.md"
TABLE_HEAD = (
    "| method | spots x cells x genes | cell types | options | epochs | pseudo-spots "
    "| seconds | CPU seconds | peak RSS (GB) | <= 8 GB | load average | device |",
    "|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---|",
)
#: What the model chose, reported with each row (from the mapping's params).
CHOSEN = ("epochs", "pseudo_spots", "transport", "lambda_cells")


def child(
    sc_path: Path, sp_path: Path, method: str, options: dict, cell_type_key: str | None
) -> dict:
    """Map in this (fresh) process; the measurements (and what the model chose) as a dict."""
    import anndata as ad

    from cellweave._params import jsonable
    from cellweave.mapping.api import map_cells

    adata_sc, adata_sp = ad.read_h5ad(sc_path), ad.read_h5ad(sp_path)
    t0, c0 = time.perf_counter(), time.process_time()
    mapping = map_cells(adata_sc, adata_sp, method=method, cell_type_key=cell_type_key, **options)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        **{k: jsonable(mapping.params[k]) for k in CHOSEN if k in mapping.params},
    }


def simulate(n_spots: int, n_cells: int, n_genes: int, folder: Path) -> tuple[Path, Path]:
    """Simulated spots and reference written as .h5ad files in ``folder``."""
    import anndata as ad

    import cellweave as cw

    spatial, reference = cw.sim.simulate_spatial(
        n_spots=n_spots, n_genes=n_genes, n_ref_cells=n_cells, random_state=0
    )
    sp = ad.AnnData(spatial.X, obsm={"spatial": spatial.obsm["spatial"]})
    sp.var_names = spatial.var_names
    sc = ad.AnnData(reference.X, obs=reference.obs[["cell_type"]])
    sc.var_names = reference.var_names
    sc_path, sp_path = folder / "sc.h5ad", folder / "sp.h5ad"
    sc.write_h5ad(sc_path)
    sp.write_h5ad(sp_path)
    return sc_path, sp_path


def row(args: argparse.Namespace, r: dict, options: dict) -> str:
    """One markdown row of the table."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    epochs = r.get("epochs", options.get("max_epochs", "default"))
    types = "yes" if args.cell_type_key else "no"
    shown = json.dumps(options) if options else "(defaults)"
    return (
        f"| {args.method} | {args.spots} x {args.cells} x {args.genes} | {types} | "
        f"`{shown}` | {epochs} | {r.get('pseudo_spots', '-')} | "
        f"{r['seconds']:.0f} | {r['cpu_seconds']:.0f} | {r['peak_rss_gb']:.2f} | "
        f"{'yes' if r['peak_rss_gb'] <= 8 else 'NO'} | {os.getloadavg()[0]:.1f} | {device} |"
    )


def write(line: str, out: Path = OUT) -> None:
    """Add ``line`` to the table of ``out`` (a new file gets the header first)."""
    if out.exists():
        text = out.read_text().rstrip("\n") + "\n" + line + "\n"
    else:
        md = header("Mapping at scale", ("cellweave", "torch", "numpy", "anndata"))
        md += ["- command: see each row's options below the table", ""]
        text = "\n".join([*md, *TABLE_HEAD, line]) + "\n"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="attention")
    parser.add_argument("--spots", type=int, default=100_000)
    parser.add_argument("--cells", type=int, default=50_000)
    parser.add_argument("--genes", type=int, default=200)
    parser.add_argument("--options", default="{}", help="method options as JSON")
    parser.add_argument(
        "--cell-type-key", default="cell_type", help="'none': map without cell types"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    options = json.loads(args.options)
    if args.cell_type_key.lower() in ("", "none"):
        args.cell_type_key = None
    if args.child:
        paths = (Path(args.child[0]), Path(args.child[1]))
        print(json.dumps(child(*paths, args.method, options, args.cell_type_key)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        sc_path, sp_path = simulate(args.spots, args.cells, args.genes, Path(tmp))
        cmd = [sys.executable, __file__, "--method", args.method, "--options", args.options]
        cmd += ["--cell-type-key", args.cell_type_key or "none"]
        proc = subprocess.run([*cmd, "--child", str(sc_path), str(sp_path)], capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"mapping failed (exit {proc.returncode}): {proc.stderr.decode()[-500:]}")
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    print(result)
    write(row(args, result, options), args.out)


if __name__ == "__main__":
    main()

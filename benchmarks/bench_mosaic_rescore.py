"""Score saved MOp embeddings with the Benchmarker-equivalent scorer (and Benchmarker itself).

    cd benchmarks
    python bench_mosaic.py --datasets mop --methods unintegrated,cellweave,multivi \\
        --save-embeddings EMB                                  # writes EMB/mop_<method>.npy
    python bench_mosaic_rescore.py --embedding cellweave=EMB/mop_cellweave.npy \\
        --embedding multivi=EMB/mop_multivi.npy [--benchmarker] --out OUT.md

Every embedding is scored by :func:`cellweave.metrics.scib.scib_scores` with the unintegrated
PCA + LSI embedding of the MOp mosaic (``peers_mosaic.unintegrated``, seed 0) as the PCR
comparison reference, plus the kNN label transfer from 1% of the cells. ``--benchmarker``
(needs scib-metrics, the bench venv) also runs scib-metrics 0.5.10's Benchmarker on the same
embeddings (``cellweave.metrics.scib_reference``) and reports the largest difference.
Rows given as ``mmaavi=bio,batch,total,transfer`` are quoted numbers, not recomputed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from _report import header, markdown_table
from bench_mosaic import INTEGRATION_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cellweave", "numpy", "scipy", "scikit-learn", "pynndescent", "igraph", "scib-metrics")
# the integration table's columns of bench_mosaic.py (no model here: no model transfer)
COLUMNS = {k: v for k, v in INTEGRATION_COLUMNS.items() if k != "model_transfer_1pct"}


def score_all(embeddings: dict[str, np.ndarray], mdata) -> tuple[pd.DataFrame, np.ndarray]:
    """scib_scores (with PCR comparison) and 1% kNN transfer of each embedding; returns the
    table and the unintegrated reference embedding."""
    import peers_mosaic as peers
    from cellweave.metrics.scib import label_transfer_balanced_accuracy, scib_scores

    labels = mdata.obs["cell_type"].astype(str).to_numpy()
    batches = mdata.obs["batch"].astype(str).to_numpy()
    pre = peers.unintegrated(mdata, random_state=0).values
    rows = {}
    for name, x in embeddings.items():
        print(f"scoring {name} ...", file=sys.stderr, flush=True)
        row = scib_scores(x, labels, batches, pre_embedding=pre)
        row["knn_transfer_1pct"] = label_transfer_balanced_accuracy(x, labels)
        rows[name] = row
    return pd.DataFrame(rows).T, pre


def benchmarker_table(embeddings: dict[str, np.ndarray], mdata, pre: np.ndarray) -> pd.DataFrame:
    from cellweave.metrics.scib_reference import benchmarker_scores

    labels = mdata.obs["cell_type"].astype(str).to_numpy()
    batches = mdata.obs["batch"].astype(str).to_numpy()
    return pd.DataFrame(benchmarker_scores(embeddings, labels, batches, pre)).T


def quoted(spec: str) -> tuple[str, dict[str, float]]:
    name, values = spec.split("=", 1)
    bio, batch, total, transfer = (float(v) for v in values.split(","))
    return name, {"bio": bio, "batch": batch, "total": total, "knn_transfer_1pct": transfer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedding", action="append", default=[], metavar="NAME=PATH.npy")
    parser.add_argument("--quoted", action="append", default=[], metavar="NAME=BIO,BATCH,TOT,TR")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--benchmarker", action="store_true", help="also run Benchmarker")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import mudata as md

    mdata = md.read_h5mu(args.data_dir / "mop_mosaic_rna_atac.h5mu")
    embeddings = {}
    for spec in args.embedding:
        name, path = spec.split("=", 1)
        embeddings[name] = np.load(path)
    table, pre = score_all(embeddings, mdata)
    for spec in args.quoted:
        name, row = quoted(spec)
        table.loc[name, list(row)] = list(row.values())
    cols = [c for c in COLUMNS if c in table]
    out = [*header("MOp embeddings rescored (Benchmarker-equivalent scorer)", PACKAGES), ""]
    out += [*markdown_table(table[cols].rename(columns=COLUMNS).astype(float), digits=3,
                            index_name="method"), ""]  # fmt: skip
    if args.benchmarker:
        ref = benchmarker_table(embeddings, mdata, pre)
        keys = list(ref.columns)
        diff = (table.loc[ref.index, keys].astype(float) - ref[keys].astype(float)).abs()
        out += ["scib-metrics 0.5.10 Benchmarker on the same embeddings:", ""]
        out += [*markdown_table(ref.astype(float), digits=4, index_name="method"), ""]
        out += [
            f"largest |cellweave - Benchmarker| per method: {diff.max(axis=1).round(5).to_dict()}"
        ]
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

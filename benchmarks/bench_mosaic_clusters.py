"""Clusters of the mosaic model's mixture prior against k-means and Leiden on its latent.

Usage (from the repository root; one JSON line per run is appended to ``--out``)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_mosaic_clusters.py \\
        --data sim --variants '[{}, {"mixture": "exact"}]' --tag after
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_mosaic_clusters.py \\
        --data mop --n-cells 3000 --epochs 40 --seeds 0 --tag after

Data: ``sim`` (``cellweave.sim.simulate_mosaic`` with ``--n-cells`` cells, 8 types, batches
cite / multiome / asap as in ``bench_mosaic.py``) or ``mop`` (a stratified random subset of
``--n-cells`` cells of ../shared/data/mop_mosaic_rna_atac.h5mu, 15 types). Per run: ARI of
the model's own clusters (argmax of ``q(c | z)``) with ``cell_type``, how many true types
are the majority of some cluster, k-means (``k`` = the types) and Leiden on ``X_cellweave``
at the resolution whose cluster count is closest to the types (ties: the lower
resolution), and the scib-metrics scores of the latent (:func:`cellweave.metrics.scib_scores`).
``--n-clusters 0`` lets the model choose ``k`` (its criterion); otherwise the number of types.
``--labelled 0.01``: the semi-supervised run of issue 19 instead (labels of the stratified 1%
split, ``labelled_split(train_size=0.01, random_state=0)``): balanced accuracy on the other
cells of the model's own predictions (``predict_labels``) and of a 10-NN on its latent.
Run it with another ``PYTHONPATH`` (e.g. an exported older tree) for a "before" row.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIM_BATCHES = {"cite": ("rna", "protein"), "multiome": ("rna", "atac"), "asap": ("atac", "protein")}
RESOLUTIONS = tuple(np.round(np.arange(0.1, 3.01, 0.1), 2))


def load(data: str, n_cells: int, seed: int):
    """The MuData of ``data`` (``sim`` simulated with ``seed``; ``mop`` subset)."""
    import mudata as md

    from cellweave.sim import simulate_mosaic

    if data == "sim":
        return simulate_mosaic(n_cells=n_cells, batches=SIM_BATCHES, random_state=seed)
    full = md.read_h5mu(ROOT.parent / "shared" / "data" / "mop_mosaic_rna_atac.h5mu")
    if n_cells >= full.n_obs:
        return full
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(
        np.arange(full.n_obs),
        train_size=n_cells,
        stratify=full.obs["cell_type"].astype(str),
        random_state=0,
    )
    return full[np.sort(keep)].copy()


def leiden_matched(z: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Leiden (igraph, modularity) on the 15-neighbour UMAP graph of ``z`` at the resolution
    whose number of clusters is closest to ``k``."""
    import random

    import igraph

    from cellweave.metrics.scib import scib_neighbors, umap_connectivities

    dist, idx = scib_neighbors(z, n_neighbors=15)
    coo = umap_connectivities(dist, idx).tocoo()
    g = igraph.Graph(n=z.shape[0], edges=np.column_stack([coo.row, coo.col]).tolist())
    g.es["weight"] = coo.data.tolist()
    best = None
    for r in RESOLUTIONS:
        random.seed(seed)
        part = g.community_leiden(objective_function="modularity", weights="weight", resolution=r)
        labels = np.asarray(part.membership)
        gap = abs(np.unique(labels).size - k)
        if best is None or gap < best[0]:
            best = (gap, labels, float(r))
    return best[1], best[2]


def types_found(truth: np.ndarray, clusters: np.ndarray) -> int:
    """True types that are the majority of at least one cluster."""
    import pandas as pd

    table = pd.crosstab(clusters, truth)
    return int(np.unique(table.idxmax(axis=1)).size)


def run_labels(args, variant: dict, seed: int) -> dict:
    """The 1% split: the model's own balanced accuracy against a 10-NN on its latent."""
    from cellweave.metrics.scib import label_transfer_balanced_accuracy, labelled_split
    from cellweave.mosaic import MosaicModel

    mdata = load(args.data, args.n_cells, seed)
    types = mdata.obs["cell_type"].astype(str).to_numpy()
    keep = labelled_split(types, train_size=args.labelled, random_state=0)
    labels = np.where(keep, types, None).astype(object)
    start = time.perf_counter()
    model = MosaicModel(mdata, batch_key="batch", label_key=labels, random_state=seed, **variant)
    model.train(max_epochs=args.epochs, progress=False)
    z = model.get_latent_representation()
    own = model.predict_labels().astype(str).to_numpy()
    return {
        "tag": args.tag, "data": args.data, "n_cells": int(mdata.n_obs), "seed": seed,
        "variant": variant, "labelled": int(keep.sum()),
        "own": label_transfer_balanced_accuracy(z, types, predictions=own),
        "knn": label_transfer_balanced_accuracy(z, types),
        "own_on_labelled": float((own[keep] == types[keep]).mean()),
        "epochs": len(model.history), "seconds": time.perf_counter() - start,
        "load": os.getloadavg()[0], "train_params": model.train_params,
    }  # fmt: skip


def run(args, variant: dict, seed: int) -> dict:
    from sklearn.cluster import KMeans

    from cellweave.metrics import ari
    from cellweave.metrics.scib import scib_scores
    from cellweave.mosaic import integrate

    mdata = load(args.data, args.n_cells, seed)
    truth = mdata.obs["cell_type"].astype(str).to_numpy()
    k = np.unique(truth).size
    options = {"n_clusters": None if args.n_clusters == 0 else k, **variant}
    start = time.perf_counter()
    model = integrate(
        mdata, batch_key="batch", max_epochs=args.epochs, random_state=seed,
        return_model=True, train_kwargs={"progress": False}, **options,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    z = np.asarray(mdata.obsm["X_cellweave"])
    own = np.asarray(model.get_cluster_probabilities()).argmax(1)
    kmeans = KMeans(k, n_init=5, random_state=seed).fit_predict(z)
    leiden, resolution = leiden_matched(z, k, seed)
    scores = scib_scores(z, truth, mdata.obs["batch"].astype(str).to_numpy())
    return {
        "tag": args.tag, "data": args.data, "n_cells": int(mdata.n_obs), "seed": seed,
        "variant": variant, "types": int(k), "clusters_used": int(np.unique(own).size),
        "ari_own": ari(truth, own), "types_found": types_found(truth, own),
        "ari_kmeans": ari(truth, kmeans), "ari_leiden": ari(truth, leiden),
        "leiden_resolution": resolution,
        "bio": scores["bio"], "batch": scores["batch"],
        "total": scores["total"], "epochs": len(model.history), "seconds": seconds,
        "load": os.getloadavg()[0], "train_params": model.train_params,
    }  # fmt: skip


def report(paths: list[Path]) -> str:
    """A markdown table of the JSON lines in ``paths``: one row per run, then the mean per
    data set, tag and variant."""
    import pandas as pd

    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line]
    frame = pd.DataFrame(rows)
    frame["variant"] = frame["variant"].map(lambda v: json.dumps(v, sort_keys=True))
    frame["k"] = frame["train_params"].map(lambda t: t.get("n_clusters", ""))
    frame["criterion"] = frame["train_params"].map(lambda t: t.get("n_clusters_criterion", ""))
    frame["k"] = pd.to_numeric(frame["k"], errors="coerce")
    cols = ["ari_own", "types_found", "clusters_used", "k", "ari_kmeans", "ari_leiden"]
    cols += ["bio", "batch", "total", "own", "knn", "own_on_labelled", "epochs", "seconds", "load"]
    cols = [c for c in cols if c in frame]
    keys = ["data", "n_cells", "tag", "variant"]
    mean = frame.groupby(keys, sort=False)[cols].mean().reset_index()
    mean.insert(4, "seeds", frame.groupby(keys, sort=False).size().to_numpy())
    lines = ["| " + " | ".join([*keys, "seeds", *cols]) + " |"]
    lines.append("|" + "---|" * (len(keys) + 1 + len(cols)))
    for _, r in mean.iterrows():
        values = [str(r[k]) for k in keys] + [str(r["seeds"])]
        values += [f"{r[c]:.3f}" if c.startswith(("ari", "bio", "bat", "tot", "own", "knn"))
                   else f"{r[c]:.1f}" for c in cols]  # fmt: skip
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("sim", "mop"), default="sim")
    parser.add_argument("--n-cells", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--n-clusters", type=int, default=-1, help="0: the model chooses")
    parser.add_argument("--variants", default="[{}]", help="JSON list of model options")
    parser.add_argument("--labelled", type=float, default=0.0, help="e.g. 0.01: label run")
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_mosaic_clusters.jsonl"))
    parser.add_argument("--report", nargs="*", type=Path, help="print a table of these runs")
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return
    for variant in json.loads(args.variants):
        for seed in (int(s) for s in args.seeds.split(",")):
            row = (run_labels if args.labelled > 0 else run)(args, variant, seed)
            line = json.dumps(row, default=float)
            print(line, flush=True)
            with args.out.open("a") as fh:
                fh.write(line + "\n")


if __name__ == "__main__":
    main()

"""Query mapping benchmark: one batch held out of training and mapped onto the reference
(``MosaicModel.load_query_data`` + ``train_query``) against one model trained on every batch
together (the held-out batch unlabelled), and the models' own label predictions against a
kNN on their latent.

    cd benchmarks
    python bench_mosaic_query.py --dataset mop --holdout rna_only
    python bench_mosaic_query.py --dataset sim --holdout rna_only --out OUT.md

Label transfer to the held-out cells (the reference's cells all labelled): kNN (15
neighbours, distance-weighted) from the reference cells in the latent, and the model's own
classifier (``predict_labels``); accuracy and balanced accuracy against ``cell_type``. scib
scores (:func:`cellweave.metrics.scib.scib_scores` with PCR comparison against the
unintegrated PCA + LSI embedding: Benchmarker's scale) of every cell's latent (reference +
query for the query route). Seconds of training; the query's ratio to the full model's.
With ``--own-labels``: the 1% split protocol (``labelled_split``) on all cells, the model's
own balanced accuracy against a 10-NN on its latent from the same 1% (issue 19 item 2).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from _report import header, markdown_table

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cellweave", "numpy", "torch", "lightning", "anndata", "mudata", "scikit-learn")
SIM_BATCHES = {
    "cite": ("rna", "protein"),
    "multiome": ("rna", "atac"),
    "asap": ("atac", "protein"),
    "rna_only": ("rna",),
}


def load(name: str, seed: int):
    import mudata as md

    import cellweave as cw

    if name == "mop":
        return md.read_h5mu(ROOT.parent / "shared" / "data" / "mop_mosaic_rna_atac.h5mu")
    if name == "mop_multiome":  # 12 samples (the cell-name prefix) as batches
        mdata = md.read_h5mu(ROOT.parent / "shared" / "data" / "mop_multiome_rna_atac.h5mu")
        mdata.obs["batch"] = [n.split("_")[0] for n in mdata.obs_names]
        return mdata
    return cw.sim.simulate_mosaic(n_cells=4000, batches=SIM_BATCHES, random_state=seed)


def subset(mdata, mask: np.ndarray):
    """The cells ``mask`` as a MuData of the modalities that hold some of them."""
    import mudata as md

    cells = mdata.obs_names[mask]
    parts = {k: a[a.obs_names.isin(cells)].copy() for k, a in mdata.mod.items()}
    with md.set_options(pull_on_update=False):
        out = md.MuData({k: a for k, a in parts.items() if a.n_obs})
    out.obs = mdata.obs.loc[out.obs_names, ["batch", "cell_type"]].copy()
    out.obs["batch"] = out.obs["batch"].astype(str)
    return out


def transfer(z_ref, y_ref, z, y) -> dict[str, float]:
    from sklearn.neighbors import KNeighborsClassifier

    from cellweave.metrics import label_transfer_scores

    clf = KNeighborsClassifier(15, weights="distance").fit(z_ref, y_ref)
    s = label_transfer_scores(y, clf.predict(z))
    return {"knn_acc": s["accuracy"], "knn_bal": s["balanced_accuracy"]}


def own(pred, y) -> dict[str, float]:
    from cellweave.metrics import label_transfer_scores

    s = label_transfer_scores(y, np.asarray(pred).astype(str))
    return {"own_acc": s["accuracy"], "own_bal": s["balanced_accuracy"]}


def run_query(mdata, holdout: str, args) -> tuple[pd.DataFrame, list[str]]:
    import peers_mosaic as peers
    from cellweave.metrics.scib import scib_scores
    from cellweave.mosaic import MosaicModel

    batch = mdata.obs["batch"].astype(str).to_numpy()
    types = mdata.obs["cell_type"].astype(str).to_numpy()
    held = batch == holdout
    if not held.any():
        raise SystemExit(f"--holdout {holdout!r} is not a batch ({sorted(set(batch))})")
    train = {"max_epochs": args.epochs, "progress": False, "random_state": args.seed}
    rows, notes = {}, []
    # PCR comparison's reference: the unintegrated PCA + LSI embedding (Benchmarker's scale)
    pre = peers.unintegrated(mdata, random_state=0).values

    # every batch together, the held-out batch unlabelled
    full_data = mdata.copy()
    labels = np.where(held, None, types).astype(object)
    t = time.perf_counter()
    full = MosaicModel(full_data, batch_key="batch", label_key=labels, random_state=args.seed)
    full.train(**train)
    full_s = time.perf_counter() - t
    z = full.get_latent_representation()
    pred = full.predict_labels().astype(str).to_numpy()
    rows["all batches"] = {
        **transfer(z[~held], types[~held], z[held], types[held]),
        **own(pred[held], types[held]),
        **_scib(scib_scores, z, types, batch, pre),
        "train_s": full_s,
        "epochs": full.train_params["epochs"],
    }

    # reference on the other batches, then the held-out batch as a query
    ref_data, query = subset(mdata, ~held), subset(mdata, held)
    t = time.perf_counter()
    ref = MosaicModel(ref_data, batch_key="batch", label_key="cell_type", random_state=args.seed)
    ref.train(**train)
    ref_s = time.perf_counter() - t
    z_ref = ref.get_latent_representation()
    y_ref = ref_data.obs["cell_type"].astype(str).to_numpy()
    y_query = query.obs["cell_type"].astype(str).to_numpy()
    for name, unfrozen in (("query (frozen)", False), ("query (fine-tuned)", True)):
        if unfrozen and not args.fine_tune:
            continue
        t = time.perf_counter()
        model = MosaicModel.load_query_data(ref, query, batch_key="batch", unfrozen=unfrozen)
        zero = model.get_latent_representation()
        if name == "query (frozen)":
            rows["query, untrained (reference encoder)"] = transfer(z_ref, y_ref, zero, y_query)
        model.train_query(**train)
        q_s = time.perf_counter() - t
        zq = model.get_latent_representation()
        knn = model.knn_labels()[0].astype(str).to_numpy()
        combined = np.vstack([z_ref, zq])
        rows[name] = {
            **transfer(z_ref, y_ref, zq, y_query),
            **own(model.predict_labels().astype(str).to_numpy(), y_query),
            **_scib(
                scib_scores,
                combined,
                np.concatenate([y_ref, y_query]),
                np.concatenate([ref_data.obs["batch"].astype(str).to_numpy(), [holdout] * len(zq)]),
                pre[mdata.obs_names.get_indexer(ref_data.obs_names.append(query.obs_names))],
            ),
            "train_s": q_s,
            "epochs": model.train_params["epochs"],
            "model_knn_acc": float((knn == y_query).mean()),
            "min_delta": model.query_info.get("min_delta"),
            "kept_start": model.query_info.get("kept_start"),
        }
    rows["reference (other batches)"] = {"train_s": ref_s, "epochs": ref.train_params["epochs"]}
    notes.append(
        f"query training time / all-batches training time: "
        f"{rows['query (frozen)']['train_s'] / full_s:.3f} (frozen)"
    )
    return pd.DataFrame(rows).T, notes


def _scib(fn, z, labels, batches, pre) -> dict[str, float]:
    s = fn(z, labels, batches, pre_embedding=pre)
    return {"bio": s["bio"], "batch": s["batch"], "total": s["total"]}


def run_own_labels(mdata, args) -> pd.DataFrame:
    """The 1% split: the model's own balanced accuracy against a 10-NN on its latent."""
    from cellweave.metrics.scib import label_transfer_balanced_accuracy, labelled_split
    from cellweave.mosaic import MosaicModel
    from cellweave.mosaic.labels import spread_labels

    types = mdata.obs["cell_type"].astype(str).to_numpy()
    keep = labelled_split(types, train_size=0.01, random_state=0)
    labels = np.where(keep, types, None).astype(object)
    model = MosaicModel(mdata.copy(), batch_key="batch", label_key=labels, random_state=args.seed)
    model.train(max_epochs=args.epochs, progress=False, random_state=args.seed)
    z = model.get_latent_representation()
    labels_, probs = model.predict_labels(return_probabilities=True)
    pred = labels_.astype(str).to_numpy()
    spread = spread_labels(z, probs.to_numpy(), model.data.label_codes)
    spread_pred = np.asarray(probs.columns)[spread.argmax(1)]
    return pd.DataFrame(
        {
            "1% split": {
                "model_own_balanced": label_transfer_balanced_accuracy(z, types, predictions=pred),
                "model_spread_balanced": label_transfer_balanced_accuracy(
                    z, types, predictions=spread_pred
                ),
                "knn10_on_latent_balanced": label_transfer_balanced_accuracy(z, types),
                "epochs": model.train_params["epochs"],
            }
        }
    ).T


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mop", choices=["mop", "mop_multiome", "sim"])
    p.add_argument("--holdout", default="rna_only")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fine-tune", action="store_true", help="also the unfrozen query")
    p.add_argument("--own-labels", action="store_true", help="also the 1%% split (item 2)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    mdata = load(args.dataset, args.seed)
    lines = header(f"Query mapping: {args.dataset}, {args.holdout} held out", PACKAGES)
    lines += [f"- load average before: {os.getloadavg()[0]:.2f}", ""]
    table, notes = run_query(mdata, args.holdout, args)
    lines += [*markdown_table(table, digits=3, index_name="route"), ""]
    lines += [f"- {n}" for n in notes]
    lines += [f"- load average after: {os.getloadavg()[0]:.2f}"]
    if args.own_labels:
        lines += ["", *markdown_table(run_own_labels(mdata, args), digits=3)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

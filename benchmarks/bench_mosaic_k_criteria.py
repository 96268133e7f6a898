"""Cluster-count criteria on the mosaic model's latent (issue 19, item 1): which ``k`` each
picks, and the ARI with ``cell_type`` of k-means at that ``k``.

Usage (repository root)::

    export OMP_NUM_THREADS=1 PYTHONPATH=src
    python benchmarks/bench_mosaic_k_criteria.py --data sim
    python benchmarks/bench_mosaic_k_criteria.py --data mop --n-cells 3000

Trains the default model without labels (marginal mixture, ``k`` chosen by the model), keeps
the latent on which ``k`` is first chosen (warm-up: a sample of the training cells) and the
final posterior means, and scores k-means for ``k`` = 2..30 on each: Calinski-Harabasz,
silhouette (2,000 cells), BIC of a diagonal Gaussian mixture, its 2-fold held-out
log-likelihood, stability (ARI of k-means fitted on two random halves, both predicting every
cell) and the gap statistic (:func:`cellweave.mosaic.clusters.gap_statistic`, 5 uniform
references). Data as in ``bench_mosaic_clusters.py``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench_mosaic_clusters import load

KS = range(2, 31)


def scores(z: np.ndarray, truth: np.ndarray | None) -> dict[int, dict[str, float]]:
    """Every criterion for every ``k`` in :data:`KS` on ``z``."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, silhouette_score
    from sklearn.mixture import GaussianMixture

    from cellweave.mosaic.clusters import gap_statistic, uniform_references

    z = np.asarray(z, dtype=np.float64)
    half = np.random.default_rng(0).permutation(len(z))
    a, b = half[: len(z) // 2], half[len(z) // 2 :]
    refs = uniform_references(z, 5, 0)
    out = {}
    for k in KS:
        km = KMeans(k, n_init=3, random_state=0).fit(z)
        lab = km.labels_
        gmm = GaussianMixture(k, covariance_type="diag", means_init=km.cluster_centers_,
                              reg_covar=1e-6, random_state=0).fit(z)  # fmt: skip
        held = 0.0
        for tr, te in ((a, b), (b, a)):
            c = KMeans(k, n_init=3, random_state=0).fit(z[tr]).cluster_centers_
            g = GaussianMixture(k, covariance_type="diag", means_init=c, reg_covar=1e-6,
                                random_state=0).fit(z[tr])  # fmt: skip
            held += g.score(z[te]) / 2
        la = KMeans(k, n_init=3, random_state=1).fit(z[a]).predict(z)
        lb = KMeans(k, n_init=3, random_state=2).fit(z[b]).predict(z)
        gap, s = gap_statistic(z, k, refs)
        out[k] = {
            "ari": adjusted_rand_score(truth, lab) if truth is not None else float("nan"),
            "calinski_harabasz": calinski_harabasz_score(z, lab),
            "silhouette": silhouette_score(z, lab, sample_size=min(2000, len(z)), random_state=0),
            "bic": gmm.bic(z), "heldout_ll": held, "stability": adjusted_rand_score(la, lb),
            "gap": gap, "gap_se": s,
        }  # fmt: skip
    return out


def picks(table: dict[int, dict[str, float]]) -> dict[str, int]:
    """The ``k`` each criterion picks."""
    ks = sorted(table)
    gap = next(
        (k for k in ks[:-1] if table[k]["gap"] >= table[k + 1]["gap"] - table[k + 1]["gap_se"]),
        max(ks, key=lambda k: table[k]["gap"]),
    )
    stable = [k for k in ks if table[k]["stability"] >= 0.8]
    return {
        "calinski_harabasz": max(ks, key=lambda k: table[k]["calinski_harabasz"]),
        "silhouette": max(ks, key=lambda k: table[k]["silhouette"]),
        "bic": min(ks, key=lambda k: table[k]["bic"]),
        "heldout_ll": max(ks, key=lambda k: table[k]["heldout_ll"]),
        "stability": max(ks, key=lambda k: table[k]["stability"]),
        "stability>=0.8": max(stable or [ks[0]]),
        "gap_statistic": gap,
    }


def main() -> None:
    import cellweave.mosaic.vae as vae
    from cellweave.mosaic import integrate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("sim", "mop"), default="sim")
    parser.add_argument("--n-cells", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    latents: list[np.ndarray] = []
    choose = vae.choose_k

    def keep(z, k_max, **kw):  # the latent the model chooses k on
        latents.append(np.array(z))
        return choose(z, k_max, **kw)

    vae.choose_k = keep
    mdata = load(args.data, args.n_cells, args.seed)
    integrate(mdata, batch_key="batch", max_epochs=args.epochs, random_state=args.seed,
              train_kwargs={"progress": False})  # fmt: skip
    truth = mdata.obs["cell_type"].astype(str).to_numpy()
    final = scores(np.asarray(mdata.obsm["X_cellweave"]), truth)
    result = {
        "data": args.data, "seed": args.seed,
        "chosen_in_training": mdata.uns["cellweave"]["params"]["train"]["n_clusters"],
        "warm_up": picks(scores(latents[0], None)),
        "final": {c: (k, round(final[k]["ari"], 3)) for c, k in picks(final).items()},
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()

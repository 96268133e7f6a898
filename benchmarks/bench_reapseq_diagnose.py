"""Why cellweave's REAP-seq protein imputation ties totalVI: per protein, per decoding, per path.

One seed of the ``bench_mosaic.py --datasets reapseq`` split (protein of ``sample2`` hidden,
4,000 HVGs). Trains cellweave with its defaults (or ``--cellweave-param``) and reports, as
median per-protein Pearson on log1p over the non-control proteins (``protein_scores``):

* **per protein**: cellweave against totalVI / other predictions given as ``--predictions
  NAME=FILE.npy`` (rows = the hidden cells in order), with each protein's mean count and
  share of zeros in the hidden sample;
* **decoding**: the posterior mean decoded (the default), the decoded mean averaged over 20
  posterior samples of ``z``, ``E[log1p x]`` under the decoder's NB, and the mean over each
  cell's 10 nearest neighbours in the RNA-only latent;
* **self-check**: the same scores on the model's own validation cells of the protein batch
  (held out of training), decoded from RNA only and from RNA + protein; a criterion that
  never reads the hidden sample;
* **ceilings**: ridge regression from 50 RNA principal components to log1p protein, trained
  on the measured sample, and 5-fold within the hidden sample (an upper reference that reads
  the hidden truth: never used to choose anything);
* **ensembles**: the mean log1p of cellweave and each given prediction.

Example (from ``benchmarks/``, bench venv)::

    OMP_NUM_THREADS=1 python bench_reapseq_diagnose.py --seed 0 \\
        --predictions totalVI=tvi_s0.npy --out OUT.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import header, markdown_table  # noqa: E402
from bench_mosaic import PACKAGES, load_reapseq, per_protein_pearson, protein_scores  # noqa: E402

N_SAMPLES = 20  # posterior samples of z (decoding) and NB draws per sample (E[log1p])
K_NEIGHBOURS = 10


def nb_expected_log1p(
    mu: np.ndarray, theta: np.ndarray, *, n_draws: int = 200, seed: int = 0
) -> np.ndarray:
    """Monte-Carlo ``E[log1p(x)]`` for ``x ~ NB(mu, theta)`` (Gamma-Poisson draws; ``theta``
    broadcasts over ``mu``'s rows)."""
    rng = np.random.default_rng(seed)
    mu = np.asarray(mu, dtype=np.float64)
    theta = np.broadcast_to(np.asarray(theta, dtype=np.float64), mu.shape)
    total = np.zeros_like(mu)
    for _ in range(n_draws):
        total += np.log1p(rng.poisson(rng.gamma(theta, mu / theta)))
    return total / n_draws


def neighbour_mean(latent: np.ndarray, values: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Mean log1p ``values`` over the ``k`` nearest cells (all rows of ``latent``) of ``rows``,
    back on the count scale."""
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=k).fit(latent).kneighbors(latent[rows])
    return np.expm1(np.log1p(values)[idx].mean(1))


def log_ensemble(predictions: list[np.ndarray]) -> np.ndarray:
    """Counts whose log1p is the mean log1p of ``predictions`` (each protein on its own scale
    is what the log1p Pearson reads)."""
    return np.expm1(np.mean([np.log1p(np.asarray(p, dtype=np.float64)) for p in predictions], 0))


def ridge_ceilings(rna, protein: np.ndarray, hidden: np.ndarray, names, seed: int) -> dict:
    """Ridge (alpha 1) from 50 PCs of log-normalized RNA to log1p protein: trained on the
    measured cells and scored on the hidden ones, and 5-fold within the hidden cells."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    import cellweave as cw

    pcs = cw.pp.pca(cw.pp.log_normalize(rna), n_comps=50, random_state=seed)
    target = np.log1p(protein)
    h, o = np.flatnonzero(hidden), np.flatnonzero(~hidden)
    across = Ridge(alpha=1.0).fit(pcs[o], target[o]).predict(pcs[h])
    within = np.zeros((h.size, target.shape[1]))
    for train, test in KFold(5, shuffle=True, random_state=seed).split(h):
        fit = Ridge(alpha=1.0).fit(pcs[h[train]], target[h[train]])
        within[test] = fit.predict(pcs[h[test]])
    score = lambda x: protein_scores(np.expm1(x), protein[h], names)["pearson_median"]  # noqa: E731
    return {
        "ridge, measured sample -> hidden": score(across),
        "ridge, 5-fold within hidden": score(within),
    }


def decodings(model, cells: np.ndarray, batch: int, seed: int) -> dict[str, np.ndarray]:
    """The protein of ``cells`` decoded from RNA only, four ways (see the module docstring)."""
    import torch

    i = model.data.names.index("protein")
    post = model.infer(cells, use_modalities=["rna"])
    mean = model.decode("protein", post["mean"], transform_batch=batch, library_size=None)
    gen = torch.Generator().manual_seed(seed)
    z, std = torch.as_tensor(post["mean"]), torch.exp(0.5 * torch.as_tensor(post["log_var"]))
    samples = [
        model.decode(
            "protein",
            z + std * torch.randn(z.shape, generator=gen),
            transform_batch=batch,
            library_size=None,
        )
        for _ in range(N_SAMPLES)
    ]
    theta = torch.exp(model.module.decoders[i].log_theta[batch]).detach().numpy()
    return {
        "posterior mean (default)": mean,
        f"mean over {N_SAMPLES} posterior samples": np.mean(samples, 0),
        "E[log1p x] under the NB": np.expm1(nb_expected_log1p(mean, theta, seed=seed)),
    }


def _say(message: str) -> None:
    print(f"[reapseq-diagnose] {message}", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--hide", default="sample2")
    parser.add_argument("--genes", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cellweave-param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--predictions", action="append", default=[], metavar="NAME=FILE.npy")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the model's")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (2 on a loaded 2-core machine ran 100x slower here)",
    )
    parser.add_argument("--save-predictions", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("reapseq_diagnose.md"))
    return parser.parse_args()


def train(args: argparse.Namespace, mosaic, params: dict):
    """The trained model, its training seconds and the load average before it."""
    import torch

    from cellweave.mosaic import MosaicModel

    torch.set_num_threads(args.threads)
    load, t0 = os.getloadavg()[0], time.perf_counter()
    model = MosaicModel(mosaic, batch_key="batch", random_state=args.seed, **params)
    epochs = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    model.train(random_state=args.seed, num_threads=args.threads, **epochs)
    return model, time.perf_counter() - t0, load


def self_check(model, protein, names, hidden: np.ndarray, seed: int) -> pd.DataFrame:
    """Median per-protein Pearson of every decoding, on the hidden cells and on the model's
    validation cells of the measured sample (never trained on)."""
    from cellweave.mosaic.sampling import split_cells

    codes = model.data.batch_codes
    measured = int(np.bincount(codes[~hidden]).argmax())
    _, val = split_cells(codes, 0.1, np.random.default_rng(seed), min_cells=2)
    val = val[codes[val] == measured]
    groups = (("hidden sample", np.flatnonzero(hidden)), ("held-out measured cells", val))

    def score(pred, cells):
        return protein_scores(pred, protein[cells], names)["pearson_median"]

    rows: dict[str, dict[str, float]] = {}
    for name, cells in groups:
        for label, pred in decodings(model, cells, measured, seed).items():
            rows.setdefault(label, {})[name] = score(pred, cells)
    latent = model.infer(np.arange(model.data.n_cells), use_modalities=["rna"])["mean"]
    everyone = model.decode("protein", latent, transform_batch=measured, library_size=None)
    for name, cells in groups:
        near = neighbour_mean(latent, everyone, cells, K_NEIGHBOURS)
        rows.setdefault(f"mean of {K_NEIGHBOURS} latent neighbours", {})[name] = score(near, cells)
    joint = np.asarray(model.impute_modality("protein", cells=val).X)
    rows["RNA + protein (self-reconstruction)"] = {"held-out measured cells": score(joint, val)}
    return pd.DataFrame(rows).T


def per_protein_table(cellweave, others: dict, truth: np.ndarray, names) -> pd.DataFrame:
    """Per-protein Pearson of cellweave and the other predictions, with each protein's mean
    count and share of zeros, by mean count."""
    table = pd.DataFrame(
        {
            "mean count": pd.Series(truth.mean(0), index=names),
            "zeros": pd.Series((truth == 0).mean(0), index=names),
            "cellweave": per_protein_pearson(cellweave, truth, names),
            **{k: per_protein_pearson(v, truth, names) for k, v in others.items()},
        }
    )
    return table.dropna(subset=["cellweave"]).sort_values("mean count")


def main() -> None:
    args = parse_args()
    import peers_mosaic as peers
    from cellweave.cli._common import parse_params

    params = parse_params(tuple(args.cellweave_param))
    others = {k: np.load(v) for k, v in (p.split("=", 1) for p in args.predictions)}
    truth, hidden, mosaic = load_reapseq(args.data_dir, args.hide, args.genes)
    names = truth["protein"].var_names
    protein = peers.full_matrix(truth, "protein").toarray()
    model, seconds, load = train(args, mosaic, params)
    _say(f"trained in {seconds:.0f} s")
    checks = self_check(model, protein, names, hidden, args.seed)
    cellweave = np.asarray(model.impute_modality("protein", cells="missing").X)
    if args.save_predictions:
        np.save(args.save_predictions, cellweave)
    _say("decoded; ridge ceilings")
    extra = ridge_ceilings(peers.full_matrix(truth, "rna"), protein, hidden, names, args.seed)
    for k, v in others.items():
        extra[f"{k} alone"] = protein_scores(v, protein[hidden], names)["pearson_median"]
        both = log_ensemble([cellweave, v])
        extra[f"ensemble cellweave + {k} (mean log1p)"] = protein_scores(
            both, protein[hidden], names
        )["pearson_median"]
    md = header("REAP-seq protein from RNA: diagnosis", PACKAGES)
    md += [
        f"- seed {args.seed}; cellweave params {params or 'defaults'}; trained {seconds:.0f} s "
        f"({model.train_params.get('epochs')} epochs, {args.threads} torch thread(s)), load "
        f"average {load:.1f} before",
        "",
        "## Decoding and self-check (median per-protein Pearson on log1p)",
        "",
        *markdown_table(checks, digits=4),
        "",
        "## Ceilings and ensembles (hidden sample)",
        "",
        *markdown_table(pd.DataFrame({"pearson_median": extra}), digits=4),
        "",
        "## Per protein (hidden sample)",
        "",
        *markdown_table(per_protein_table(cellweave, others, protein[hidden], names), digits=3),
        "",
    ]
    args.out.write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

"""Does the attention mapper's neighbour view help gene prediction? Leave-gene-out CV (the
folds of ``bench_mapping.py``: 5, rng 0) of ``attention`` with and without its neighbour
view (``spatial_key=None``) for several model seeds (the folds stay fixed), paired gene by
gene.

    cd benchmarks && OMP_NUM_THREADS=1 python bench_mapping_neighbours.py \\
        --datasets merfish,bdtnp --seeds 0,1,2 --out results/mapping_neighbours.md

Prints and writes one table (median PCC / SSIM per variant and seed, normalized scheme) and
one paired line per data set and variant: the mean per-gene difference from
``attention_no_neighbours`` over seeds, the share of genes where the variant is better, and
the two-sided Wilcoxon signed-rank p over gene x seed pairs.

``--depth N``: a noisy panel. Every method maps a Poisson thinning of the spatial panel to
about N counts per spot (the values taken as rates; seed fixed per fold), and is scored
against the clean held-out genes, so a view that pools neighbours can show what it
recovers. ``--variants``: also ``attention_ring1`` (order-1 ring only) and
``attention_ring2_equal`` (order-2 ring weighted as order 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from _report import header, markdown_table
from bench_mapping import DATASETS, NOT_COUNTS, PACKAGES, ROOT

#: Variant name -> options changed from the default ``attention``.
VARIANTS = {"attention": {}, "attention_no_neighbours": {"spatial_key": None}}
#: More variants: the weight of the order-2 ring (default ``(1.0, 0.5)``).
RING_VARIANTS = {
    "attention_ring1": {"ring_weights": (1.0,)},
    "attention_ring2_equal": {"ring_weights": (1.0, 1.0)},
}
#: The variant every other one is compared with.
BASE = "attention_no_neighbours"


def _seeded(predict, seed: int):
    """The predictor with the model seed fixed to ``seed`` (the folds keep theirs)."""

    def run(*args, random_state: int = 0, **kwargs):
        return predict(*args, random_state=seed, **kwargs)

    return run


def thinned(adata, depth: float, seed: int):
    """``adata`` with its values replaced by Poisson counts of about ``depth`` per row (the
    values, scaled to that mean total, taken as rates)."""
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    X = np.asarray(X, dtype=np.float64)
    rates = X * (float(depth) / max(X.sum(axis=1).mean(), 1e-12))
    out = adata.copy()
    out.X = np.random.default_rng(seed).poisson(rates).astype(np.float32)
    return out


def _noisy(predict, depth: float | None):
    """The predictor mapping a thinned panel (``depth`` counts per spot; ``None``: as is)."""
    if depth is None:
        return predict

    def run(adata_sc, adata_sp, genes, **kwargs):
        seed = sum(map(ord, "".join(sorted(genes)))) % 2**31  # fixed per fold
        return predict(adata_sc, thinned(adata_sp, depth, seed), genes, **kwargs)

    return run


def evaluate_seeds(
    name: str,
    data_dir: Path,
    seeds: list[int],
    folds: int,
    variants: dict[str, dict] = VARIANTS,
    depth: float | None = None,
) -> pd.DataFrame:
    """Per-gene scores (normalized scheme) of every variant and seed on data set ``name``
    (``depth``: the panel thinned, :func:`thinned`; the truth stays clean)."""
    import anndata as ad

    from cellweave.mapping.evaluate import available_methods, evaluate

    sc_file, sp_file = DATASETS[name]
    adata_sc, adata_sp = ad.read_h5ad(data_dir / sc_file), ad.read_h5ad(data_dir / sp_file)
    base = available_methods()["attention"]
    params = {**base.params, **({} if depth else NOT_COUNTS.get(name, {}))}
    rows = []
    for seed in seeds:
        spec = {
            variant: replace(
                base,
                name=variant,
                predict=_noisy(_seeded(base.predict, seed), depth),
                params={**params, **options},
            )
            for variant, options in variants.items()
        }
        t0 = time.perf_counter()
        result = evaluate(adata_sc, adata_sp, methods=spec, folds=folds, scheme="normalized")
        print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        part = result.per_gene[result.per_gene["scheme"] == "normalized"]
        rows.append(part.assign(seed=seed, data=name))
    return pd.concat(rows, ignore_index=True)


def report(per_gene: pd.DataFrame) -> list[str]:
    """Markdown: medians per data set, variant and seed, and the paired comparison."""
    from scipy.stats import wilcoxon

    medians = per_gene.groupby(["data", "method", "seed"])[["PCC", "SSIM"]].median().round(3)
    md = ["", *markdown_table(medians.reset_index().set_index("data"), digits=3), ""]
    for name, part in per_gene.groupby("data"):
        for variant in sorted(set(part["method"]) - {BASE, "depth"}):
            line = []
            for metric in ("PCC", "SSIM"):
                wide = part.pivot_table(index=["gene", "seed"], columns="method", values=metric)
                wide = wide[[variant, BASE]].dropna()
                diff = wide[variant] - wide[BASE]
                p = wilcoxon(wide[variant], wide[BASE]).pvalue if diff.any() else 1.0
                line.append(
                    f"{metric} {diff.mean():+.4f} (better on {(diff > 0).mean():.0%} of "
                    f"{len(diff)} gene x seed pairs, Wilcoxon p {p:.2g})"
                )
            md.append(f"- {name}: `{variant}` minus `{BASE}`: " + "; ".join(line))
    return md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="merfish,bdtnp")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--depth", type=float, default=None, help="thin the panel (counts)")
    parser.add_argument("--variants", action="store_true", help="also the ring weights")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = {**VARIANTS, **(RING_VARIANTS if args.variants else {})}
    per_gene = pd.concat(
        [
            evaluate_seeds(n, args.data_dir, seeds, args.folds, variants, args.depth)
            for n in args.datasets.split(",")
        ]
    )
    md = header("Attention mapper: the neighbour view on gene prediction", PACKAGES)
    md += report(per_gene)
    print("\n".join(md))
    if args.out is not None:
        args.out.write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()

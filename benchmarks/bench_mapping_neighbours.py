"""Does the attention mapper's neighbour view help gene prediction? Leave-gene-out CV (the
folds of ``bench_mapping.py``: 5, rng 0) of ``attention`` with and without its neighbour
view (``spatial_key=None``) for several model seeds (the folds stay fixed), paired gene by
gene.

    cd benchmarks && OMP_NUM_THREADS=1 python bench_mapping_neighbours.py \\
        --datasets merfish,bdtnp --seeds 0,1,2 --out results/mapping_neighbours.md

Prints and writes one table (median PCC / SSIM per variant and seed, normalized scheme) and
one paired line per data set: the mean per-gene difference over seeds, the share of genes
where the neighbour view is better, and the two-sided Wilcoxon signed-rank p over
gene x seed pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from _report import header, markdown_table
from bench_mapping import DATASETS, NOT_COUNTS, PACKAGES, ROOT

#: Variant name -> options changed from the default ``attention``.
VARIANTS = {"attention": {}, "attention_no_neighbours": {"spatial_key": None}}


def _seeded(predict, seed: int):
    """The predictor with the model seed fixed to ``seed`` (the folds keep theirs)."""

    def run(*args, random_state: int = 0, **kwargs):
        return predict(*args, random_state=seed, **kwargs)

    return run


def evaluate_seeds(name: str, data_dir: Path, seeds: list[int], folds: int) -> pd.DataFrame:
    """Per-gene scores (normalized scheme) of every variant and seed on data set ``name``."""
    import anndata as ad

    from cellweave.mapping.evaluate import available_methods, evaluate

    sc_file, sp_file = DATASETS[name]
    adata_sc, adata_sp = ad.read_h5ad(data_dir / sc_file), ad.read_h5ad(data_dir / sp_file)
    base = available_methods()["attention"]
    params = {**base.params, **NOT_COUNTS.get(name, {})}
    rows = []
    for seed in seeds:
        spec = {
            variant: replace(
                base,
                name=variant,
                predict=_seeded(base.predict, seed),
                params={**params, **options},
            )
            for variant, options in VARIANTS.items()
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
        line = []
        for metric in ("PCC", "SSIM"):
            wide = part.pivot_table(index=["gene", "seed"], columns="method", values=metric)
            wide = wide[list(VARIANTS)].dropna()
            diff = wide["attention"] - wide["attention_no_neighbours"]
            p = wilcoxon(wide["attention"], wide["attention_no_neighbours"]).pvalue
            line.append(
                f"{metric} {diff.mean():+.4f} (neighbours better on {(diff > 0).mean():.0%} of "
                f"{len(diff)} gene x seed pairs, Wilcoxon p {p:.2g})"
            )
        md.append(f"- {name}: `attention` minus `attention_no_neighbours`: " + "; ".join(line))
    return md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="merfish,bdtnp")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    per_gene = pd.concat(
        [evaluate_seeds(n, args.data_dir, seeds, args.folds) for n in args.datasets.split(",")]
    )
    md = header("Attention mapper: the neighbour view on gene prediction", PACKAGES)
    md += report(per_gene)
    print("\n".join(md))
    if args.out is not None:
        args.out.write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()

"""The differential test of ``tests/test_mosaic_model.py`` over model seeds (issue 19).

Usage (repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_mosaic_de_seeds.py \\
        --variant '{"mixture": "marginal"}' --seeds 0,1,2,3,4

The test's data (900 simulated cells: cite, multiome, atac_only; 10% labels) and model
(small widths, 40 epochs, batch 128); per seed the Spearman correlation of the model's
``lfc_mean`` (type_0 vs type_1, 2,000 pairs) with the true log fold changes, and the same
from the decoded posterior means of the cells that measured RNA and of the ATAC-only cells
(which part of the cells moves the test).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
from scipy import stats

BATCHES = {"cite": ("rna", "protein"), "multiome": ("rna", "atac"), "atac_only": ("atac",)}
FAST = {"encoder_hidden": (64,), "n_embedding": 32, "decoder_hidden": (32,), "n_latent": 8}


def decoded(model, z, group1, group2, cells, lfc) -> float:
    """Spearman with ``lfc`` of the log fold change of the decoded posterior means of the
    ``cells`` in ``group1`` against those in ``group2`` (the multiome batch's decoder)."""
    rho = [
        model.decode("rna", z[g & cells], transform_batch="multiome", library_size=1.0)
        for g in (group1, group2)
    ]
    return float(stats.spearmanr(np.log2(rho[0]).mean(0) - np.log2(rho[1]).mean(0), lfc)[0])


def main() -> None:
    from cellweave.mosaic import MosaicModel
    from cellweave.sim import simulate_mosaic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="{}", help="JSON model options")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    mdata, full = simulate_mosaic(
        n_cells=900, batches=BATCHES, n_genes=80, n_peaks=200, n_proteins=10,
        n_cell_types=4, latent_dim=4, return_full=True, random_state=0,
    )  # fmt: skip
    keep = np.random.default_rng(0).random(mdata.n_obs) < 0.1
    mdata.obs["some_labels"] = mdata.obs["cell_type"].astype(str).where(keep, None).to_numpy()
    expr = full["rna"].layers["true_expression"]
    prop = expr / expr.sum(1, keepdims=True)
    types = full.obs["cell_type"].astype(str).to_numpy()
    lfc = np.log2(prop[types == "type_0"].mean(0)) - np.log2(prop[types == "type_1"].mean(0))
    true = pd.Series(lfc, index=full["rna"].var_names)
    has_rna = mdata.obs_names.isin(mdata["rna"].obs_names)
    for seed in (int(s) for s in args.seeds.split(",")):
        model = MosaicModel(mdata, batch_key="batch", label_key="some_labels",
                            random_state=seed, **FAST, **json.loads(args.variant))  # fmt: skip
        model.train(max_epochs=40, batch_size=128, progress=False)
        de = model.differential("cell_type", "type_0", "type_1", modality="rna", n_samples=2000)
        z = model.get_latent_representation()

        row = {
            "variant": args.variant, "seed": seed,
            "test_spearman": stats.spearmanr(de["lfc_mean"], true.loc[de.index])[0],
            "cells_with_rna": decoded(model, z, types == "type_0", types == "type_1", has_rna, lfc),
            "atac_only_cells": decoded(model, z, types == "type_0", types == "type_1", ~has_rna,
                                       lfc),
            "mixture": model.train_params["mixture"],
        }  # fmt: skip
        print(json.dumps(row, default=float), flush=True)


if __name__ == "__main__":
    main()

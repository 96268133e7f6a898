"""Golden values of scib-metrics 0.5.10's Benchmarker for tests/test_metrics_scib_golden.py.

Run in an environment with scib-metrics (the bench extra), from the project root:

    PYTHONPATH=src python benchmarks/scib_golden.py

It simulates a small RNA data set (cellweave.sim.simulate_mosaic: 600 cells, 3 batches with a
strong batch effect, 6 cell types), takes the PCA of its log-normalised counts as the
unintegrated embedding and that PCA with 80% of each batch's mean removed as a crude
"integrated" one, and writes

- tests/data/scib_benchmarker_golden.npz: the two embeddings, labels and batches;
- tests/data/scib_benchmarker_golden.json: Benchmarker's scores of both embeddings
  (Leiden NMI/ARI, BRAS off, PCR comparison on against the unintegrated embedding, classic
  silhouette batch added, min-max scaling off; Total = 0.6 bio + 0.4 batch) and the
  versions that produced them.

The test compares cellweave.metrics.scib.scib_scores with the JSON to 3 decimals.
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data"
COMMAND = "PYTHONPATH=src python benchmarks/scib_golden.py  (with scib-metrics installed)"


def golden_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """The embeddings, labels and batches the golden values are computed on."""
    import cellweave as cw

    mdata = cw.sim.simulate_mosaic(
        n_cells=600,
        batches={"b1": ("rna",), "b2": ("rna",), "b3": ("rna",)},
        n_genes=300,
        n_cell_types=6,
        batch_effect=1.0,
        random_state=seed,
    )
    rna = mdata["rna"]
    pre = cw.pp.pca(cw.pp.log_normalize(rna.X), n_comps=20, random_state=seed)
    pre = np.asarray(pre, dtype=np.float32)
    batches = mdata.obs.loc[rna.obs_names, "batch"].to_numpy().astype(str)
    labels = mdata.obs.loc[rna.obs_names, "cell_type"].to_numpy().astype(str)
    post = pre.copy()
    for b in np.unique(batches):  # 80% of each batch's offset removed: PCR comparison < 1
        post[batches == b] -= 0.8 * post[batches == b].mean(axis=0)
    return {"pre": pre, "post": post, "labels": labels, "batches": batches}


def main() -> None:
    from cellweave.metrics.scib_reference import benchmarker_scores

    data = golden_inputs()
    scores = benchmarker_scores(
        {"unintegrated": data["pre"], "integrated": data["post"]},
        data["labels"],
        data["batches"],
        data["pre"],
    )
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "scib_benchmarker_golden.npz", **data)
    doc = {
        "about": "scib-metrics Benchmarker scores of the embeddings in "
        "scib_benchmarker_golden.npz ('pre' = unintegrated, 'post' = integrated); "
        "Leiden NMI/ARI, BRAS off, PCR comparison on (pre_integrated_embedding_obsm_key = "
        "'pre'), silhouette batch added, min_max_scale=False, Total = 0.6 bio + 0.4 batch",
        "regenerate": COMMAND,
        "versions": {
            "python": platform.python_version(),
            **{p: version(p) for p in ("scib-metrics", "jax", "pynndescent", "igraph")},
        },
        "scores": {"pre": scores["unintegrated"], "post": scores["integrated"]},
    }
    (OUT / "scib_benchmarker_golden.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["scores"], indent=1))


if __name__ == "__main__":
    main()

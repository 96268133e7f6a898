"""Scale benchmark: a 1M-cell mosaic and a 1M-spot spatial data set streamed from disk.

    cd benchmarks
    nice python bench_scale.py                              # 1M cells, 1M spots, defaults
    nice python bench_scale.py --cells 50000 --spots 50000  # a quick run
    nice python bench_scale.py --steps 200 --impute-epochs 1

Phases (each in its own process, so that each peak RSS is its own):

``build``
    Writes the data in chunks of rows, so the build never holds a whole matrix: a cheap
    synthetic with realistic sparsity from a latent generative process (10 cell types; per
    type log-normal gene profiles and accessibility; RNA ``Poisson(library * profile)`` with
    log-normal library sizes, ATAC ``Bernoulli(depth * accessibility)``). The mosaic has
    three batches: multiome (RNA + ATAC, 40%), RNA only (30%), ATAC only (30%). The spatial
    set has a square lattice of spots whose cell type follows smooth domains.
``integrate``
    ``cellweave.io.read(backed=True)`` then the mosaic model's training
    (:class:`cellweave.mosaic.MosaicModel`, its :class:`MosaicDataModule` in backed mode:
    blocks of consecutive cells read per step) through :func:`cellweave.train.fit` for
    ``--steps`` optimiser steps (validation off), extrapolated to one epoch (the steps of
    one pass over the cells). The data-loading share of a step is the time spent in
    ``transfer_batch_to_device`` (reading the rows from disk, building the encoder inputs)
    over the wall time between steps.
``impute``
    ``cellweave.impute.impute_backed`` (method ``mf``): penalties chosen on an in-memory
    window of spots, then the refit streams blocks of spots from disk (``--impute-epochs``
    epochs, extrapolated to the default 15) and the imputed layer is written in blocks.
    Loader share: time in the reads of :class:`cellweave.impute.backed.BackedCounts`
    over the training time.

Writes benchmarks/results/scale.md (sections ``## 1M cells: mosaic integration streamed``
and ``## 1M spots: imputation streamed``; other sections of the file are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.md"
PACKAGES = ("cellweave", "numpy", "scipy", "torch", "lightning", "anndata", "mudata", "h5py")
GOAL_RSS_GB = 8.0
GOAL_LOAD_SHARE = 0.5
SECTION = "## Streaming from disk"


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


# ----------------------------------------------------------------------------- synthetic


def _profiles(rng, n_types: int, n_features: int, sigma: float) -> np.ndarray:
    """Per-type proportions (log-normal around a shared baseline, rows sum to 1)."""
    base = rng.normal(0, 1.0, n_features)
    logits = base + rng.normal(0, sigma, (n_types, n_features))
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def _rna_rows(rng, types, profile, mean_library: float):
    from scipy import sparse

    lib = rng.lognormal(np.log(mean_library), 0.5, types.size)
    counts = rng.poisson(lib[:, None] * profile[types]).astype(np.float32)
    return sparse.csr_matrix(counts)


def _atac_rows(rng, types, access, mean_open: float):
    from scipy import sparse

    depth = rng.lognormal(np.log(mean_open), 0.4, types.size)
    p = np.minimum(depth[:, None] * access[types], 1.0)
    return sparse.csr_matrix((rng.random(p.shape) < p).astype(np.float32))


def _append_csr(group, block, state: dict) -> None:
    """Append CSR rows to an h5 CSR group opened with resizable data/indices/indptr."""
    nnz = block.nnz
    start = state["nnz"]
    for name, values in (("data", block.data), ("indices", block.indices)):
        ds = group[name]
        ds.resize((start + nnz,))
        ds[start:] = values
    ptr = group["indptr"]
    n0 = state["rows"]
    ptr.resize((n0 + block.shape[0] + 1,))
    ptr[n0 + 1 :] = block.indptr[1:].astype(np.int64) + start
    state["nnz"] += nnz
    state["rows"] += block.shape[0]


def _empty_csr_group(group_parent, name: str, shape: tuple[int, int]) -> None:
    """Replace ``group_parent[name]`` by an empty resizable CSR group of ``shape``."""
    if name in group_parent:
        del group_parent[name]
    g = group_parent.create_group(name)
    g.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": shape})
    g.create_dataset("data", (0,), maxshape=(None,), dtype=np.float32, chunks=(2**18,))
    g.create_dataset("indices", (0,), maxshape=(None,), dtype=np.int32, chunks=(2**18,))
    g.create_dataset("indptr", (1,), maxshape=(None,), dtype=np.int64, chunks=(2**16,))


def _skeleton(n_obs: int, n_vars: int, names: str, **obs):
    import anndata as ad
    import pandas as pd
    from scipy import sparse

    adata = ad.AnnData(
        X=sparse.csr_matrix((n_obs, n_vars), dtype=np.float32),
        obs=pd.DataFrame(obs, index=pd.Index([f"c{i}" for i in names], dtype=str)),
        var=pd.DataFrame(index=[f"f{j}" for j in range(n_vars)]),
    )
    return adata


def build_mosaic(path: Path, n_cells: int, n_genes: int, n_peaks: int, chunk: int, seed: int):
    """The mosaic on disk, written modality by modality in chunks of ``chunk`` cells."""
    import anndata as ad
    import h5py
    import mudata as md
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_types = 10
    types = rng.integers(0, n_types, n_cells)
    batch = rng.choice(["multiome", "rna_only", "atac_only"], n_cells, p=[0.4, 0.3, 0.3])
    rna_cells = np.flatnonzero(batch != "atac_only")
    atac_cells = np.flatnonzero(batch != "rna_only")
    genes = _profiles(rng, n_types, n_genes, 1.0)
    access = _profiles(rng, n_types, n_peaks, 1.5) * n_peaks  # mean accessibility 1
    cats = pd.Categorical(batch, categories=["multiome", "rna_only", "atac_only"])

    def mod(cells, n_vars, prefix):
        a = _skeleton(cells.size, n_vars, cells, batch=cats[cells])
        a.var_names = [f"{prefix}{j}" for j in range(n_vars)]
        return a

    mdata = md.MuData({"rna": mod(rna_cells, n_genes, "g"), "atac": mod(atac_cells, n_peaks, "p")})
    mdata.obs["batch"] = pd.Categorical(
        batch[pd.Index([f"c{i}" for i in range(n_cells)]).get_indexer(mdata.obs_names)],
        categories=cats.categories,
    )
    mdata.obs["cell_type"] = pd.Categorical(
        types[pd.Index([f"c{i}" for i in range(n_cells)]).get_indexer(mdata.obs_names)].astype(str)
    )
    mdata.write_h5mu(path)
    del mdata
    nnz = {}
    with h5py.File(path, "r+") as f:
        for name, cells, n_vars in (("rna", rna_cells, n_genes), ("atac", atac_cells, n_peaks)):
            group = f["mod"][name]
            _empty_csr_group(group, "X", (cells.size, n_vars))
            state = {"nnz": 0, "rows": 0}
            for a in range(0, cells.size, chunk):
                t = types[cells[a : a + chunk]]
                block = (
                    _rna_rows(rng, t, genes, 600.0)
                    if name == "rna"
                    else _atac_rows(rng, t, access, 0.05)
                )
                _append_csr(group["X"], block, state)
            nnz[name] = state["nnz"]
    del ad
    return {"cells": n_cells, "nnz": nnz, "genes": n_genes, "peaks": n_peaks}


def build_spatial(path: Path, n_spots: int, n_genes: int, chunk: int, seed: int):
    """A square lattice of spots with smooth cell-type domains, written in chunks."""
    import h5py

    rng = np.random.default_rng(seed + 1)
    side = int(np.ceil(np.sqrt(n_spots)))
    idx = np.arange(n_spots)
    coords = np.stack([idx % side, idx // side], axis=1).astype(np.float64)
    n_types = 8
    centers = rng.random((n_types, 2)) * side
    d = ((coords[:, None, :] - centers[None]) ** 2).sum(-1)
    types = np.argmin(d, axis=1)
    genes = _profiles(rng, n_types, n_genes, 1.0)
    adata = _skeleton(n_spots, n_genes, idx)
    adata.obsm["spatial"] = coords
    adata.write_h5ad(path)
    with h5py.File(path, "r+") as f:
        _empty_csr_group(f, "X", (n_spots, n_genes))
        state = {"nnz": 0, "rows": 0}
        for a in range(0, n_spots, chunk):
            _append_csr(f["X"], _rna_rows(rng, types[a : a + chunk], genes, 300.0), state)
    return {"spots": n_spots, "nnz": state["nnz"], "genes": n_genes}


# ----------------------------------------------------------------------------- phases


def run_integrate(path: Path, steps: int, batch_size: int, seed: int) -> dict:
    """Backed training of the mosaic model for ``steps`` steps, timed."""
    import torch

    from cellweave import io
    from cellweave.mosaic import MosaicModel
    from cellweave.mosaic.datamodule import MosaicDataModule
    from cellweave.train import fit

    t0 = time.perf_counter()
    mdata = io.read(path, backed=True)
    model = MosaicModel(mdata, batch_key="batch", graph_key=None, n_clusters=10, random_state=seed)
    setup_s = time.perf_counter() - t0
    dm = MosaicDataModule(
        model.data,
        batch_size=batch_size,
        validation_fraction=0.0,
        seed=seed,
        tensors=model.datamodule.tensors,
    )
    timers = {"load": 0.0, "n": 0, "marks": []}
    original = dm.transfer_batch_to_device

    def timed_transfer(batch, device, dataloader_idx):
        t = time.perf_counter()
        if not timers["marks"]:
            timers["cpu0"] = time.process_time()
        timers["marks"].append(t)
        out = original(batch, device, dataloader_idx)
        timers["load"] += time.perf_counter() - t
        timers["n"] += 1
        return out

    dm.transfer_batch_to_device = timed_transfer
    torch.set_num_threads(2)
    t1 = time.perf_counter()
    fit(
        model.module,
        datamodule=dm,
        max_epochs=1,
        max_steps=steps,
        early_stopping=False,
        device="cpu",
        seed=seed,
        progress=False,
    )
    train_s = time.perf_counter() - t1
    cpu_s = time.process_time() - timers.get("cpu0", 0.0)
    n = timers["n"]
    marks = timers["marks"]
    # steady state: from the first step's batch to the end, without the loader setup
    steady = train_s - (marks[0] - t1) if marks else train_s
    per_step = steady / max(n, 1)
    steps_per_epoch = len(dm.train_dataloader())
    return {
        "setup_s": setup_s,
        "steps": n,
        "batch_size": dm.batch_size,
        "block_cells": dm.batch_size // 8,
        "train_s": train_s,
        "step_s": per_step,
        "step_cpu_s": cpu_s / max(n, 1),
        "load_share": timers["load"] / max(steady, 1e-9),
        "steps_per_epoch": steps_per_epoch,
        "epoch_s": per_step * steps_per_epoch,
        "peak_rss_gb": _peak_rss_gb(),
    }


def run_impute(path: Path, out: Path, epochs: int, seed: int) -> dict:
    """Backed MF imputation: window selection, ``epochs`` streamed refit epochs, blocks out."""
    from cellweave import io
    from cellweave.impute import backed as ib

    reads = {"s": 0.0, "n": 0}
    original = ib.BackedCounts.rows

    def timed_rows(self, index):
        t = time.perf_counter()
        out_rows = original(self, index)
        reads["s"] += time.perf_counter() - t
        reads["n"] += 1
        return out_rows

    ib.BackedCounts.rows = timed_rows
    t0 = time.perf_counter()
    adata = io.read(path, backed=True)
    stages = {}
    ib.impute_backed(
        adata, out, method="mf", random_state=seed, overwrite=True, max_epochs=15,
        refit_epochs=epochs, timings=stages, device="cpu",
    )  # fmt: skip
    total = time.perf_counter() - t0
    refit = stages.get("refit_s", float("nan"))
    return {
        "total_s": total,
        **stages,
        "refit_epochs": epochs,
        "epoch_s": refit / max(epochs, 1),
        "load_share": reads["s"] / max(refit, 1e-9),
        "reads": reads["n"],
        "peak_rss_gb": _peak_rss_gb(),
    }


# ----------------------------------------------------------------------------- report


def _phase(args: argparse.Namespace, phase: str) -> dict:
    """Run one phase in a fresh process (its own peak RSS); its result as a dict."""
    cmd = [sys.executable, __file__, "--phase", phase, *sys.argv[1:]]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"phase {phase} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _one_phase(args: argparse.Namespace) -> dict:
    work = Path(args.workdir)
    mosaic, spatial = work / "scale_mosaic.h5mu", work / "scale_spatial.h5ad"
    t = time.perf_counter()
    if args.phase == "build_mosaic" and args.reuse and mosaic.exists():
        info = _describe_mosaic(mosaic)
    elif args.phase == "build_mosaic":
        info = build_mosaic(mosaic, args.cells, args.genes, args.peaks, args.chunk, args.seed)
    elif args.phase == "build_spatial":
        info = build_spatial(spatial, args.spots, args.spatial_genes, args.chunk, args.seed)
    elif args.phase == "integrate":
        info = run_integrate(mosaic, args.steps, args.batch_size, args.seed)
    elif args.phase == "impute":
        info = run_impute(spatial, work / "scale_imputed.h5ad", args.impute_epochs, args.seed)
    else:
        raise SystemExit(f"unknown phase {args.phase}")
    info.setdefault("seconds", time.perf_counter() - t)
    info.setdefault("peak_rss_gb", _peak_rss_gb())
    return info


def _describe_mosaic(path: Path) -> dict:
    """What :func:`build_mosaic` returns, read from an existing file (``--reuse``)."""
    import h5py

    with h5py.File(path, "r") as f:
        rna, atac = f["mod/rna/X"], f["mod/atac/X"]
        return {
            "cells": int(f["obs"][f["obs"].attrs["_index"]].shape[0]),
            "nnz": {"rna": int(rna["data"].shape[0]), "atac": int(atac["data"].shape[0])},
            "genes": int(rna.attrs["shape"][1]),
            "peaks": int(atac.attrs["shape"][1]),
            "seconds": float("nan"),
            "peak_rss_gb": float("nan"),
        }


def _fmt(x) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _goal_rows(run: dict) -> list[str]:
    """The table rows of the two goals (peak RSS, data-loading share) of one run."""
    met = {True: "met", False: "not met"}
    return [
        f"| peak RSS | {run['peak_rss_gb']:.2f} GB | <= {GOAL_RSS_GB:g} GB: "
        f"{met[run['peak_rss_gb'] <= GOAL_RSS_GB]} |",
        f"| data loading share of a step | {100 * run['load_share']:.0f}% | <= 50%: "
        f"{met[run['load_share'] <= GOAL_LOAD_SHARE]} |",
    ]


def _report(args, results: dict, uptime: str) -> list[str]:
    """The title, then one self-contained section per data set run (command, machine,
    load, versions in each, as runs of the two halves may be separate)."""
    from _report import header

    title, *about = header("Scale: streaming from disk", PACKAGES)
    about = [*about, f"- `uptime` before the run: {uptime}", ""]
    lines = [title, ""]
    b, i = results.get("build_mosaic"), results.get("integrate")
    if b and i:
        lines += [
            "## 1M cells: mosaic integration streamed",
            "",
            *about,
            f"Data: {b['cells']:,} cells, RNA {b['genes']} genes ({b['nnz']['rna']:,} non-zeros), "
            f"ATAC {b['peaks']} peaks ({b['nnz']['atac']:,} non-zeros); built in "
            f"{b['seconds']:.0f} s, peak RSS {b['peak_rss_gb']:.2f} GB.",
            "",
            "| quantity | value | goal |",
            "|---|---|---|",
            f"| setup (read backed, library pass, representation fit) | {i['setup_s']:.0f} s | |",
            f"| steps timed | {i['steps']} of {i['steps_per_epoch']} per epoch "
            f"(batch {i['batch_size']} cells = 8 blocks of {i['block_cells']}) | |",
            f"| time per step (wall; CPU time of the process) | {i['step_s']:.3f} s "
            f"({i.get('step_cpu_s', float('nan')):.3f} CPU s) | |",
            f"| time per epoch (extrapolated) | {i['epoch_s'] / 60:.1f} min | |",
            *_goal_rows(i),
            "",
        ]
    s, m = results.get("build_spatial"), results.get("impute")
    if s and m:
        lines += [
            "## 1M spots: imputation streamed",
            "",
            *about,
            f"Data: {s['spots']:,} spots x {s['genes']} genes ({s['nnz']:,} non-zeros); built "
            f"in {s['seconds']:.0f} s, peak RSS {s['peak_rss_gb']:.2f} GB.",
            "",
            "| quantity | value | goal |",
            "|---|---|---|",
            f"| penalty selection on an in-memory window ({m.get('window', '?')} spots) | "
            f"{m.get('select_s', float('nan')):.0f} s | |",
            f"| streamed refit: {m['refit_epochs']} epoch(s) timed | {m['refit_s']:.0f} s | |",
            f"| time per epoch | {m['epoch_s'] / 60:.1f} min | |",
            f"| prediction + layer written in blocks | {m.get('write_s', float('nan')):.0f} s | |",
            *_goal_rows(m),
            "",
        ]
    return lines


def _merge(lines: list[str]) -> None:
    """Write our sections into scale.md, keeping every other ``## `` section (e.g. DDP, or
    the one of ours this run did not redo)."""
    keep: list[str] = []
    produced = tuple(line for line in lines if line.startswith("## "))
    if RESULTS.exists():
        ours = False
        for line in RESULTS.read_text().splitlines():
            if line.startswith("## "):
                ours = line.startswith(produced) if produced else False
            elif line.startswith("# "):
                ours = True  # our title and header are rewritten
            if not ours:
                keep.append(line)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines + (["", *keep] if keep else [])).rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--peaks", type=int, default=5000)
    parser.add_argument("--spots", type=int, default=1_000_000)
    parser.add_argument("--spatial-genes", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=5_000, help="rows written at once")
    parser.add_argument("--steps", type=int, default=100, help="integrate steps timed")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--impute-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="/tmp/cellweave_scale")
    parser.add_argument("--only", default="mosaic,spatial", help="mosaic and/or spatial")
    parser.add_argument("--reuse", action="store_true", help="keep an existing mosaic file")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase is not None:
        print(json.dumps(_one_phase(args)))
        return
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results: dict = {}
    plan = []
    if "mosaic" in args.only:
        plan += ["build_mosaic", "integrate"]
    if "spatial" in args.only:
        plan += ["build_spatial", "impute"]
    for phase in plan:
        t = time.perf_counter()
        results[phase] = _phase(args, phase)
        print(f"{phase}: {time.perf_counter() - t:.0f} s {results[phase]}", flush=True)
    _merge(_report(args, results, uptime))
    print(f"wrote {RESULTS}")
    os.sync()


if __name__ == "__main__":
    main()

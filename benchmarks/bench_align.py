"""Section alignment benchmark: known transforms recovered (PASTE slices and the simulator),
adjacent PASTE slices aligned pairwise against PASTE, two modalities, and timings; the RNA vs
protein section of ``bench_align_protein.py``.

    OMP_NUM_THREADS=1 python benchmarks/bench_align.py            # everything
    OMP_NUM_THREADS=1 python benchmarks/bench_align.py --no-peer  # without PASTE

Writes benchmarks/results/alignment.md and the overlays of the adjacent slices as
benchmarks/results/alignment_overlay_<i>_<j>.png.

PASTE (paste-bio 1.4.0, extra ``bench``) is run as in its tutorial: genes with at least 15
counts, ``pairwise_align(alpha=0.1)`` (KL expression cost, balanced exact FGW), then its
``stack_slices_pairwise`` Procrustes. paste-bio 1.4.0 calls POT's conditional gradient with a
5-argument line search, which POT >= 0.9.5 calls with 6 arguments; ``_paste_pot_compat`` drops
the extra argument for the duration of the call and changes nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from _report import header, markdown_table
from bench_align_protein import section_lines as protein_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
PACKAGES = ("cellweave", "numpy", "scipy", "torch", "POT", "anndata", "scanpy", "paste-bio")
N_REPEATS = 3


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def paste_slice(i: int):
    import cellweave as cw

    adata = cw.io.read_anndata(DATA / f"paste_breast_slice{i}.h5ad")
    adata.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    return adata


def sim_section(grid: str, n_spots: int = 1000, seed: int = 0):
    import cellweave as cw

    spatial, _ = cw.sim.simulate_spatial(n_spots=n_spots, grid=grid, random_state=seed)
    return spatial


def spacing(coords: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(coords).query(coords, k=2)
    return float(np.median(dist[:, 1]))


# --------------------------------------------------------------------------------------------
# methods: each returns B's coordinates in A's frame
# --------------------------------------------------------------------------------------------
def run_cellweave(a, b, **kwargs) -> np.ndarray:
    from cellweave.align import align_sections

    out = align_sections(a, b, copy=True, **kwargs)
    return out.obsm["spatial_aligned"]


@contextlib.contextmanager
def _paste_pot_compat():
    import ot

    original = ot.optim.cg

    def cg(a, b, M, reg, f, df, G0=None, line_search=None, *args, **kwargs):
        if line_search is not None:
            inner = line_search

            def line_search(cost, G, deltaG, Mi, cost_G, df_G=None, **kw):
                return inner(cost, G, deltaG, Mi, cost_G, **kw)

        return original(a, b, M, reg, f, df, G0, line_search, *args, **kwargs)

    ot.optim.cg = cg
    try:
        yield
    finally:
        ot.optim.cg = original


def run_paste(a, b) -> np.ndarray:
    import paste
    import scanpy as sc

    a, b = a.copy(), b.copy()
    sc.pp.filter_genes(a, min_counts=15)
    sc.pp.filter_genes(b, min_counts=15)
    with _paste_pot_compat(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pi = paste.pairwise_align(a, b, alpha=0.1, verbose=False, gpu_verbose=False)
        new_a, new_b = paste.stack_slices_pairwise([a, b], [pi])
    offset = a.obsm["spatial"][0] - new_a.obsm["spatial"][0]  # PASTE centres A: undo it
    return new_b.obsm["spatial"] + offset


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


# --------------------------------------------------------------------------------------------
# known transforms
# --------------------------------------------------------------------------------------------
def known_transforms(sections: dict, methods: dict, *, drop: float, warp: float = 0.0) -> list:
    from cellweave.align import perturb_section

    rows = []
    for name, adata in sections.items():
        unit = spacing(adata.obsm["spatial"])
        for seed in range(N_REPEATS):
            rng = np.random.default_rng(seed)
            angle, shift = rng.uniform(0, 360), rng.uniform(-20, 20, size=2)
            moved, truth = perturb_section(
                adata, angle=angle, shift=shift, drop=drop, thin=0.5, warp=warp, random_state=seed
            )
            for method, fn in methods.items():
                aligned, wall, cpu = timed(fn, adata, moved)
                error = np.linalg.norm(aligned - truth, axis=1) / unit
                rows.append(
                    {
                        "data": name,
                        "seed": seed,
                        "angle": angle,
                        "method": method,
                        "median_error": float(np.median(error)),
                        "frac_under_half": float((error < 0.5).mean()),
                        "seconds": wall,
                        "cpu_seconds": cpu,
                    }
                )
                print(
                    f"  {name} seed {seed} {method}: {rows[-1]['median_error']:.3f}",
                    file=sys.stderr,
                )
    return rows


def summarise_known(rows: list) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    table = df.groupby(["data", "method"]).agg(
        median_error=("median_error", "median"),
        worst_error=("median_error", "max"),
        frac_under_half=("frac_under_half", "mean"),
        seconds=("seconds", "median"),
        cpu_seconds=("cpu_seconds", "median"),
    )
    table.index = [f"{d} / {m}" for d, m in table.index]
    return table


# --------------------------------------------------------------------------------------------
# adjacent slices
# --------------------------------------------------------------------------------------------
def gene_agreement(a, b, aligned: np.ndarray, n_genes: int = 200) -> float:
    """Median over the most variable shared genes of the Pearson correlation between B's
    expression and A's expression smoothed (Gaussian, 1 spacing) at B's aligned positions;
    only B spots within 1.5 spacings of an A spot count."""
    from scipy.spatial.distance import cdist

    from cellweave.pp import log_normalize

    genes = a.var_names.intersection(b.var_names)
    Xa = log_normalize(a[:, genes].X).toarray()
    Xb = log_normalize(b[:, genes].X).toarray()
    top = np.argsort(np.vstack([Xa, Xb]).var(axis=0))[::-1][:n_genes]
    unit = spacing(a.obsm["spatial"])
    d2 = cdist(aligned, a.obsm["spatial"], "sqeuclidean") / unit**2
    near = d2.min(axis=1) < 1.5**2
    weights = np.exp(-d2[near] / 2.0)
    predicted = (weights / weights.sum(axis=1, keepdims=True)) @ Xa[:, top]
    observed = Xb[near][:, top]
    r = [np.corrcoef(predicted[:, g], observed[:, g])[0, 1] for g in range(len(top))]
    return float(np.nanmedian(r))


def adjacent_pairs(with_peer: bool) -> tuple[pd.DataFrame, list[str]]:
    from cellweave.align import align_sections
    from cellweave.plotting.alignment import overlay

    slices = {i: paste_slice(i) for i in range(1, 5)}
    rows, figures = [], []
    for i in range(1, 4):
        a, b = slices[i], slices[i + 1]
        unit = spacing(a.obsm["spatial"])
        pair = f"{i}->{i + 1}"
        rows.append(
            {
                "pair": pair,
                "method": "unaligned",
                "gene_agreement": gene_agreement(a, b, b.obsm["spatial"]),
            }
        )
        out, wall, cpu = timed(align_sections, a, b, copy=True)
        ours = out.obsm["spatial_aligned"]
        info = out.uns["spatial_aligned"]
        rows.append(
            {
                "pair": pair,
                "method": "cellweave",
                "angle": info["angle"],
                "gene_agreement": gene_agreement(a, b, ours),
                "seconds": wall,
                "cpu_seconds": cpu,
            }
        )
        out_nr, wall_nr, cpu_nr = timed(align_sections, a, b, nonrigid=True, copy=True)
        warped = out_nr.obsm["spatial_aligned"]
        rows.append(
            {
                "pair": pair,
                "method": "cellweave nonrigid",
                "angle": info["angle"],
                "gene_agreement": gene_agreement(a, b, warped),
                "seconds": wall_nr,
                "cpu_seconds": cpu_nr,
                "vs_rigid": float(np.median(np.linalg.norm(warped - ours, axis=1)) / unit),
            }
        )
        if with_peer:
            theirs, wall, cpu = timed(run_paste, a, b)
            from cellweave.align import procrustes

            fit = procrustes(np.eye(b.n_obs), theirs, b.obsm["spatial"], reflection=True)
            rows.append(
                {
                    "pair": pair,
                    "method": "PASTE",
                    "angle": fit.angle,
                    "gene_agreement": gene_agreement(a, b, theirs),
                    "seconds": wall,
                    "cpu_seconds": cpu,
                    "vs_cellweave": float(np.median(np.linalg.norm(theirs - ours, axis=1)) / unit),
                }
            )
        path = RESULTS / f"alignment_overlay_{i}_{i + 1}.png"
        overlay(
            a,  # copy=True leaves A unchanged: the overlay draws its own coordinates
            out,
            labels=(f"slice {i}", f"slice {i + 1}"),
            show_matches=60,
            title=f"PASTE breast slices {i} and {i + 1}: cellweave.tl.align_sections",
            save=path,
        )
        figures.append(path.name)
    return pd.DataFrame(rows).set_index(["pair", "method"]), figures


# --------------------------------------------------------------------------------------------
# modalities and scale
# --------------------------------------------------------------------------------------------
def as_protein(moved, genes, seed: int = 1):
    """A protein-like panel for the moved section: a monotone transform of 30 genes with
    multiplicative noise, renamed; the pairs name the gene each protein comes from."""
    import anndata as ad

    from cellweave.pp import log_normalize

    rng = np.random.default_rng(seed)
    X = np.asarray(log_normalize(moved[:, genes].X).toarray())
    Z = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-9)
    values = np.exp(0.7 * Z) * rng.gamma(4.0, 0.25, size=Z.shape)
    protein = ad.AnnData(values.astype(np.float32), obsm={"spatial": moved.obsm["spatial"]})
    protein.obs_names = moved.obs_names
    protein.var_names = [f"protein_{g}" for g in genes]
    return protein, {g: f"protein_{g}" for g in genes}


def modalities(sections: dict) -> pd.DataFrame:
    from cellweave.align import perturb_section
    from cellweave.pp import log_normalize

    rows = []
    for name, adata in sections.items():
        unit = spacing(adata.obsm["spatial"])
        X = log_normalize(adata.X)
        variance = (
            np.asarray(X.power(2).mean(axis=0)).ravel() - np.asarray(X.mean(axis=0)).ravel() ** 2
        )
        genes = list(adata.var_names[np.argsort(variance)[::-1][:30]])
        for seed in range(N_REPEATS):
            rng = np.random.default_rng(seed)
            moved, truth = perturb_section(
                adata,
                angle=rng.uniform(0, 360),
                shift=rng.uniform(-20, 20, size=2),
                drop=0.1,
                random_state=seed,
            )
            protein, pairs = as_protein(moved, genes, seed)
            for mode, kwargs in (
                ("feature_pairs", {"feature_pairs": pairs}),
                ("structure_only", {"structure_only": True}),
            ):
                aligned, wall, _ = timed(run_cellweave, adata, protein, **kwargs)
                error = np.linalg.norm(aligned - truth, axis=1) / unit
                rows.append(
                    {
                        "data": name,
                        "mode": mode,
                        "seed": seed,
                        "median_error": float(np.median(error)),
                        "seconds": wall,
                    }
                )
                print(
                    f"  modality {name} {mode} {seed}: {rows[-1]['median_error']:.3f}",
                    file=sys.stderr,
                )
    df = pd.DataFrame(rows)
    table = df.groupby(["data", "mode"]).agg(
        median_error=("median_error", "median"),
        worst_error=("median_error", "max"),
        n_under_half=("median_error", lambda e: f"{int((e < 0.5).sum())}/{len(e)}"),
        seconds=("seconds", "median"),
    )
    table.index = [f"{d} / {m}" for d, m in table.index]
    return table


def scale() -> pd.DataFrame:
    from cellweave.align import perturb_section

    rows = []
    for n_spots, kwargs in ((2000, {}), (5000, {}), (20000, {})):
        adata = sim_section("hex", n_spots=n_spots, seed=1)
        moved, truth = perturb_section(adata, angle=75.0, shift=(10.0, -5.0), drop=0.1, thin=0.5)
        aligned, wall, cpu = timed(run_cellweave, adata, moved, **kwargs)
        rows.append(
            {
                "spots": f"{adata.n_obs} + {moved.n_obs}",
                "options": ", ".join(f"{k}={v}" for k, v in kwargs.items())
                or "defaults (max_spots=2000)",
                "median_error": float(np.median(np.linalg.norm(aligned - truth, axis=1))),
                "seconds": wall,
                "cpu_seconds": cpu,
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            }
        )
        print(f"  scale {rows[-1]}", file=sys.stderr)
    return pd.DataFrame(rows).set_index("spots")


# --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-peer", action="store_true", help="skip PASTE")
    args = parser.parse_args()
    with_peer = not args.no_peer
    if with_peer:
        try:
            import paste  # noqa: F401
        except ImportError:
            print("paste-bio is not installed: running without PASTE", file=sys.stderr)
            with_peer = False

    sections = {f"PASTE slice {i}": paste_slice(i) for i in range(1, 5)}
    # warm up (imports, first-call costs) so that the timings below are the methods' own
    from cellweave.align import perturb_section

    warm, _ = perturb_section(sections["PASTE slice 1"], angle=10.0, drop=0.1)
    run_cellweave(sections["PASTE slice 1"], warm)
    if with_peer:
        run_paste(sections["PASTE slice 1"], warm)
    sections["sim hex 1000"] = sim_section("hex")
    sections["sim random 1000 (single-cell)"] = sim_section("random")
    methods = {
        "cellweave": lambda a, b: run_cellweave(a, b),
        "cellweave balanced": lambda a, b: run_cellweave(a, b, overlap=None),
        "cellweave entropic": lambda a, b: run_cellweave(a, b, epsilon=0.01),
    }
    if with_peer:
        methods["PASTE"] = run_paste
    print("known transforms, 10% dropped", file=sys.stderr)
    main_table = summarise_known(known_transforms(sections, methods, drop=0.1))
    hard = {k: sections[k] for k in ("PASTE slice 1", "sim hex 1000")}
    print("30% dropped", file=sys.stderr)
    drop_table = summarise_known(
        known_transforms(
            hard, {k: methods[k] for k in methods if k != "cellweave entropic"}, drop=0.3
        )
    )
    warp_methods = {
        "cellweave rigid": lambda a, b: run_cellweave(a, b),
        "cellweave nonrigid": lambda a, b: run_cellweave(a, b, nonrigid=True),
    }
    if with_peer:
        warp_methods["PASTE"] = run_paste
    print("warped", file=sys.stderr)
    warp_table = summarise_known(known_transforms(hard, warp_methods, drop=0.1, warp=1.5))
    print("adjacent pairs", file=sys.stderr)
    pairs_table, figures = adjacent_pairs(with_peer)
    print("modalities", file=sys.stderr)
    modality_table = modalities(hard)
    print("scale", file=sys.stderr)
    scale_table = scale()
    print("RNA vs protein sections", file=sys.stderr)
    protein_lines = protein_section()

    lines = header("Section alignment benchmark", PACKAGES)
    lines += [
        "- protocol: section B = section A with a random rotation (uniform 0-360 deg), a random "
        "shift (uniform +-20), 10% of spots dropped and counts binomially thinned to half "
        f"(`cellweave.align.perturb_section`), {N_REPEATS} seeds per data set; error = "
        "distance of each B spot from its true position, in spot spacings (median "
        "nearest-neighbour distance of A); table: median over seeds of the per-seed median "
        "error, worst seed, mean fraction of spots under half a spacing. Target: median error "
        "< 0.5 spacing.",
        "- PASTE: paste-bio tutorial settings (genes with >= 15 counts, alpha=0.1, KL cost, "
        "balanced), its own Procrustes; see the module docstring for the POT compatibility "
        "shim.",
        "",
        "## Known transform, 10% of spots dropped",
        "",
        *markdown_table(main_table, digits=3, index_name="data / method"),
        "",
        "## Harder: 30% of spots dropped",
        "",
        *markdown_table(drop_table, digits=3, index_name="data / method"),
        "",
        "## Non-rigid: a smooth sine warp of amplitude 1.5 spacings on top (10% dropped)",
        "",
        *markdown_table(warp_table, digits=3, index_name="data / method"),
        "",
        "## Adjacent PASTE breast slices (no ground truth)",
        "",
        "gene_agreement: median over the 200 most variable shared genes of the Pearson "
        "correlation between B's expression and A's (Gaussian-smoothed, 1 spacing) at B's "
        "aligned positions (higher = the gene patterns overlap better). angle: fitted rotation "
        "(deg). vs_cellweave / vs_rigid: median distance (spacings) between the two methods' "
        "aligned positions of the same spots.",
        "",
        *markdown_table(pairs_table.reset_index().set_index("pair"), digits=3, index_name="pair"),
        "",
        *[f"![overlay]({name})" for name in figures],
        "",
        "## Two modalities (B measured as 30 protein-like features)",
        "",
        "B's features are a monotone transform (exp of 0.7 z-scores) with gamma noise of A's 30 "
        "most variable genes, renamed. feature_pairs: the gene-protein correspondence given; "
        "structure_only: no correspondence (modality-agnostic: geometry + ranks of each "
        "section's own expression dissimilarities, then a cross-modal cost learned from the "
        "matches).",
        "",
        *markdown_table(modality_table, digits=3, index_name="data / mode"),
        "",
        "## Scale (simulator, hex lattice)",
        "",
        *markdown_table(scale_table, digits=3, index_name="spots (A + B)"),
        "",
        *protein_lines,
    ]
    (RESULTS / "alignment.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'alignment.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Deconvolution benchmark: cell-type fractions of spots with known truth, cellweave's
solvers next to DestVI, cell2location and Tangram.

Truth sets (seeds 0, 1, 2 by default):

``sim``
    ``cw.sim.simulate_spatial(n_spots=500, n_genes=200, random_state=seed)``: 6 types,
    about 8 cells per spot, its own reference of 2,000 cells.
``mop``
    the RNA cells of ``mop_multiome_rna_atac.h5mu`` (15 types) split by
    ``cw.sim.split_reference`` into a reference half (subsampled, stratified, to
    :data:`MOP_REF_CELLS` cells) and a half pooled by ``cw.sim.pseudo_spots`` into
    :data:`MOP_SPOTS` spots of 2-10 cells, thinned to :data:`MOP_DEPTH` counts per spot.

Methods: any cellweave solver by registry name (``map_cells(method=name,
cell_type_key=...)``; ``auto`` too) and the peers of :mod:`peers_deconv`. One scorer for all
(:func:`score_fractions`: RMSE over spot x type entries, per-type Pearson r across spots
averaged over types, mean per-spot JS divergence, all from ``cellweave.metrics``).

Every (truth set, seed, method) result is kept in ``results/deconv/<set>_seed<seed>.json`` as
soon as it is done; ``--update-cache`` merges the methods run now into it (so a new solver
joins without rerunning the peers), ``--methods cached`` re-renders. The table replaces the
deconvolution section of ``results/mapping.md`` (the rest of that file is kept).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_deconv.py --sets sim
    PYTHONPATH=src python benchmarks/bench_deconv.py --methods attention --update-cache
    # the attention mapper's ablations (named variants, :data:`VARIANTS`)
    PYTHONPATH=src python benchmarks/bench_deconv.py --update-cache \
        --methods attention_no_neighbours,attention_no_platform,attention_top_k10,attention_top_k200
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from _ablations import ABLATIONS
from _report import header, markdown_table, replace_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SECTION = "## Deconvolution"
PACKAGES = (
    "cellweave",
    "numpy",
    "torch",
    "anndata",
    "POT",
    "tangram-sc",
    "scvi-tools",
    "cell2location",
    "pyro-ppl",
)
SETS = ("sim", "mop")
CELLWEAVE = ("gradient", "ot")
PEER_NAMES = ("destvi", "cell2location", "tangram")
MOP_FILE = "mop_multiome_rna_atac.h5mu"
#: MOp sizes, chosen so that every peer runs in minutes on one CPU thread.
MOP_REF_CELLS = 2000
MOP_SPOTS = 400
MOP_DEPTH = 1000.0
SCORES = ("rmse", "pcc_mean", "js_mean")
#: Named variants of a solver (name -> its options), run like any method: the attention
#: mapper's ablations (``attention_no_neighbours``, ``attention_top_k10``, ...).
VARIANTS: dict[str, tuple[str, dict]] = {
    name: ("attention", options) for name, options in ABLATIONS.items() if options
}
#: Other named settings of a solver, run like :data:`VARIANTS` (fractions only):
#: ``attention_validation`` stops the training on the likelihood of 10% held-out spots (at
#: most 300 epochs) instead of a fixed 30 epochs on every spot.
SETTINGS: dict[str, tuple[str, dict]] = {
    "attention_validation": ("attention", {"validation": 0.1}),
}


# ----------------------------------------------------------------------------- scorer


def score_fractions(truth: pd.DataFrame, pred: pd.DataFrame) -> dict[str, float]:
    """RMSE over spot x type entries, mean over types of the Pearson r across spots, mean
    per-spot JS divergence (nats) of ``pred`` against ``truth`` (rows scaled to sum 1;
    ``pred`` aligned to ``truth`` by spot and type names; a type ``pred`` lacks counts 0)."""
    from cellweave.metrics import fraction_scores

    pred = pd.DataFrame(pred).reindex(index=truth.index, columns=truth.columns, fill_value=0.0)
    s = fraction_scores(truth, pred.clip(lower=0).astype(np.float64))
    return {k: float(s[k]) for k in SCORES}


# ----------------------------------------------------------------------------- truth sets


def truth_set(name: str, seed: int, data_dir: Path):
    """``(reference, spots, truth)`` of one truth set and seed (truth removed from spots)."""
    import cellweave as cw

    if name == "sim":
        spots, reference = cw.sim.simulate_spatial(n_spots=500, n_genes=200, random_state=seed)
    elif name == "mop":
        import mudata

        rna = mudata.read_h5mu(data_dir / MOP_FILE)["rna"]
        reference, pool = cw.sim.split_reference(rna, "cell_type", fraction=0.5, random_state=seed)
        keep = MOP_REF_CELLS / reference.n_obs
        reference, _ = cw.sim.split_reference(
            reference, "cell_type", fraction=keep, random_state=seed
        )
        spots = cw.sim.pseudo_spots(
            pool, cell_type_key="cell_type", n_spots=MOP_SPOTS, depth=MOP_DEPTH, random_state=seed
        )
    else:
        raise SystemExit(f"unknown truth set {name!r}; choose among {', '.join(SETS)}")
    truth = spots.obsm.pop("true_fractions")
    bare = spots.copy()
    bare.uns.pop("sim", None)
    bare.layers.clear()
    return reference, bare, truth, float(spots.obs["n_cells"].mean())


# ----------------------------------------------------------------------------- methods


def run_method(method: str, reference, spots, *, seed: int, cells_per_spot: float, c2l_epochs):
    """Fractions of one method (a peer's name, any cellweave solver's registry name, or a
    named variant of :data:`VARIANTS` or :data:`SETTINGS`)."""
    if method in PEER_NAMES:
        from peers_deconv import FRACTIONS, cell2location_fractions

        kwargs = {"cell_type_key": "cell_type", "random_state": seed}
        kwargs["cells_per_spot"] = cells_per_spot
        if method == "cell2location":
            return cell2location_fractions(reference, spots, epochs=c2l_epochs, **kwargs)
        return FRACTIONS[method](reference, spots, **kwargs)
    from cellweave.mapping import map_cells

    target = spots.copy()
    solver, options = {**VARIANTS, **SETTINGS}.get(method, (method, {}))
    mapping = map_cells(
        reference.copy(),
        target,
        method=solver,
        cell_type_key="cell_type",
        random_state=seed,
        **options,
    )
    print(f"  cellweave {method!r} ran {mapping.method!r}", file=sys.stderr, flush=True)
    return target.obsm["cell_type_fractions"]


def evaluate(
    name: str, seeds, methods, data_dir: Path, cache: dict, c2l_epochs: int, update: bool
) -> None:
    """Run ``methods`` on every seed of truth set ``name``; each result goes into ``cache``
    (and the cache file, merged with its other methods' rows when ``update``) as soon as it
    is done."""
    for seed in seeds:
        reference, spots, truth, n_cells = truth_set(name, seed, data_dir)
        for method in methods:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                pred = run_method(
                    method,
                    reference,
                    spots,
                    seed=seed,
                    cells_per_spot=n_cells,
                    c2l_epochs=c2l_epochs,
                )
            except Exception as err:  # a peer that fails is reported, not fatal
                traceback.print_exc()
                row = {"error": f"{type(err).__name__}: {err}"[:300]}
            else:
                row = score_fractions(truth, pred)
            row["seconds"] = time.perf_counter() - t0
            row["cpu_seconds"] = time.process_time() - c0
            row["command"] = shlex.join([Path(sys.executable).name, *sys.argv])
            if method == "cell2location":
                row["epochs"] = c2l_epochs
            cache.setdefault(str(seed), {})[method] = row
            save_cache(name, {str(seed): cache[str(seed)]}, merge=update)
            shown = {k: round(v, 3) for k, v in row.items() if isinstance(v, float)}
            print(f"{name} seed {seed} {method}: {shown}", file=sys.stderr, flush=True)


def cache_path(name: str, seed: int | str) -> Path:
    """One JSON per truth set and seed (so seeds can run in parallel processes)."""
    return RESULTS / "deconv" / f"{name}_seed{seed}.json"


def load_cache(name: str) -> dict:
    """``{seed: {method: row}}`` of every cached seed of truth set ``name``."""
    out = {}
    for path in sorted((RESULTS / "deconv").glob(f"{name}_seed*.json")):
        out[path.stem.split("_seed")[-1]] = json.loads(path.read_text())
    # rows run apart (bench_destvi.py: results/deconv/<peer>_<set>_seed<seed>.json) join them
    for path in sorted((RESULTS / "deconv").glob(f"*_{name}_seed*.json")):
        out.setdefault(path.stem.split("_seed")[-1], {}).update(json.loads(path.read_text()))
    return out


def save_cache(name: str, cache: dict, *, merge: bool = True) -> None:
    """Write each seed's rows; with ``merge`` the rows already on disk for other methods are
    kept (several processes may run different methods of one seed)."""
    for seed, rows in cache.items():
        path = cache_path(name, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text()) if merge and path.exists() else {}
        tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**old, **rows}, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)


# ----------------------------------------------------------------------------- report


def summary(cache: dict, base: str = "gradient") -> pd.DataFrame:
    """Mean over seeds per method (worst seed's RMSE, CPU seconds, the seeds), and its RMSE
    and Pearson minus ``base``'s on the same seeds (methods may have run on fewer seeds)."""
    rows = {}
    methods = dict.fromkeys(m for per_seed in cache.values() for m in per_seed)
    for method in methods:
        seeds = [s for s in sorted(cache) if "error" not in cache[s].get(method, {"error": 1})]
        if not seeds:
            first = next(cache[s][method] for s in sorted(cache) if method in cache[s])
            rows[method] = {"failed": first.get("error", "?")}
            continue
        ok = [cache[s][method] for s in seeds]
        row = {k: float(np.mean([r[k] for r in ok])) for k in SCORES}
        row["rmse_worst_seed"] = max(r["rmse"] for r in ok)
        same = [cache[s][base] for s in seeds if base in cache[s]]
        if len(same) == len(seeds) and method != base:
            row[f"rmse - {base}"] = row["rmse"] - float(np.mean([r["rmse"] for r in same]))
            row[f"pcc - {base}"] = row["pcc_mean"] - float(np.mean([r["pcc_mean"] for r in same]))
        row["cpu_seconds"] = float(np.mean([r["cpu_seconds"] for r in ok]))
        row["seeds"] = ",".join(seeds)
        rows[method] = row
    table = pd.DataFrame(rows).T
    return table.sort_values("rmse") if "rmse" in table else table


def report(caches: dict[str, dict]) -> list[str]:
    md = [
        f"{SECTION}: spots with known cell-type fractions (`benchmarks/bench_deconv.py`)",
        "",
        "- truth sets: `sim` = `cw.sim.simulate_spatial(n_spots=500, n_genes=200, "
        "random_state=seed)` (6 types, about 8 cells per spot, its own 2,000-cell reference); "
        f"`mop` = the RNA cells of `{MOP_FILE}` (15 types, 1,677 genes) split by "
        "`cw.sim.split_reference(fraction=0.5)` into a reference half, subsampled (stratified) "
        f"to {MOP_REF_CELLS:,} cells, and a half pooled by `cw.sim.pseudo_spots` into "
        f"{MOP_SPOTS} spots of 2-10 cells on a hex lattice with 5 smooth domains, thinned to "
        f"{MOP_DEPTH:.0f} counts per spot (sizes chosen so that every peer runs in minutes on "
        "one CPU thread)",
        "- scores: RMSE over spot x type entries, per-type Pearson r across spots (mean over "
        "types), mean per-spot JS divergence; mean over the seeds (and the worst seed's RMSE); "
        "cpu_seconds: mean per run (the peers' included model training), in the same run as "
        "the other methods",
        "- cellweave methods: `map_cells(method=name, cell_type_key=...)` with their defaults; "
        "peers as `benchmarks/peers_deconv.py` documents (tutorial settings)",
        "",
    ]
    for name, cache in caches.items():
        if not cache:
            continue
        table = summary(cache)
        seeds = ", ".join(sorted(cache))
        commands = sorted({r["command"] for per in cache.values() for r in per.values()})
        md += [f"### {name} (seeds {seeds})", ""]
        md += [f"- run by `{c}`" for c in commands]
        c2l = {r.get("epochs") for per in cache.values() for r in [per.get("cell2location")] if r}
        if c2l:
            md.append(f"- cell2location spatial epochs: {', '.join(map(str, sorted(c2l)))}")
        table = table.astype(object).where(table.notna(), "-")
        md += ["", *markdown_table(table, digits=3, index_name="method"), ""]
        if "gradient" in table.index and "cpu_seconds" in table:
            base = table.loc["gradient", "cpu_seconds"]
            ratios = ", ".join(
                f"{m} {table.loc[m, 'cpu_seconds'] / base:.2g}x"
                for m in table.index
                if m != "gradient" and pd.notna(table.loc[m].get("cpu_seconds"))
            )
            md += [f"CPU time relative to `gradient`: {ratios}", ""]
    return md


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--methods",
        default=",".join([*CELLWEAVE, *PEER_NAMES]),
        help="cellweave solvers by registry name and peers, or 'cached' (re-render)",
    )
    parser.add_argument(
        "--update-cache",
        action="store_true",
        help="merge the methods run now into the cached results (else they replace them)",
    )
    parser.add_argument("--c2l-epochs", type=int, default=None, help="cell2location's epochs")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=RESULTS / "mapping.md")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    from peers_deconv import C2L_BENCH_EPOCHS, available_peers

    names = [n for n in args.sets.split(",") if n]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    caches = {name: load_cache(name) for name in SETS}
    if args.methods != "cached":
        methods = [m for m in args.methods.split(",") if m]
        missing = [m for m in methods if m in PEER_NAMES and m not in available_peers()]
        methods = [m for m in methods if m not in missing]
        if missing:
            print(f"skipped (not importable): {', '.join(missing)}", file=sys.stderr)
        for name in names:
            if not args.update_cache:  # the seeds run now start afresh
                caches[name] = {k: v for k, v in caches[name].items() if int(k) not in seeds}
            epochs = args.c2l_epochs or C2L_BENCH_EPOCHS
            evaluate(name, seeds, methods, args.data_dir, caches[name], epochs, args.update_cache)
    md = report({name: load_cache(name) for name in SETS})  # other runs' sets included
    lines = header("Deconvolution", PACKAGES)[2:]  # command, machine, versions
    lines.append(f"- threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    section = [md[0], "", *lines, *md[1:]]
    old = args.out.read_text() if args.out.exists() else ""
    args.out.write_text(replace_section(old, SECTION, section))
    print("\n".join(section))


if __name__ == "__main__":
    main()

"""Mapping benchmark: leave-gene-out gene prediction on the shared real data (cellweave's
methods vs peers and baselines, both schemes) and the 100k cells x 50k spots scale run.

    OMP_NUM_THREADS=2 python benchmarks/bench_mapping.py          # accuracy + speed
    OMP_NUM_THREADS=2 python benchmarks/bench_mapping.py --scale  # + the scale run
    # cellweave's methods only, the peers' rows carried (unranked) from the last report on
    # the same folds; --ablations: the attention mapper's ablations (_ablations.py)
    python bench_mapping.py --peers '' --methods attention,ot,... \
        --carry-peers-from results/mapping.md --ablations

Writes benchmarks/results/mapping.md (machine, versions, command, tables), keeping its
deconvolution section, which ``bench_deconv.py`` writes, its notes, and the scale and
ablation sections when they are not rerun.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from _ablations import run_ablations
from _carry import SOURCE_PREFIX, read_peers, with_peers
from _report import existing_section, header, markdown_table, replace_section

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "merfish": ("merfish_hypothalamus_scrna.h5ad", "merfish_hypothalamus_spatial.h5ad"),
    "bdtnp": ("bdtnp_drosophila_scrna_binarized.h5ad", "bdtnp_drosophila_insitu.h5ad"),
}
PACKAGES = (
    "cellweave",
    "numpy",
    "scipy",
    "scikit-learn",
    "torch",
    "anndata",
    "POT",
    "tangram-sc",
    "scvi-tools",
    "novosparc",
)
SCHEMES = ("normalized", "raw")
#: Rows every accuracy run evaluates besides the methods named (evaluate's baseline, SpaGE raw).
ALWAYS_RUN = ("depth", "spage_raw")
#: Options for data sets whose spatial values are not counts (BDTNP's in situ intensities).
NOT_COUNTS = {"bdtnp": {"require_counts": False}}
#: The section of the results file that ``bench_deconv.py`` writes (kept here).
DECONV_SECTION = "## Deconvolution"
SCALE_SECTION = "## Scale"
ABLATION_SECTION = "## Ablations"


# ----------------------------------------------------------------------------- accuracy


def extra_methods(peers: list[str]) -> tuple[dict, list[str]]:
    """Peers (registered when importable) and SpaGE as SpatialBenchmarking calls it."""
    from cellweave.mapping.baselines import spage
    from cellweave.mapping.evaluate import MappingMethod
    from peers_mapping import register_peers

    found = register_peers(peers)
    # SpatialBenchmarking's SpaGE_impute passes raw values (no log-normalisation) to SpaGE
    sb = MappingMethod("spage_raw", "baseline", functools.partial(spage, normalize=False))
    return {"spage_raw": sb}, found


def _logged(label: str, predict):
    """The predictor, printing its wall / CPU seconds per fold to stderr (progress)."""

    @functools.wraps(predict)
    def run(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = predict(*args, **kwargs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{label}: {wall:.1f} s, {cpu:.1f} CPU s", file=sys.stderr, flush=True)
        return out

    return run


def run_accuracy(
    names,
    data_dir: Path,
    folds: int,
    methods: str,
    peers: list[str],
    cache: Path | None,
    update: bool = False,
) -> dict:
    """Evaluate every data set (each one in a single run, so its ratios are same-run); each
    result is pickled into ``cache`` as soon as it is done (``--methods cached`` re-renders;
    ``update``: the methods evaluated now replace theirs in the cached result, the others
    are kept).  The cache is this script's own output in a local folder."""
    import pickle

    import anndata as ad

    from cellweave.mapping.evaluate import available_methods, evaluate

    extra, found = extra_methods(peers)
    known = available_methods()
    chosen = list(known) if methods == "all" else methods.split(",")
    chosen = [m for m in chosen if m in known and (known[m].kind != "peer" or m in found)]
    results = {}
    for name in names:
        if cache is not None and (cache / f"{name}.pkl").exists() and methods == "cached":
            results[name] = pickle.loads((cache / f"{name}.pkl").read_bytes())
            continue
        sc_file, sp_file = DATASETS[name]
        adata_sc = ad.read_h5ad(data_dir / sc_file)
        adata_sp = ad.read_h5ad(data_dir / sp_file)
        spec = {m: known[m] for m in chosen}
        spec.update(extra)
        if name in NOT_COUNTS and "attention" in spec:  # intensities: max-entropy attention
            attention = spec["attention"]
            spec["attention"] = replace(attention, params={**attention.params, **NOT_COUNTS[name]})
        spec = {m: replace(v, predict=_logged(f"{name}/{m}", v.predict)) for m, v in spec.items()}
        t0 = time.perf_counter()
        results[name] = evaluate(adata_sc, adata_sp, methods=spec, folds=folds, scheme="both")
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        results[name].protocol["command"] = shlex.join([Path(sys.executable).name, *sys.argv])
        cached = None if cache is None else cache / f"{name}.pkl"
        if update and cached is not None and cached.exists():
            results[name] = pickle.loads(cached.read_bytes()).combine(results[name])
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            (cache / f"{name}.pkl").write_bytes(pickle.dumps(results[name]))
    return results


def _cell(table: pd.DataFrame, ranks: pd.Series, method: str, carried=None) -> str:
    if method not in table.index:
        if carried is not None and method in carried.index:
            row = carried.loc[method]
            return f"{row['pcc']:.3f} / {row['ssim']:.3f} (carried)"
        return "-"
    row = table.loc[method]
    return f"{row['pcc']:.3f} / {row['ssim']:.3f} ({ranks[method]})"


def _peers(r, carried: dict, name: str, scheme: str) -> pd.DataFrame:
    """Peer rows of one data set and scheme: evaluated now, else carried."""
    t = r.tables[scheme]
    now = t[t["kind"] == "peer"][["pcc", "ssim"]]
    old = carried.get(name, {}).get(scheme)
    if old is None:
        return now
    return pd.concat([now, old.drop(index=list(now.index), errors="ignore")[["pcc", "ssim"]]])


def accuracy_report(
    results: dict, folds: int, carried: dict | None = None, source: str = ""
) -> list[str]:
    carried = carried or {}
    md = [
        f"- protocol: leave-gene-out, {folds} folds of the sorted shared genes shuffled with "
        "numpy.random.default_rng(0); per held-out gene PCC, SSIM, RMSE, JS "
        "(SpatialBenchmarking formulas); medians over genes; AS rank from the per-metric means "
        "(the reference); normalized scheme: truth / spot total over the fold's training "
        "genes, predictions scored as returned",
        "- `spage` = SpaGE with its published preprocessing (log-normalised inputs); "
        "`spage_raw` = SpaGE called on raw values as SpatialBenchmarking does",
        "- seconds / cpu_seconds: the whole cross-validation (all folds), wall and process CPU",
        *(_provenance(name, r) for name, r in results.items()),
        *(
            [
                f"{SOURCE_PREFIX}{source}",
                "  on the same folds and scorer, carried from that report's tables "
                "(`--carry-peers-from`): their medians and timings as measured then; their "
                "per-gene scores were not kept, so they are not ranked (AS, rank: `-`, "
                "`carried`) and the AS ranks of the other rows are among the methods run now",
            ]
            if carried
            else []
        ),
        "",
        "## Median PCC / SSIM (AS rank) per data set and scheme",
        "",
    ]
    methods = list(dict.fromkeys(m for r in results.values() for m in r.tables["normalized"].index))
    methods = list(
        dict.fromkeys(
            [
                *methods,
                *(m for by in carried.values() for m in by.get("normalized", pd.DataFrame()).index),
            ]
        )
    )
    columns = [(n, s) for n in results for s in SCHEMES]
    md.append("| method | kind | " + " | ".join(f"{n} {s}" for n, s in columns) + " |")
    md.append("|---|---|" + "---|" * len(columns))
    for m in methods:
        kind = next(
            (
                r.tables["normalized"].loc[m, "kind"]
                for r in results.values()
                if m in r.tables["normalized"].index
            ),
            "peer",
        )
        cells = [
            _cell(results[n].tables[s], results[n].ranking(s), m, carried.get(n, {}).get(s))
            for n, s in columns
        ]
        md.append(f"| {m} | {kind} | " + " | ".join(cells) + " |")
    md.append("")
    md += speed_report(results, carried)
    md += targets_report(results, carried)
    md += attention_targets(results, carried)
    for name, r in results.items():
        for s in SCHEMES:
            table = r.tables[s].copy()
            table.insert(table.columns.get_loc("AS") + 1, "rank", r.ranking(s))
            table = table.sort_values(["rank", "pcc"], ascending=[True, False], kind="stable")
            table = with_peers(table, carried.get(name, {}).get(s))
            md += [f"## {name}, {s} scheme", "", *markdown_table(table, digits=3), ""]
    return md


def _provenance(name: str, r) -> str:
    line = f"- {name} evaluated by `{r.protocol.get('command', '?')}`"
    later = r.protocol.get("combined_with")
    if later:
        words = shlex.split(later.get("command", ""))
        named = words[words.index("--methods") + 1] if "--methods" in words[:-1] else ""
        methods = named.split(",") if named else sorted(set(r.per_gene["method"]))
        methods += [m for m in ALWAYS_RUN if named and m not in methods]
        line += (
            f"; then {', '.join(methods)} re-evaluated on the same folds by "
            f"`{later.get('command', '?')}` (peers kept from the first run)"
        )
    return line


def speed_report(results: dict, carried: dict | None = None) -> list[str]:
    carried = carried or {}
    default = next(iter(results.values())).default
    combined = any(r.protocol.get("combined_with") for r in results.values())
    ours = [m for m in (default, "attention") if any(m in r.table.index for r in results.values())]
    md = [
        "## Speed: CPU seconds of the whole cross-validation",
        "",
        f"{', '.join(f'`{m}`' for m in ours)} and `spage` in the same run"
        + (
            "; `tangram` carried from the earlier run named above (same folds)"
            if carried
            else "; `tangram` from the first run on the same machine and folds"
            if combined
            else ""
        )
        + ".",
        "",
        f"| data | {' | '.join(ours)} | spage | tangram | "
        + " | ".join(f"{m} / spage" for m in ours)
        + f" | tangram / {default} |",
        "|---|" + "---:|" * (2 * len(ours) + 3),
    ]
    for name, r in results.items():
        cpu = r.tables["normalized"]["cpu_seconds"]
        old = carried.get(name, {}).get("normalized")
        if "tangram" not in cpu.index and old is not None and "tangram" in old.index:
            cpu = pd.concat([cpu, old["cpu_seconds"].loc[["tangram"]]])
        mine = [cpu.get(m, np.nan) for m in ours]
        spage, tangram = cpu.get("spage", np.nan), cpu.get("tangram", np.nan)
        md.append(
            f"| {name} | "
            + " | ".join(f"{v:.2f}" for v in mine)
            + f" | {spage:.2f} | {tangram:.1f} | "
            + " | ".join(f"{v / spage:.2f}" for v in mine)
            + f" | {tangram / cpu.get(default, np.nan):.1f} |"
        )
    if any(default not in r.tables["normalized"].index for r in results.values()):
        md.append("")
        md.append(f"(cellweave's `{default}` not evaluated)")
    md.append("")
    return md


def targets_report(results: dict, carried: dict | None = None) -> list[str]:
    carried = carried or {}
    default = next(iter(results.values())).default
    md = ["## Targets (cellweave's default method)", ""]
    if any(default not in r.tables["normalized"].index for r in results.values()):
        return [*md, f"- skipped: `{default}` was not evaluated", ""]
    md += [
        f"- AS rank vs peers and baselines: `{default}` ranked among itself and every peer and "
        "baseline, AS recomputed on that set (the issue's target); AS rank among all: in the "
        "full table above, other cellweave methods included",
        "",
        "| data | scheme | AS rank vs peers and baselines | AS rank among all | "
        "PCC above every peer | SSIM above every peer |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, r in results.items():
        for s in SCHEMES:
            t = r.tables[s]
            peers = _peers(r, carried, name, s)
            others = t[t["kind"].isin(["peer", "baseline"])].index
            vs_peers = r.ranking(s, among=[default, *others])[default]
            pcc_ok = bool((t.loc[default, "pcc"] > peers["pcc"]).all())
            ssim_ok = bool((t.loc[default, "ssim"] > peers["ssim"]).all())
            md.append(
                f"| {name} | {s} | {vs_peers} | {r.ranking(s)[default]} | "
                f"{'yes' if pcc_ok else 'NO'} | {'yes' if ssim_ok else 'NO'} |"
            )
    return [*md, ""]


def attention_targets(results: dict, carried: dict | None = None) -> list[str]:
    """Issue 17's gene targets: attention's median PCC and SSIM at least `ot`'s and above
    every peer's (normalized scheme; raw shown too)."""
    carried = carried or {}
    if any("attention" not in r.table.index for r in results.values()):
        return []
    md = [
        "## Targets (issue 17): `attention` vs `ot` and the peers",
        "",
        "- target: median PCC and SSIM (normalized scheme) at least `ot`'s and above every "
        "peer's (Tangram, gimVI, novoSpaRc), on MERFISH and BDTNP; raw scheme for reference",
        "",
        "| data | scheme | attention PCC / SSIM | ot PCC / SSIM | best peer PCC / SSIM | "
        "PCC >= ot | SSIM >= ot | PCC above every peer | SSIM above every peer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def yes(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for name, r in results.items():
        for s in SCHEMES:
            t = r.tables[s]
            a, o = t.loc["attention"], t.loc["ot"]
            peers = _peers(r, carried, name, s)
            best = f"{peers['pcc'].max():.3f} / {peers['ssim'].max():.3f}" if len(peers) else "-"
            md.append(
                f"| {name} | {s} | {a['pcc']:.3f} / {a['ssim']:.3f} | "
                f"{o['pcc']:.3f} / {o['ssim']:.3f} | {best} | {yes(a['pcc'] >= o['pcc'])} | "
                f"{yes(a['ssim'] >= o['ssim'])} | {yes(bool((a['pcc'] > peers['pcc']).all()))} | "
                f"{yes(bool((a['ssim'] > peers['ssim']).all()))} |"
            )
    return [*md, ""]


# ----------------------------------------------------------------------------- scale


def scale_child(sc_path: Path, sp_path: Path) -> dict:
    import anndata as ad

    from cellweave.mapping.api import map_cells

    adata_sc, adata_sp = ad.read_h5ad(sc_path), ad.read_h5ad(sp_path)
    t0, c0 = time.perf_counter(), time.process_time()
    map_cells(adata_sc, adata_sp, random_state=0)
    return {
        "n_cells": adata_sc.n_obs,
        "n_spots": adata_sp.n_obs,
        "n_genes": adata_sp.n_vars,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def run_scale(n_cells: int, n_spots: int, n_genes: int) -> list[str]:
    from bench_mapping_scale import simulate

    md = [f"## Scale: {n_cells:,} cells onto {n_spots:,} spots (fresh process)", ""]
    with tempfile.TemporaryDirectory() as tmp:
        sc_path, sp_path = simulate(n_spots, n_cells, n_genes, Path(tmp))
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(sc_path), str(sp_path)],
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        return [*md, f"FAILED (exit {proc.returncode}): `{proc.stderr.strip()[-300:]}`", ""]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return [
        *md,
        "| cells x spots x genes | seconds | CPU seconds | peak RSS (GB) | target |",
        "|---|---:|---:|---:|---|",
        f"| {r['n_cells']} x {r['n_spots']} x {r['n_genes']} | {r['seconds']:.1f} | "
        f"{r['cpu_seconds']:.1f} | {r['peak_rss_gb']:.2f} | "
        f"{'<= 8 GB: yes' if r['peak_rss_gb'] <= 8 else '<= 8 GB: NO'} |",
        "",
    ]


# ----------------------------------------------------------------------------- main


def keep_sections(text: str, out: Path, rerun: dict[str, bool]) -> str:
    """``text`` with the sections of the report at ``out`` that this run does not write
    kept as they are: its notes (by hand), the deconvolution (``bench_deconv.py``'s) and
    each heading of ``rerun`` not rerun now; notes last, the others before them."""
    for heading in ["## Notes", DECONV_SECTION, *(h for h, now in rerun.items() if not now)]:
        lines = existing_section(out, heading)
        if lines:
            text = replace_section(text, heading, lines)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--methods",
        default="all",
        help="'all', names (peers included), or 'cached' (re-render the --cache results)",
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bench_mapping")
    parser.add_argument("--peers", default="tangram,gimvi,novosparc")
    parser.add_argument(
        "--update-cache",
        action="store_true",
        help="merge the methods evaluated now into the cached results (same folds)",
    )
    parser.add_argument(
        "--carry-peers-from",
        type=Path,
        default=None,
        help="an earlier mapping.md on the same folds: its peer rows are shown (unranked) "
        "where the peers are not evaluated now",
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="attention's ablations on MERFISH genes and simulated fractions",
    )
    parser.add_argument("--scale", action="store_true", help="100k cells x 50k spots")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mapping.md")
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(scale_child(Path(args.child[0]), Path(args.child[1]))))
        return

    md = header("Mapping benchmark: scRNA-seq to space", PACKAGES)
    md += [f"- threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", ""]
    names = [n for n in args.datasets.split(",") if n]
    if names:
        peers = [p for p in args.peers.split(",") if p]
        results = run_accuracy(
            names, args.data_dir, args.folds, args.methods, peers, args.cache, args.update_cache
        )
        carried, source = (
            ({}, "") if args.carry_peers_from is None else read_peers(args.carry_peers_from)
        )
        md += accuracy_report(results, args.folds, carried, source)
    if args.ablations:
        sc_file, sp_file = DATASETS["merfish"]
        md += run_ablations(
            args.data_dir / sc_file,
            args.data_dir / sp_file,
            "merfish",
            args.folds,
            args.cache,
            cached=args.methods == "cached",
        )
    if args.scale:
        md += run_scale(n_cells=100_000, n_spots=50_000, n_genes=200)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(md) + "\n"
    text = keep_sections(
        text, args.out, {SCALE_SECTION: args.scale, ABLATION_SECTION: args.ablations}
    )
    args.out.write_text(text)
    print("\n".join(md))


if __name__ == "__main__":
    main()

"""Data-parallel training on CPU: ``cellweave integrate`` with 2 gloo processes vs 1.

    cd benchmarks
    nice python bench_ddp.py                        # 2000 cells, 20 epochs, seeds 0 and 1
    python bench_ddp.py --n-cells 600 --max-epochs 10 --seeds 0

Simulates one mosaic (RNA + ATAC, three batches; cellweave.sim.simulate_mosaic), then runs
the CLI on it (same data, same maximum of epochs, the CLI's early stopping) as

* ``1 process``: one process, one torch thread (``OMP_NUM_THREADS=1``);
* ``1 process, 2 threads``: one process, two torch threads (torch's default on 2 cores);
* ``2 processes (ddp)``: ``--devices 2 --strategy ddp --accelerator cpu``, gloo, one thread
  each (cellweave shares the cores out among the processes);

and reports the training time (the model's own clock), the command's wall time (reading,
process start-up, inference and scoring included) and the integration scores of
``--metrics-json`` (scib-metrics definitions: bio conservation, batch correction, total) per
seed. Writes the section ``## DDP: 2 CPU processes vs 1`` of benchmarks/results/scale.md
(machine, versions, load average, command), leaving the file's other sections as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from _report import header, markdown_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.md"
HEADING = "## DDP: 2 CPU processes vs 1"
PACKAGES = ("cellweave", "torch", "lightning", "numpy", "scib-metrics")
RUNS = {
    "1 process": ({"OMP_NUM_THREADS": "1"}, []),
    "1 process, 2 threads": ({"OMP_NUM_THREADS": "2"}, []),
    "2 processes (ddp)": (
        {"OMP_NUM_THREADS": "1"},
        ["--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"],
    ),
}


def simulate(path: Path, n_cells: int) -> None:
    """The mosaic of the benchmark (RNA + ATAC in three batches, one paired)."""
    from cellweave import io
    from cellweave.sim import simulate_mosaic

    mdata = simulate_mosaic(
        n_cells=n_cells, n_genes=300, n_peaks=1000, n_cell_types=6, latent_dim=6, random_state=0
    )
    io.write(mdata, path)


def integrate(path: Path, out: Path, *, seed: int, epochs: int, env: dict, extra: list) -> dict:
    """One ``cellweave integrate`` run: its scores, training seconds and wall time."""
    metrics = out.with_suffix(".json")
    cmd = [sys.executable, "-m", "cellweave", "integrate", str(path), "-o", str(out)]
    cmd += ["--label-key", "cell_type", "--labelled-fraction", "0", "--no-plot"]
    cmd += ["--max-epochs", str(epochs)]
    cmd += ["--metrics-json", str(metrics), "--seed", str(seed), "--device", "cpu", *extra]
    start = time.perf_counter()
    done = subprocess.run(
        cmd, env={**os.environ, **env, "CELLWEAVE_PROGRESS": "0"}, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    report = json.loads(metrics.read_text())
    scores = report["metrics"]
    ran = re.search(r"(\d+) epochs", done.stdout)
    return {
        "epochs": int(ran.group(1)) if ran else -1,
        "train_s": float(report["seconds"]),
        "wall_s": wall,
        "bio": scores["bio"],
        "batch": scores["batch"],
        "total": scores["total"],
    }


def write_section(lines: list[str]) -> None:
    """Replace (or add) this benchmark's section of scale.md; other sections stay."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Scale\n"
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    else:
        end = text.find("\n## ", start + len(HEADING))
        rest = "" if end < 0 else text[end:]
        text = text[:start] + "\n".join(lines) + "\n" + rest
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=2000)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        path = Path(tmp) / "mosaic.h5mu"
        simulate(path, args.n_cells)
        for seed in seeds:
            for name, (env, extra) in RUNS.items():
                if name == "1 process, 2 threads" and seed != seeds[0]:
                    continue  # timing only
                out = Path(tmp) / f"{name.replace(' ', '_')}_{seed}.h5mu"
                result = integrate(
                    path, out, seed=seed, epochs=args.max_epochs, env=env, extra=extra
                )
                rows.append({"run": name, "seed": seed, **result})
                print(rows[-1], flush=True)
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    table = pd.DataFrame(rows).set_index("run")
    shown = table.astype({"seed": str, "epochs": str})  # integers, not 0.000
    mean = table.groupby(level=0, sort=False)[["train_s", "wall_s", "bio", "batch"]].mean()
    one, two = mean.loc["1 process"], mean.loc["2 processes (ddp)"]
    lines = header("x", PACKAGES)[2:]  # command, machine, versions (our own heading)
    lines = [
        HEADING,
        "",
        *lines,
        f"- load (`uptime`): before `{uptime}`; after `{uptime_after}`",
        f"- data: simulate_mosaic(n_cells={args.n_cells}, n_genes=300, n_peaks=1000, "
        "n_cell_types=6), RNA + ATAC in three batches; "
        f"at most {args.max_epochs} epochs (early stopping on the 10% validation split, "
        "as the CLI trains), unsupervised; CPU, gloo",
        "",
        *markdown_table(shown, digits=3, index_name="run"),
        "",
        f"Ratio (mean over seeds), 2 processes / 1 process (1 thread each): training time "
        f"{two.train_s / one.train_s:.2f}, wall time {two.wall_s / one.wall_s:.2f}; "
        f"bio {two.bio:.3f} vs {one.bio:.3f}, batch {two.batch:.3f} vs {one.batch:.3f}.",
        "",
        "train_s: the model's training time; wall_s: the whole command (start-up of both "
        "processes, reading, inference, scoring). Scores: scib-metrics definitions on "
        "obsm['X_cellweave'] (bio conservation, batch correction, total = 0.6 bio + 0.4 batch).",
    ]
    write_section(lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

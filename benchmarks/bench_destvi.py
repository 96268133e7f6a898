"""DestVI on one deconvolution truth set at stated epochs, with its training ELBO kept.

DestVI at its tutorial's epochs (CondSCVI 300 + DestVI 2,500) took more than 91 CPU minutes
per MOp seed here, so its MOp row is measured at fewer DestVI epochs, chosen where the
training ELBO has flattened (shown from the history this script stores). The row goes to
its own file, ``results/deconv/destvi_<set>_seed<seed>.json`` (the per-seed cache files of
``bench_deconv.py`` are written by other runs at the same time); ``bench_deconv.py`` merges
such side files into its table.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice python benchmarks/bench_destvi.py \\
        --set mop --seed 0 --st-epochs 600
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from bench_deconv import RESULTS, score_fractions, truth_set

ROOT = Path(__file__).resolve().parents[1]


def flattening(elbo: list[float], window: int = 50) -> dict[str, float]:
    """How flat the end of a training curve is: the relative change of the mean ELBO over
    the last ``window`` epochs against the ``window`` before, and over the last ``window``
    against the whole drop from the first epoch."""
    values = np.asarray(elbo, dtype=float)
    if values.size < 2 * window:
        return {}
    last, before = values[-window:].mean(), values[-2 * window : -window].mean()
    drop = values[0] - last
    return {
        "window": window,
        "last_vs_previous_window": float((before - last) / abs(last)),
        "share_of_total_drop_in_last_window": float((before - last) / drop) if drop else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="mop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sc-epochs", type=int, default=None, help="CondSCVI (default 300)")
    parser.add_argument("--st-epochs", type=int, default=600, help="DestVI epochs")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from peers_deconv import destvi_fractions

    reference, spots, truth, n_cells = truth_set(args.set, args.seed, args.data_dir)
    history: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    pred = destvi_fractions(
        reference,
        spots,
        cell_type_key="cell_type",
        random_state=args.seed,
        cells_per_spot=n_cells,
        sc_epochs=args.sc_epochs,
        st_epochs=args.st_epochs,
        history=history,
    )
    row = score_fractions(truth, pred)
    row.update(
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - c0,
        command=shlex.join([Path(sys.executable).name, *sys.argv]),
        epochs=f"CondSCVI {len(history['condscvi_elbo'])} + DestVI {args.st_epochs}",
        condscvi_flattening=flattening(history["condscvi_elbo"]),
        destvi_flattening=flattening(history["destvi_elbo"]),
        **history,
    )
    name = f"destvi_e{args.st_epochs}"
    out = args.out or RESULTS / "deconv" / f"destvi_{args.set}_seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({name: row}, indent=1, sort_keys=True) + "\n")
    shown = {k: round(v, 3) for k, v in row.items() if isinstance(v, float)}
    print(f"{args.set} seed {args.seed} {name}: {shown}", flush=True)
    print(f"flattening: {row['condscvi_flattening']} {row['destvi_flattening']}", flush=True)


if __name__ == "__main__":
    main()

"""Bad input, generated (hypothesis): every subcommand and API entry point refuses it in one
line, writes nothing and leaves its input as it was, or gives a correct result.

CLI (in-process, :func:`cellweave.cli.main` with stdout/stderr captured): exit 2 with exactly
one stderr line (no traceback, no temporary name, no ``error::``, no placeholder text), no
output file, input files byte-identical; or exit 0 with the output written. API: a
``cellweave`` error that is a ``ValueError``, the input object unchanged; or a result.

Meaningless inputs (degenerate or wrong-dimension coordinates on the default path, all-zero
matrices, single cells, all-NaN labels, guidance weights, numeric ranges inside the API) are a
fixed grid, one test each. Run with ``-s`` to see how many cases
each entry point got and their outcomes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io as _io
import os
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import sparse

from cellweave.cli import main
from cellweave.errors import CellweaveError

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
OUTCOMES: Counter = Counter()  # (entry point, outcome) -> generated cases
PLACEHOLDERS = ("the 0 label classes", "but d coordinate", "error::", ".tmp-", "Traceback")


@pytest.fixture(scope="module", autouse=True)
def _summary():
    yield
    entries = sorted({entry for entry, _ in OUTCOMES})
    print("\n\ngenerated bad-input cases per entry point (outcome: count)")
    for entry in entries:
        counts = {o: n for (e, o), n in sorted(OUTCOMES.items()) if e == entry}
        print(f"  {entry:<22} {sum(counts.values()):>4}  {counts}")
    total = Counter()
    for (_, outcome), n in OUTCOMES.items():
        total[outcome] += n
    print(f"  {'all':<22} {sum(total.values()):>4}  {dict(sorted(total.items()))}")


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
def base_adata(n_obs: int = 36, n_vars: int = 14, seed: int = 0) -> ad.AnnData:
    """Small spatial counts on a jittered grid, with cell types and batches."""
    rng = np.random.default_rng(seed)
    X = rng.poisson(3.0, (n_obs, n_vars)).astype(np.float32)
    adata = ad.AnnData(sparse.csr_matrix(X))
    adata.obs_names = [f"c{i}" for i in range(n_obs)]
    adata.var_names = [f"g{j}" for j in range(n_vars)]
    side = int(np.ceil(np.sqrt(n_obs)))
    grid = np.array([(i % side, i // side) for i in range(n_obs)], dtype=float)
    adata.obsm["spatial"] = grid + rng.normal(0, 0.05, grid.shape)
    adata.obs["ct"] = pd.Categorical([("A", "B", "C")[i % 3] for i in range(n_obs)])
    adata.obs["batch"] = pd.Categorical([("b1", "b2")[i % 2] for i in range(n_obs)])
    return adata


def _dense(adata: ad.AnnData) -> np.ndarray:
    return adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)


def _set_value(value: float):
    def mutate(adata):
        X = _dense(adata)
        X[1, 2] = value
        adata.X = X
        return adata

    return mutate


def _names(axis: str):
    def mutate(adata):
        names = list(getattr(adata, f"{axis}_names"))
        names[1] = names[0]
        setattr(adata, f"{axis}_names", names)
        return adata

    return mutate


def _coords(make):
    def mutate(adata):
        adata.obsm["spatial"] = make(adata)
        return adata

    return mutate


def _no_spatial(adata):
    del adata.obsm["spatial"]
    return adata


def _spatial_nan(adata):
    coords = np.array(adata.obsm["spatial"])
    coords[0, 0] = np.nan
    adata.obsm["spatial"] = coords
    return adata


def _all_zero(adata):
    adata.X = sparse.csr_matrix(adata.shape, dtype=np.float32)
    return adata


def _labels_nan(adata):
    adata.obs["ct"] = np.nan
    return adata


#: Bad AnnData contents refused today (names, values, coordinates), by whoever reads them.
REFUSED = {
    "nan": _set_value(np.nan),
    "inf": _set_value(np.inf),
    "negative": _set_value(-3.0),
    "dup_obs": _names("obs"),
    "dup_var": _names("var"),
    "spatial_nan": _spatial_nan,
}
#: Meaningless AnnData contents refused by the entry points' up-front checks.
API_LEVEL = {
    "spatial_degenerate": _coords(lambda a: np.zeros((a.n_obs, 2))),
    "spatial_1d": _coords(lambda a: np.asarray(a.obsm["spatial"])[:, :1]),
    "spatial_5d": _coords(lambda a: np.random.default_rng(0).random((a.n_obs, 5))),
    "all_zero": _all_zero,
    "single_obs": lambda a: a[:1].copy(),
    "labels_nan": _labels_nan,
}
#: Mutations that leave a usable input for some commands (refused or run, never wrong).
EITHER = {
    "fractional": lambda a: (setattr(a, "X", sparse.csr_matrix(_dense(a) * 0.37)), a)[1],
    "no_spatial": _no_spatial,
}

_ALL_CLI = {"inspect", "neighbors", "impute", "map", "align", "integrate"}
_READS_X = _ALL_CLI - {"neighbors"}  # the graph reads the coordinates only
#: Which commands must refuse each mutation (the others may run on it: e.g. align compares
#: scaled expression, map does not need coordinates).
CLI_MUST_REFUSE = {
    "nan": _READS_X,
    "inf": _READS_X,
    "negative": {"inspect", "impute", "map", "integrate"},
    "dup_obs": _ALL_CLI,
    "dup_var": _ALL_CLI,
    "spatial_nan": {"inspect", "neighbors", "impute", "align"},
    "fractional": {"inspect", "impute", "integrate"},
    "no_spatial": {"inspect", "neighbors", "impute", "align"},
}
#: The same for the API entry points.
API_MUST_REFUSE = {
    "nan": {"tl.impute", "tl.map_cells", "tl.align_sections"},
    "inf": {"tl.impute", "tl.map_cells", "tl.align_sections"},
    "negative": {"tl.impute", "tl.map_cells"},
    "dup_obs": {"tl.impute", "tl.map_cells", "tl.align_sections"},
    "dup_var": {"tl.impute", "tl.map_cells", "tl.align_sections"},
    "spatial_nan": {"tl.impute", "tl.align_sections", "spatial_neighbors"},
}


def _bytes_file(content: bytes):
    def write(path: Path) -> None:
        path.write_bytes(content)

    return write


def _truncated(path: Path) -> None:
    base_adata().write_h5ad(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _renamed(path: Path) -> None:
    tmp = path.with_name("real.h5ad")
    base_adata().write_h5ad(tmp)
    os.replace(tmp, path)


#: Broken files (the name is chosen by the command's input kind).
BROKEN_FILES = {
    "not_hdf5": _bytes_file(b"this is not an HDF5 file\n" * 4),
    "empty": _bytes_file(b""),
    "truncated": _truncated,
}


# ------------------------------------------------------------------------------------------
# running the CLI
# ------------------------------------------------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): _sha(p) for p in sorted(folder.rglob("*"))}


def run_cli(entry: str, argv: list[str], folder: Path, *, must_refuse: bool) -> str:
    """Run ``cellweave argv`` in-process; check the one-line contract; return the outcome."""
    before = _snapshot(folder)
    out, err = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    after = _snapshot(folder)
    text = err.getvalue()
    try:
        outcome = _check_run(argv, code, text, before, after, must_refuse)
    except AssertionError:
        OUTCOMES[(entry, "wrong")] += 1
        raise
    OUTCOMES[(entry, outcome)] += 1
    return outcome


def _check_run(argv, code, text, before, after, must_refuse) -> str:
    if code == 2:
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) == 1, f"{argv}: {text}"
        assert lines[0].startswith("cellweave: error: "), text
        for word in PLACEHOLDERS:
            assert word not in text, f"{argv}: {text}"
        assert after == before, f"{argv} wrote or changed files: {set(after) ^ set(before)}"
        outcome = "refused"
    else:
        assert code == 0, f"{argv}: exit {code}: {text}"
        assert not must_refuse, f"{argv}: ran (exit 0) on bad input"
        changed = [k for k, v in before.items() if after.get(k) != v]
        assert not changed, f"{argv} modified its input(s) {changed}"
        if argv[0] != "inspect":  # the one command that writes nothing
            assert set(after) - set(before), f"{argv}: exit 0 but no output"
        outcome = "ran"
    return outcome


@contextlib.contextmanager
def workdir():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def write_adata(adata: ad.AnnData, path: Path) -> Path:
    adata.write_h5ad(path)
    return path


# the commands on one (possibly bad) AnnData input; {i} = input, {o} = output folder
COMMANDS = {
    "inspect": ["inspect", "{i}", "--counts", "--spatial"],
    "neighbors": ["neighbors", "{i}", "--out", "{o}/out.h5ad"],
    "impute": ["impute", "{i}", "-o", "{o}/out.h5ad", "--method", "spatial_knn"],
    "map": ["map", "{ref}", "{i}", "-o", "{o}/out.h5ad", "--method", "softmax",
            "--cell-type-key", "ct"],
    "align": ["align", "{ref}", "{i}", "-o", "{o}/out.h5ad", "--param", "refine=1"],
    "integrate": ["integrate", "{i}", "--modality", "rna", "--batch-key", "batch", "-o",
                  "{o}/out.h5ad", "--max-epochs", "1", "--no-plot", "--n-latent", "3",
                  "--param", "encoder_hidden=8", "--param", "decoder_hidden=8"],
}  # fmt: skip
# which command reads which column / key (a mutation elsewhere is harmless)
USES_SPATIAL = {"inspect", "neighbors", "impute", "impute_auto", "align"}
USES_LABELS = {"map"}
# the default path of impute (method auto, short training) and the mapping solver that
# uses coordinates, for the coordinate checks
MORE = {
    "impute_auto": [
        "impute",
        "{i}",
        "-o",
        "{o}/out.h5ad",
        "--param",
        "max_epochs=2",
        "--param",
        "max_rank=3",
        "--param",
        "n_latent=4",
    ],
    "map_fgw": ["map", "{ref}", "{i}", "-o", "{o}/out.h5ad", "--method", "fgw"],
}


def _argv(command: str, folder: Path, path: Path, ref: Path | None = None) -> list[str]:
    fill = {"i": str(path), "o": str(folder / "out"), "ref": str(ref)}
    (folder / "out").mkdir(exist_ok=True)
    return [part.format(**fill) for part in {**COMMANDS, **MORE}[command]]


def _with_reference(command: str, folder: Path) -> Path | None:
    if command in ("map", "map_fgw", "align"):
        return write_adata(base_adata(seed=1), folder / "ref.h5ad")
    return None


# ------------------------------------------------------------------------------------------
# CLI: bad files
# ------------------------------------------------------------------------------------------
@SETTINGS
@given(
    command=st.sampled_from(sorted(COMMANDS)),
    mutation=st.sampled_from(sorted(REFUSED)),
    seed=st.integers(0, 3),
)
def test_cli_refuses_bad_anndata(command, mutation, seed):
    must = command in CLI_MUST_REFUSE[mutation]
    with workdir() as folder:
        ref = _with_reference(command, folder)
        path = write_adata(REFUSED[mutation](base_adata(seed=seed)), folder / "in.h5ad")
        run_cli(command, _argv(command, folder, path, ref), folder, must_refuse=must)


@SETTINGS
@given(command=st.sampled_from(sorted(COMMANDS)), broken=st.sampled_from(sorted(BROKEN_FILES)))
def test_cli_refuses_broken_files(command, broken):
    with workdir() as folder:
        ref = _with_reference(command, folder)
        path = folder / "in.h5ad"
        BROKEN_FILES[broken](path)
        run_cli(command, _argv(command, folder, path, ref), folder, must_refuse=True)


@SETTINGS
@given(command=st.sampled_from(["inspect", "integrate", "neighbors"]), mosaic=st.booleans())
def test_cli_names_a_renamed_file(command, mosaic):
    """An .h5ad renamed .h5mu (or the reverse): one line that says to rename it."""
    with workdir() as folder:
        if mosaic:
            import mudata as md

            path = folder / "in.h5ad"
            with contextlib.redirect_stderr(_io.StringIO()):
                md.MuData({"rna": base_adata()}).write_h5mu(folder / "real.h5mu")
            os.replace(folder / "real.h5mu", path)
            argv = _argv(command, folder, path)
        else:
            path = folder / "in.h5mu"
            _renamed(path)
            argv = _argv(command, folder, path)
            if command == "integrate":
                argv = [a for a in argv if a not in ("--modality", "rna")]
                argv[argv.index("-o") + 1] = str(folder / "out" / "out.h5mu")
        err = _io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(_io.StringIO()):
            code = main(argv)
        assert code == 2
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
        assert "rename it" in err.getvalue() or "has no spatial" in err.getvalue()
        OUTCOMES[(command, "refused")] += 1


@SETTINGS
@given(
    command=st.sampled_from(sorted(COMMANDS)),
    mutation=st.sampled_from(sorted(EITHER)),
)
def test_cli_refuses_or_runs_correctly(command, mutation):
    """Inputs that are fine for some commands: refused in one line, or a written output."""
    with workdir() as folder:
        ref = _with_reference(command, folder)
        path = write_adata(EITHER[mutation](base_adata()), folder / "in.h5ad")
        must = command in CLI_MUST_REFUSE[mutation]
        run_cli(command, _argv(command, folder, path, ref), folder, must_refuse=must)


def _relevant(command: str, mutation: str) -> bool:
    """Whether ``command`` (or API entry) reads what ``mutation`` breaks."""
    if mutation == "labels_nan":  # map --cell-type-key ct
        return command in ("map", "tl.map_cells")
    if mutation.startswith("spatial"):
        return command in USES_SPATIAL or command in ("map_fgw", *API_SPATIAL)
    if command in ("impute_auto", "map_fgw"):
        return False
    if mutation == "all_zero":  # the graph reads the coordinates only
        return "neighbors" not in command
    return command != "inspect"  # inspect describes a file of one cell too


API_SPATIAL = ("tl.impute", "tl.align_sections", "spatial_neighbors")


MEANINGLESS_CLI = [
    (c, m)
    for c in [*sorted(COMMANDS), "impute_auto", "map_fgw"]
    for m in sorted(API_LEVEL)
    if _relevant(c, m)
]


@pytest.mark.parametrize(("command", "mutation"), MEANINGLESS_CLI)
def test_cli_refuses_meaningless_input(command, mutation):
    """Degenerate or meaningless inputs: a fixed grid, one test per case. All-NaN labels are
    put in the reference (the column that is read)."""
    with workdir() as folder:
        ref = _with_reference(command, folder)
        data = base_adata()
        if mutation == "labels_nan":  # the reference's labels are the ones read
            write_adata(_labels_nan(base_adata(seed=1)), ref)
        else:
            data = API_LEVEL[mutation](data)
        path = write_adata(data, folder / "in.h5ad")
        run_cli(command, _argv(command, folder, path, ref), folder, must_refuse=True)


# ------------------------------------------------------------------------------------------
# CLI: bad options and output paths
# ------------------------------------------------------------------------------------------
_not_positive = st.integers(-5, 0).map(str)
_negative = st.floats(-1e3, -1e-3).map(lambda x: f"{x:.4g}")
_not_finite = st.sampled_from(["nan", "inf", "-inf"])
_words = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=8).map(lambda w: f"zz{w}")

BAD_OPTIONS = {
    "neighbors": st.one_of(
        st.tuples(st.just("--n-neighbors"), _not_positive),
        st.tuples(st.just("--max-order"), _not_positive),
        st.tuples(st.just("--radius"), st.one_of(_negative, _not_finite, st.just("0"))),
        st.tuples(st.just("--method"), _words),
    ),
    "impute": st.one_of(
        st.tuples(st.just("--method"), _words),
        st.tuples(st.just("--param"), _negative.map(lambda v: f"n_neighbors={v}")),
        st.tuples(st.just("--param"), _words.map(lambda w: f"{w}=1")),
        st.tuples(st.just("--seed"), st.integers(-9, -1).map(str)),
        st.tuples(st.just("--device"), _words),
        st.tuples(st.just("--param"), st.just("target_sum=-1")),
    ),
    "map": st.one_of(
        st.tuples(st.just("--method"), _words),
        st.tuples(st.just("--param"), _negative.map(lambda v: f"perplexity={v}")),
        st.tuples(st.just("--param"), _not_finite.map(lambda v: f"perplexity={v}")),
        st.tuples(st.just("--genes"), _words),
    ),
    "align": st.one_of(
        st.tuples(st.just("--alpha"), st.sampled_from(["-0.5", "1.5", "nan", "x"])),
        st.tuples(st.just("--overlap"), st.sampled_from(["0", "1.5", "-1", "nan", "abc"])),
        st.tuples(st.just("--param"), st.sampled_from(["refine=-1", "alpha=0.3", "zz=1"])),
    ),
    "integrate": st.one_of(
        st.tuples(st.just("--n-latent"), _not_positive),
        st.tuples(st.just("--max-epochs"), _not_positive),
        st.tuples(st.just("--n-clusters"), _not_positive),
        st.tuples(st.just("--labelled-fraction"), st.sampled_from(["1", "1.5", "-0.1", "nan"])),
        st.tuples(st.just("--param"), _negative.map(lambda v: f"mmd_weight={v}")),
        st.tuples(st.just("--param"), _not_finite.map(lambda v: f"graph_weight={v}")),
        st.tuples(st.just("--param"), _words.map(lambda w: f"{w}=1")),
        st.tuples(st.just("--modality"), _words),
    ),
}


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_cli_refuses_bad_options(data):
    command = data.draw(st.sampled_from(sorted(BAD_OPTIONS)), label="command")
    option = data.draw(BAD_OPTIONS[command], label="option")
    with workdir() as folder:
        ref = _with_reference(command, folder)
        path = write_adata(base_adata(), folder / "in.h5ad")
        argv = _argv(command, folder, path, ref)
        if option[0] in argv and option[0] != "--param":  # replace the default value
            at = argv.index(option[0])
            argv = argv[:at] + argv[at + 2 :]
        run_cli(command, [*argv, *option], folder, must_refuse=True)


SIMULATE_BAD = st.one_of(
    st.tuples(st.just("spatial"), st.sampled_from(["--n-spots", "--n-genes"]), _not_positive),
    st.tuples(st.just("spatial"), st.just("--dropout"), st.sampled_from(["1", "1.5", "-0.1"])),
    st.tuples(st.just("spatial"), st.just("--cells-per-spot"), st.sampled_from(["0.5", "nan"])),
    st.tuples(st.just("spatial"), st.just("--batch-effect"), st.one_of(_negative, _not_finite)),
    st.tuples(st.just("mosaic"), st.sampled_from(["--n-cells", "--n-peaks"]), _not_positive),
    st.tuples(st.just("mosaic"), st.just("--batch-effect"), _not_finite),
    st.tuples(
        st.just("mosaic"),
        st.just("--batch"),
        st.sampled_from(["paired", "=rna", "a=", "a=rna+zz"]),
    ),
)


@settings(max_examples=16, deadline=None, derandomize=True)
@given(case=SIMULATE_BAD, duplicate=st.booleans())
def test_cli_simulate_refuses_bad_options(case, duplicate):
    kind, option, value = case
    with workdir() as folder:
        out = str(folder / ("sim" if kind == "spatial" else "m.h5mu"))
        argv = ["simulate", kind, "--out", out, option, value]
        if duplicate and kind == "mosaic":  # the same batch twice (the last one used to win)
            argv = ["simulate", kind, "--out", out, "--batch", "a=rna", "--batch", "a=atac"]
        run_cli("simulate", argv, folder, must_refuse=True)


OUTPUT_PROBLEMS = ("wrong_extension", "is_input", "parent_is_file", "exists", "read_only", "dir")


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    command=st.sampled_from(["neighbors", "impute", "map", "align", "integrate"]),
    problem=st.sampled_from(OUTPUT_PROBLEMS),
    plot=st.booleans(),
)
def test_cli_refuses_bad_output_paths_up_front(command, problem, plot):
    """Found before reading or training: the input is never even opened when the output is
    wrong (a patched reader would fail the test)."""
    with workdir() as folder:
        ref = _with_reference(command, folder)
        path = write_adata(base_adata(), folder / "in.h5ad")
        argv = _argv(command, folder, path, ref)
        flag = "--out" if "--out" in argv else "-o"
        at = argv.index(flag) + 1
        target = Path(argv[at])
        if plot and command in ("neighbors", "impute", "align", "integrate"):
            flag, target = "--plot", folder / "out" / "fig.png"
            argv = [*argv, flag, str(target)] if flag not in argv else argv
            argv = [a for a in argv if a != "--no-plot"]
            at = argv.index(flag) + 1
        readonly = folder / "ro"
        readonly.mkdir()
        bad = {
            "wrong_extension": target.with_suffix(".h5mu" if flag != "--plot" else ".txt"),
            "is_input": path,
            "parent_is_file": path / "x" / target.name,
            "exists": target,
            "read_only": readonly / target.name,
            "dir": folder / "out",
        }[problem]
        if problem == "exists":
            bad.write_text("keep me")
        if problem == "is_input":
            argv.append("--overwrite")
        argv[at] = str(bad)
        readonly.chmod(0o555)

        def not_writable(folder_: Path) -> bool:  # as a non-root user sees 0o555
            return bool(folder_.stat().st_mode & 0o200) and os.access(folder_, os.W_OK)

        reader = f"cellweave.cli.{command}.read_input"
        try:
            with (
                mock.patch("cellweave.io.paths._writable", not_writable),
                mock.patch(reader, side_effect=AssertionError("read before the output check")),
            ):
                run_cli(command, argv, folder, must_refuse=True)
        finally:
            readonly.chmod(0o755)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    command=st.sampled_from(["neighbors", "impute", "map", "align", "integrate", "inspect"]),
    usage=st.sampled_from(["unknown_option", "missing_argument", "bad_int", "bad_choice"]),
)
def test_cli_usage_errors_are_one_line(command, usage):
    with workdir() as folder:
        ref = _with_reference(command, folder)
        path = write_adata(base_adata(), folder / "in.h5ad")
        argv = _argv(command, folder, path, ref)
        if usage == "unknown_option":
            argv.append("--no-such-option")
        elif usage == "missing_argument":
            argv = [command]
        elif usage == "bad_int":
            argv += ["--seed", "three"] if command != "inspect" else ["--layer"]
        else:
            argv = ["neighbors", str(path), "--out", str(folder / "o.h5ad"), "--method", "zz"]
        run_cli(command, argv, folder, must_refuse=True)


# ------------------------------------------------------------------------------------------
# API entry points
# ------------------------------------------------------------------------------------------
def _state(adata: ad.AnnData) -> tuple:
    X = _dense(adata)
    return (
        hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest(),
        tuple(adata.obs.columns),
        tuple(adata.obsm.keys()),
        tuple(adata.layers.keys()),
        tuple(adata.uns.keys()),
        tuple(adata.obsp.keys()),
    )


def run_api(entry: str, call, *objects: ad.AnnData, must_refuse: bool) -> str:
    """Call the API; an error must be a one-line cellweave ValueError, inputs unchanged."""
    before = [_state(a) for a in objects]
    try:
        call()
    except Exception as err:
        ok = isinstance(err, CellweaveError) and isinstance(err, ValueError)
        ok = ok and "\n" not in str(err) and not any(w in str(err) for w in PLACEHOLDERS)
        ok = ok and [_state(a) for a in objects] == before
        OUTCOMES[(f"api:{entry}", "refused" if ok else "wrong")] += 1
        assert ok, f"{entry}: {err!r} (or its input changed)"
        return "refused"
    OUTCOMES[(f"api:{entry}", "wrong" if must_refuse else "ran")] += 1
    assert not must_refuse, f"{entry} ran on bad input"
    return "ran"


def _api_calls(adata: ad.AnnData, ref: ad.AnnData, options: dict) -> dict:
    from cellweave import graph, pp, tl

    small = {"max_epochs": 1, "n_latent": 3, "encoder_hidden": 8, "decoder_hidden": 8}
    mosaic = {**small, **options.get("integrate", {})}
    return {
        "tl.impute": lambda: tl.impute(adata, method="spatial_knn", **options.get("impute", {})),
        "tl.map_cells": lambda: tl.map_cells(
            ref, adata, method="softmax", cell_type_key="ct", **options.get("map", {})
        ),
        "tl.align_sections": lambda: tl.align_sections(ref, adata, refine=1),
        "spatial_neighbors": lambda: graph.spatial_neighbors(
            adata, **options.get("neighbors", {})
        ),
        "pp.log_normalize": lambda: pp.log_normalize(adata.X, **options.get("pp", {})),
        "tl.integrate": lambda: tl.integrate(adata, modality="rna", batch_key="batch", **mosaic),
    }  # fmt: skip


API_ENTRIES = ("tl.impute", "tl.map_cells", "tl.align_sections", "spatial_neighbors")


@SETTINGS
@given(entry=st.sampled_from(API_ENTRIES), mutation=st.sampled_from(sorted(REFUSED)))
def test_api_refuses_bad_anndata(entry, mutation):
    adata, ref = REFUSED[mutation](base_adata()), base_adata(seed=1)
    call = _api_calls(adata, ref, {})[entry]
    run_api(entry, call, adata, ref, must_refuse=entry in API_MUST_REFUSE[mutation])


MEANINGLESS_API = [(e, m) for e in API_ENTRIES for m in sorted(API_LEVEL) if _relevant(e, m)] + [
    ("spatial_neighbors", "dup_obs")
]  # graph.spatial_neighbors does not check names


@pytest.mark.parametrize(("entry", "mutation"), MEANINGLESS_API)
def test_api_refuses_meaningless_input(entry, mutation):
    adata, ref = base_adata(), base_adata(seed=1)
    if mutation == "labels_nan":  # the reference's labels are the ones read
        ref = _labels_nan(ref)
    else:
        adata = {**API_LEVEL, **REFUSED}[mutation](adata)
    run_api(entry, _api_calls(adata, ref, {})[entry], adata, ref, must_refuse=True)


API_BAD_OPTIONS = st.one_of(
    st.tuples(st.just("tl.impute"), st.just("impute"), st.sampled_from(
        [{"n_neighbors": 0}, {"n_neighbors": -3}, {"zz": 1}, {"average": "zz"}]
    )),
    st.tuples(st.just("tl.map_cells"), st.just("map"), st.sampled_from(
        [{"perplexity": -1.0}, {"perplexity": float("nan")}, {"zz": 1}]
    )),
    st.tuples(st.just("spatial_neighbors"), st.just("neighbors"), st.sampled_from(
        [{"n_neighbors": 0}, {"method": "zz"}, {"max_order": 0}]
    )),
    st.tuples(st.just("tl.integrate"), st.just("integrate"), st.sampled_from(
        [{"n_latent": 0}, {"mmd_weight": -5.0}, {"graph_weight": float("nan")}, {"zz": 1}]
    )),
)  # fmt: skip


@settings(max_examples=20, deadline=None, derandomize=True)
@given(case=API_BAD_OPTIONS)
def test_api_refuses_bad_options(case):
    entry, key, options = case
    adata, ref = base_adata(), base_adata(seed=1)
    run_api(entry, _api_calls(adata, ref, {key: options})[entry], adata, ref, must_refuse=True)


API_RANGE_OPTIONS = [
    ("pp.log_normalize", "pp", {"target_sum": -1.0}),
    ("pp.log_normalize", "pp", {"target_sum": 0.0}),
    ("pp.log_normalize", "pp", {"target_sum": float("nan")}),
    ("tl.impute", "impute", {"target_sum": -1.0}),
    ("tl.impute", "impute", {"target_sum": float("nan")}),
    ("tl.integrate", "integrate", {"max_epochs": 0}),
    ("tl.integrate", "integrate", {"max_epochs": -1}),
]


@pytest.mark.parametrize(
    ("entry", "key", "options"),
    API_RANGE_OPTIONS,
)
def test_api_refuses_out_of_range_numbers(entry, key, options):
    """Numeric ranges checked inside the API (the registry's bounds, pp's target_sum)."""
    adata, ref = base_adata(), base_adata(seed=1)
    run_api(entry, _api_calls(adata, ref, {key: options})[entry], adata, ref, must_refuse=True)


# ------------------------------------------------------------------------------------------
# mosaics (integrate on a .h5mu) and saved models
# ------------------------------------------------------------------------------------------
def base_mosaic():
    from cellweave.sim import simulate_mosaic

    return simulate_mosaic(n_cells=60, n_genes=20, n_peaks=40, n_cell_types=3, random_state=0)


def _graph_values(value: float):
    def mutate(mdata):
        for key in list(mdata.varp.keys()):
            graph = sparse.csr_matrix(mdata.varp[key], dtype=np.float64)
            graph.data[: max(1, graph.nnz // 3)] = value
            mdata.varp[key] = graph
        return mdata

    return mutate


def _rna_zero(mdata):
    rna = mdata.mod["rna"]
    rna.X = sparse.csr_matrix(rna.shape, dtype=np.float32)
    return mdata


MOSAIC_API_LEVEL = {
    "guidance_nan": _graph_values(np.nan),
    "guidance_negative": _graph_values(-1.0),
    "rna_all_zero": _rna_zero,
}
MOSAIC_ARGS = ["--max-epochs", "1", "--no-plot", "--n-latent", "3", "--param", "encoder_hidden=8",
               "--param", "decoder_hidden=8"]  # fmt: skip


@pytest.mark.parametrize("mutation", sorted(MOSAIC_API_LEVEL))
def test_cli_integrate_refuses_bad_mosaic(mutation):
    """A handful of fixed cases (each trains for at most one epoch): no shrinking needed.
    Negative entries of a ``varp`` graph are signed links (the weight carries the sign, as
    in GLUE's graphs): that mosaic must train, the NaN one and all-zero RNA be refused."""
    from cellweave import io

    with workdir() as folder:
        path = folder / "in.h5mu"
        io.write(MOSAIC_API_LEVEL[mutation](base_mosaic()), path)
        argv = ["integrate", str(path), "-o", str(folder / "out.h5mu"), *MOSAIC_ARGS]
        run_cli("integrate", argv, folder, must_refuse=mutation != "guidance_negative")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from cellweave import tl

    mdata = base_mosaic()
    model = tl.integrate(
        mdata, batch_key="batch", max_epochs=1, n_latent=3, encoder_hidden=8, decoder_hidden=8,
        return_model=True, train_kwargs={"progress": False},
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("model") / "saved"
    model.save(folder)
    return folder, mdata


def _truncate(folder: Path) -> None:
    weights = folder / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])


def _unknown_key(folder: Path) -> None:
    import json

    meta = json.loads((folder / "model.json").read_text())
    for value in meta.values():
        if isinstance(value, dict):
            value["zz_unknown"] = 1
    (folder / "model.json").write_text(json.dumps(meta))


MODEL_DAMAGE = {
    "truncated_weights": _truncate,
    "unknown_key": _unknown_key,
    "no_weights": lambda f: (f / "weights.pt").unlink(),
    "json_garbage": lambda f: (f / "model.json").write_text("{not json"),
}


@pytest.mark.parametrize("damage", sorted(MODEL_DAMAGE))
def test_api_model_load_refuses_damaged_folders(saved_model, damage):
    import shutil

    from cellweave.mosaic import MosaicModel

    source, mdata = saved_model
    with workdir() as folder:
        copy = folder / "model"
        shutil.copytree(source, copy)
        MODEL_DAMAGE[damage](copy)
        try:
            MosaicModel.load(copy, mdata)
        except Exception as err:
            ok = isinstance(err, CellweaveError) and isinstance(err, ValueError)
            OUTCOMES[("api:MosaicModel.load", "refused" if ok else "wrong")] += 1
            assert ok, repr(err)
            return
        OUTCOMES[("api:MosaicModel.load", "wrong")] += 1
        raise AssertionError(f"MosaicModel.load accepted a folder with {damage}")

"""Pieces every subcommand shares: output paths, summary tables, figures."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .. import io
from .._progress import note

console = Console()


def use_agg_backend() -> None:
    """Draw figures off-screen (the CLI only writes PNG files)."""
    import matplotlib

    matplotlib.use("Agg")


def check_output(
    out: Path,
    kind: str = "h5ad",
    *,
    inputs: Iterable[Path] = (),
    overwrite: bool = False,
    label: str = "--out",
) -> Path:
    """Refuse, before any file is read, an output that cannot be written as ``kind``: an
    input, an existing file (without ``overwrite``), the wrong extension, a read-only folder
    (see :func:`cellweave.io.check_output_path`)."""
    return io.check_output_path(out, kind=kind, inputs=inputs, overwrite=overwrite, label=label)


def check_outputs(
    outputs: Mapping[str, tuple[Path | None, str]],
    *,
    inputs: Iterable[Path] = (),
    overwrite: bool = False,
) -> None:
    """Every output of a run (``{option: (path or None, kind)}``) checked by
    :func:`check_output`, and no two of them the same path."""
    inputs = list(inputs)
    for label, (path, kind) in outputs.items():
        if path is not None:
            check_output(path, kind, inputs=inputs, overwrite=overwrite, label=label)
    io.check_distinct({label: path for label, (path, _) in outputs.items()})


def evaluated_output(out: Path | None, *, inputs: Iterable[Path], overwrite: bool) -> Path:
    """``-o/--out`` of a command that writes it unless ``--evaluate``: required, checked by
    :func:`check_output`."""
    if out is None:
        raise click.UsageError("missing -o/--out (or pass --evaluate)")
    return check_output(out, inputs=inputs, overwrite=overwrite)


def evaluation_request(
    methods: str,
    default: str,
    method_params: dict,
    *,
    metrics_json: Path | None,
    overwrite: bool,
) -> tuple[str | list[str], dict[str, dict] | None]:
    """``--evaluate``'s methods (``"all"`` or the ``--methods`` list) and the ``--param``
    values as options of the ``default`` method; an existing ``--metrics-json`` is refused
    first (before any file is read)."""
    if metrics_json is not None:
        check_output(metrics_json, "file", overwrite=overwrite, label="--metrics-json")
    chosen = "all" if methods == "all" else comma_list(methods)
    return chosen, ({default: method_params} if method_params else None)


def print_table(title: str, rows: Iterable[tuple], *, columns: tuple[str, ...]) -> None:
    """Print a rich table of rows to stdout."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def print_methods(registry, title: str, *, entry: str = "method") -> None:
    """``--list-methods``: a registry's table (name, kind, description, options=defaults);
    ``entry`` heads the name column."""
    print_table(title, registry.table(), columns=(entry, "kind", "what", "options"))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace an existing output file."
)
seed_option = click.option(
    "--seed",
    "random_state",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Random seed.",
)


class Number(click.FloatRange):
    """A finite number in a range (click's ``FloatRange`` lets ``nan`` through)."""

    name = "number"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def text_option(name: str, default: str, help: str, **kwargs):
    """``--name TEXT`` with a default shown in the help."""
    return click.option(name, default=default, show_default=True, help=help, **kwargs)


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--device`` checked while the command line is parsed, before any file is read: an
    unknown or unavailable device is one line and exit 2 (the value is kept as written)."""
    if value != "auto":  # always valid; checking it would load torch for nothing
        from ..device import check_device

        check_device(value)
    return value


device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    callback=_check_device,
    help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N (GPU number N), gpu or mps.",
)
evaluate_methods_option = click.option(
    "--methods",
    default="all",
    show_default=True,
    help="With --evaluate: 'all' or a comma-separated list.",
)


def evaluation_options(help: str):
    """``--evaluate`` (``help`` says what it does instead), ``--methods`` and
    ``--metrics-json``: the options of a command that can score methods."""
    options = (
        click.option("--evaluate", is_flag=True, help=help),
        evaluate_methods_option,
        metrics_json_option(),
    )

    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


spatial_key_option = click.option("--spatial-key", default="spatial", show_default=True)


def out_option(help: str, *, required: bool = False, short: bool = True, dest: str = "out"):
    """``-o/--out PATH`` (``short=False``: ``--out`` only), stored in ``dest``, and
    ``--overwrite`` (replace an existing output)."""
    names = ("-o", "--out") if short else ("--out",)
    out = click.option(
        *names, dest, type=click.Path(path_type=Path), default=None, required=required, help=help
    )

    def decorate(func):
        return out(overwrite_option(func))

    return decorate


def path_option(name: str, help: str):
    """An optional ``--name PATH`` (``--plot``, ``--coords``, ...)."""
    return click.option(name, type=click.Path(path_type=Path), default=None, help=help)


def coords_option(name: str = "--coords", of: str = "the input", dest: str | None = None):
    """``--coords PATH``: a table of coordinates joined by cell name into
    ``obsm[--spatial-key]`` (:func:`cellweave.io.read_coords`), for inputs that lack them
    (CSV, 10x); ``of`` names the input it belongs to, ``dest`` the keyword (default from
    ``name``)."""
    names = (name,) if dest is None else (name, dest)
    return click.option(
        *names,
        type=click.Path(path_type=Path),
        default=None,
        help=f"CSV/TSV of coordinates of {of}, joined by cell name into obsm (cell names in "
        "the first column, then x, y[, z]): for inputs without them (CSV, 10x).",
    )


library_id_option = click.option(
    "--library-id",
    default=None,
    help="With --plot: which library of uns['spatial'] to draw the tissue image of, when the "
    "input holds several (as sc.pl.spatial's library_id).",
)


def check_plot_layout(adata, *, spatial_key: str, library_id: str | None) -> None:
    """Before any work: the coordinates and the tissue image ``--plot`` will draw (several
    libraries without ``--library-id``, or an unknown one, is one line)."""
    from ..plotting.spatial import spot_layout

    spot_layout(adata, spatial_key=spatial_key, library_id=library_id)


def layer_option(help: str):
    """``--layer NAME`` (default: ``X``)."""
    return click.option("--layer", default=None, help=help)


def list_methods_option(help: str = "List the methods and exit."):
    """``--list-methods``: print the registry's table and exit."""
    return click.option("--list-methods", is_flag=True, help=help)


def params_option(example: str):
    """``--param KEY=VALUE`` (repeatable), parsed by :func:`parse_params` while the command
    line is parsed: the command receives ``params`` as a dict."""
    return click.option(
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE",
        callback=lambda ctx, param, value: parse_params(value),
        help=f"Option of the method, e.g. --param {example} (repeatable).",
    )


def method_options(example: str, list_help: str = "List the methods and exit."):
    """``--param KEY=VALUE`` (repeatable) and ``--list-methods``: the options of a command
    that runs a method of a registry."""

    def decorate(func):
        return params_option(example)(list_methods_option(list_help)(func))

    return decorate


def metrics_json_option(help: str = "With --evaluate: write the scores as JSON."):
    """``--metrics-json PATH``."""
    return click.option("--metrics-json", type=click.Path(path_type=Path), default=None, help=help)


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (an option's comma-separated names)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_params(items: tuple[str, ...]) -> dict[str, object]:
    """``("a=1", "b=0.5", "c=x", 'd={"atac": 0.25}')`` -> ``{"a": 1, "b": 0.5, "c": "x",
    "d": {"atac": 0.25}}`` (numbers and booleans parsed; JSON for lists and mappings)."""
    params: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        params[key.strip()] = _parse_value(value.strip())
    return params


def _parse_value(text: str) -> object:
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise click.BadParameter(
                f"{text!r} is not valid JSON ({err.msg}): quote keys, e.g. '{{\"atac\": 0.25}}'",
                param_hint="--param",
            ) from None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Checkpointing:
    """``--checkpoint-dir`` and ``--resume`` of a command that trains."""

    checkpoint_dir: Path | None = None
    resume: bool = False

    @property
    def kwargs(self) -> dict[str, object]:
        """The ``checkpoint_dir=`` / ``resume=`` keywords of ``tl.impute``, ``tl.map_cells``
        and ``tl.integrate``."""
        return {"checkpoint_dir": self.checkpoint_dir, "resume": self.resume}


def checkpoint_options(func):
    """``--checkpoint-dir DIR`` and ``--resume``: checkpoints of the trained models after
    every epoch, and resuming a killed run from them; the command receives them as one
    ``checkpoint`` (:class:`Checkpointing`), checked while the command line is parsed
    (``--resume`` needs ``--checkpoint-dir``; the folder must be writable)."""

    @functools.wraps(func)
    def command(*args, checkpoint_dir: Path | None, resume: bool, **kwargs):
        if resume and checkpoint_dir is None:
            raise click.UsageError(
                "--resume needs --checkpoint-dir DIR (the folder to resume from)"
            )
        if checkpoint_dir is not None:
            check_output(checkpoint_dir, "folder", label="--checkpoint-dir")
        return func(*args, checkpoint=Checkpointing(checkpoint_dir, resume), **kwargs)

    command = click.option(
        "--resume",
        is_flag=True,
        help="Continue a killed run from the checkpoints in --checkpoint-dir (same seed, "
        "same result as an uninterrupted run).",
    )(command)
    return click.option(
        "--checkpoint-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Write a checkpoint of the trained models after every epoch into this folder.",
    )(command)


def _check_hardware(ctx: click.Context, param: click.Parameter, value):
    """``--accelerator`` / ``--devices`` / ``--strategy`` / ``--precision`` checked alone while
    parsing (an unknown value: one line, exit 2); together with ``--device`` by
    :func:`hardware_kwargs`."""
    if value is not None:
        from ..device import parse_training

        parse_training("auto", **{param.name: value})
    return value


HARDWARE = ("accelerator", "devices", "strategy", "precision")


def hardware_options(func):
    """``--accelerator``, ``--devices``, ``--strategy``, ``--precision``: Lightning's, for
    training on several devices (e.g. ``--accelerator cpu --devices 2 --strategy ddp``). The
    command receives them checked with ``--device`` (:func:`hardware_kwargs`) as one keyword
    ``hardware`` (a dict of those given)."""

    @functools.wraps(func)
    def command(*args, **kwargs):
        given = {name: kwargs.pop(name) for name in HARDWARE}
        evaluate = bool(kwargs.get("evaluate", False))
        kwargs["hardware"] = hardware_kwargs(kwargs["device"], evaluate=evaluate, **given)
        return func(*args, **kwargs)

    for name, help in reversed(
        [
            ("--accelerator", "Lightning accelerator for --devices: auto, cpu, gpu or mps."),
            ("--devices", "Train on this many devices (data-parallel), or GPUs '0,1'."),
            ("--strategy", "Lightning strategy: auto, ddp, ddp_spawn, ... (with --devices)."),
            ("--precision", "Lightning precision: 32-true, 16-mixed, bf16-mixed, 64-true, ..."),
        ]
    ):
        command = click.option(name, default=None, callback=_check_hardware, help=help)(command)
    return command


def hardware_kwargs(device: str, *, evaluate: bool = False, **given) -> dict:
    """The ``--accelerator``/``--devices``/``--strategy``/``--precision`` given, checked with
    ``--device`` before any file is read (a contradiction: one line, exit 2); not with
    ``--evaluate`` (they train the output model)."""
    given = {k: v for k, v in given.items() if v is not None}
    if given and evaluate:
        raise click.UsageError(
            f"--{'/--'.join(given)} train the output model: leave them out with --evaluate"
        )
    quiet_unless_first_process()
    if given:
        from ..device import parse_training

        parse_training(device, **given)
    return given


def quiet_unless_first_process() -> None:
    """In the copies of the command that Lightning's ``ddp`` launcher starts (one per extra
    device), print nothing: the first process reports and writes the outputs."""
    from ..device import launched_rank

    if launched_rank() != 0:
        from .._progress import configure
        from .._progress import console as progress_console

        configure(-1)
        console.quiet = True
        progress_console.quiet = True


def backed_option(size: str, note: str = ""):
    """``--backed/--no-backed``: stream the input from disk (default: automatic above
    ``size`` of dense matrices, a command's :data:`cellweave.io.THRESHOLDS`; ``note`` ends
    the help)."""
    return click.option(
        "--backed/--no-backed",
        default=None,
        help="Stream the .h5ad/.h5mu input from disk in blocks of rows instead of reading it "
        f"into memory. Default: automatic, on when its matrices would take more than {size} "
        f"dense (one line on stderr says so).{note}",
    )


def backed_choice(path: Path, backed: bool | None, command: str) -> bool:
    """Whether to read ``path`` backed (``--backed`` as given, else automatic with
    ``command``'s :data:`cellweave.io.THRESHOLDS`: one line on stderr when it streams)."""
    on, why = io.use_backed(path, backed, threshold=command)
    if why:
        note(why)
    return on

"""Pieces every subcommand shares: output paths, summary tables, figures."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..errors import FileFormatError

console = Console()


def use_agg_backend() -> None:
    """Draw figures off-screen (the CLI only writes PNG files)."""
    import matplotlib

    matplotlib.use("Agg")


def check_output(out: Path, *, inputs: Iterable[Path] = (), overwrite: bool = False) -> Path:
    """Refuse an output path that is an input (inputs are never modified) or already exists."""
    out = Path(out)
    for path in inputs:
        if Path(path).exists() and out.exists() and out.resolve() == Path(path).resolve():
            raise FileFormatError(
                f"output {out} is the input file: cellweave never modifies its input; "
                "choose another --out path"
            )
    if out.exists() and not overwrite:
        raise FileFormatError(f"output {out} already exists; pass --overwrite or another --out")
    return out


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
        check_output(metrics_json, overwrite=overwrite)
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
    "--seed", "random_state", type=int, default=0, show_default=True, help="Random seed."
)


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


spatial_key_option = click.option("--spatial-key", default="spatial", show_default=True)


def out_option(help: str, *, required: bool = False, short: bool = True, dest: str = "out"):
    """``-o/--out PATH`` (``short=False``: ``--out`` only), stored in ``dest``."""
    names = ("-o", "--out") if short else ("--out",)
    return click.option(
        *names, dest, type=click.Path(path_type=Path), default=None, required=required, help=help
    )


def path_option(name: str, help: str):
    """An optional ``--name PATH`` (``--plot``, ``--coords``, ...)."""
    return click.option(name, type=click.Path(path_type=Path), default=None, help=help)


def layer_option(help: str):
    """``--layer NAME`` (default: ``X``)."""
    return click.option("--layer", default=None, help=help)


def list_methods_option(help: str = "List the methods and exit."):
    """``--list-methods``: print the registry's table and exit."""
    return click.option("--list-methods", is_flag=True, help=help)


def params_option(example: str):
    """``--param KEY=VALUE`` (repeatable), parsed by :func:`parse_params`."""
    return click.option(
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"Option of the method, e.g. --param {example} (repeatable).",
    )


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


def checkpoint_options(func):
    """``--checkpoint-dir DIR`` and ``--resume``: checkpoints of the trained models after
    every epoch, and resuming a killed run from them (keywords ``checkpoint_dir``,
    ``resume``)."""
    func = click.option(
        "--resume",
        is_flag=True,
        help="Continue a killed run from the checkpoints in --checkpoint-dir (same seed, "
        "same result as an uninterrupted run).",
    )(func)
    return click.option(
        "--checkpoint-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Write a checkpoint of the trained models after every epoch into this folder.",
    )(func)


def check_resume(checkpoint_dir: Path | None, resume: bool) -> None:
    """``--resume`` needs ``--checkpoint-dir`` (a usage error otherwise)."""
    if resume and checkpoint_dir is None:
        raise click.UsageError("--resume needs --checkpoint-dir DIR (the folder to resume from)")


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


def read_input(path: Path, backed: bool | None, command: str, **kwargs) -> tuple[object, bool]:
    """Read ``path`` (backed as :func:`cellweave.io.use_backed` decides with ``command``'s
    threshold: one line on stderr when the automatic choice streams); return the data and
    whether it is backed."""
    from .. import io

    on, note = io.use_backed(path, backed, threshold=command)
    if note:
        click.echo(note, err=True)
    if on:
        kwargs["backed"] = True
    return io.read(path, **kwargs), on

"""The click group; each subcommand lives in its own module."""

from __future__ import annotations

import click

from .. import __version__
from .._progress import configure
from .align import align
from .demo import demo
from .impute import impute
from .inspect import inspect
from .integrate import integrate
from .map import map_cmd
from .neighbors import neighbors
from .simulate import simulate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cellweave")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Only errors on stderr: no progress bars or lines (results still go to stdout).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More on stderr: -v debug lines (every phase, its time), -vv also Lightning's own.",
)
def cli(quiet: bool, verbose: int) -> None:
    """cellweave: weave single-cell and spatial multi-omics data together.

    Start with `cellweave demo` (simulated data, no input needed), then run a subcommand on
    your own .h5ad/.h5mu files. Errors are one line on stderr with exit code 2; Ctrl-C stops
    a run cleanly (exit 130, no partial output). Progress: bars on a terminal; off one
    (nohup, a scheduler, a pipe) a timestamped line per training epoch or evaluated method
    and at least one line every 20 s of a long phase.
    """
    configure(-1 if quiet else verbose)


for command in (demo, simulate, inspect, neighbors, impute, map_cmd, align, integrate):
    cli.add_command(command)

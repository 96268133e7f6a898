"""The ``cellweave`` command line: ``cellweave --help`` lists the subcommands."""

from __future__ import annotations

import os

import click

from ..errors import CellweaveError
from ._signals import Interrupted, interruptible
from .app import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2 (never a traceback).

    Returns the exit code (the console script passes it to ``sys.exit``). Set
    ``CELLWEAVE_DEBUG=1`` to see the traceback of an unexpected error. SIGINT (Ctrl-C) and
    SIGTERM stop the run cleanly: temporaries removed, no partial output, one line, exit 130
    (SIGINT) or 143 (SIGTERM).
    """
    try:
        with interruptible():
            code = cli.main(args=argv, prog_name="cellweave", standalone_mode=False)
    except Interrupted as exc:
        click.echo(f"cellweave: {exc}: stopped; no partial output left", err=True)
        code = exc.code
    except click.exceptions.Abort:
        click.echo("cellweave: aborted", err=True)
        code = 130
    except click.ClickException as exc:  # usage errors, bad option values: exit 2
        exc.show()
        code = exc.exit_code
    except CellweaveError as exc:
        click.echo(f"cellweave: error: {exc}", err=True)
        code = 2
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" {exc.filename}" if exc.filename else ""
        click.echo(f"cellweave: error:{where}: {reason}; check the path and permissions", err=True)
        code = 2
    except Exception as exc:  # pragma: no cover - last resort, still one line
        if os.environ.get("CELLWEAVE_DEBUG"):
            raise
        click.echo(
            f"cellweave: internal error: {type(exc).__name__}: {exc} "
            "(rerun with CELLWEAVE_DEBUG=1 for the traceback and report it)",
            err=True,
        )
        code = 1
    return int(code or 0)

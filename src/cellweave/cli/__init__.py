"""The ``cellweave`` command line: ``cellweave --help`` lists the subcommands."""

from __future__ import annotations

import os
import re

import click

from .._progress import configured
from ..errors import CellweaveError
from ._inputs import quiet_warnings
from ._signals import Interrupted, interruptible
from .app import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2 (never a traceback).

    Returns the exit code (the console script passes it to ``sys.exit``). Usage errors
    (an unknown option, a missing argument, a bad value) are one line too, not click's usage
    block; library warnings are silenced (those that explain a bad input are turned into the
    error line where the input is read). Set ``CELLWEAVE_DEBUG=1`` to see the traceback of an
    unexpected error. SIGINT (Ctrl-C) and SIGTERM stop the run cleanly: temporaries removed,
    no partial output, one line, exit 130 (SIGINT) or 143 (SIGTERM).
    """
    try:
        with interruptible(), quiet_warnings(), configured():
            code = cli.main(args=argv, prog_name="cellweave", standalone_mode=False)
    except Interrupted as exc:
        click.echo(f"cellweave: {exc}: stopped; no partial output left", err=True)
        code = exc.code
    except click.exceptions.Abort:
        click.echo("cellweave: aborted", err=True)
        code = 130
    except _NoArgsIsHelp as exc:  # `cellweave`, `cellweave simulate`: the help, as --help
        click.echo(exc.ctx.get_help())
        code = 0
    except click.ClickException as exc:  # usage errors, bad option values: exit 2
        _error(usage_line(exc))
        code = 2
    except CellweaveError as exc:
        _error(str(exc))
        code = 2
    except OSError as exc:
        where = exc.filename2 or exc.filename
        reason = exc.strerror or str(exc)
        _error(f"{where}: {reason}" if where else reason, "check the path and permissions")
        code = 2
    except Exception as exc:  # pragma: no cover - last resort, still one line
        if os.environ.get("CELLWEAVE_DEBUG"):
            raise
        click.echo(
            "cellweave: internal error: "
            + one_line(f"{type(exc).__name__}: {exc}")
            + " (rerun with CELLWEAVE_DEBUG=1 for the traceback and report it)",
            err=True,
        )
        code = 1
    return int(code or 0)


def _error(message: str, fix: str = "") -> None:
    text = one_line(message)
    click.echo(f"cellweave: error: {text}" + (f"; {fix}" if fix else ""), err=True)


def one_line(text: object) -> str:
    """``text`` as one line for stderr: whitespace collapsed, a leading ``error:`` dropped (the
    CLI adds its own), temporary names (``.tmp-<pid><random>-out.h5ad``) shown as the output
    they stand for."""
    line = " ".join(str(text).split())
    line = _TEMP_NAME.sub("", line)
    return _ERROR_PREFIX.sub("", line) or "unknown error"


def usage_line(exc: click.ClickException) -> str:
    """A click error as one line: what is wrong (a bad value names its option or argument)
    and where the help is, not click's usage block."""
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        kind = "argument" if isinstance(exc.param, click.Argument) else "option"
        hint = exc.param_hint
        if hint is None and exc.param is not None and ctx is not None:
            hint = exc.param.get_error_hint(ctx)
        if not isinstance(hint, str) and hint is not None:
            hint = " / ".join(map(str, hint))
        message = f"invalid value for {kind} {hint}: {exc.message}" if hint else exc.message
    message = one_line(message).rstrip(".")
    if isinstance(exc, click.UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


# click >= 8.2 raises this for a group called without a subcommand
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())
_TEMP_NAME = re.compile(r"\.tmp-[0-9a-f]{12}-")
_ERROR_PREFIX = re.compile(r"^(?:error\s*:+\s*)+", re.IGNORECASE)

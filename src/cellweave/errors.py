"""One exception hierarchy for cellweave.

Every problem with a user's input raises an :class:`InputError` (a ``ValueError``), whose
message is one line that names the problem and the fix. The CLI turns any
:class:`CellweaveError` into that line on stderr and exit code 2. A
:class:`CellweaveWarning` (a ``UserWarning``) is a one-line note about the user's data or
options that the run goes on with; the CLI prints it as one ``cellweave: warning:`` line
(other libraries' warnings stay silent there).
"""

from __future__ import annotations

__all__ = [
    "CellweaveError",
    "CellweaveWarning",
    "DuplicateNamesError",
    "EmptyDataError",
    "FileFormatError",
    "InputError",
    "InvalidOptionError",
    "MissingKeyError",
    "NoSharedFeaturesError",
    "NonFiniteError",
    "NotCountsError",
]


class CellweaveError(Exception):
    """Base class of every error cellweave raises on purpose."""


class InputError(CellweaveError, ValueError):
    """The input cannot be used as given; the message says why and how to fix it."""

    def __init__(self, message: str) -> None:
        # Keep messages to one line: the CLI prints them as they are.
        super().__init__(" ".join(str(message).split()))


class InvalidOptionError(InputError):
    """A method name or option is unknown, of the wrong type or out of its range."""


class FileFormatError(InputError):
    """A file is missing, unreadable, or of a format cellweave does not read."""


class MissingKeyError(InputError):
    """A key (``obsm['spatial']``, an ``obs`` column, a layer, a modality) is absent."""


class NotCountsError(InputError):
    """Raw counts were required but the matrix holds non-integer or negative values."""


class NonFiniteError(InputError):
    """The matrix holds NaN or infinite values."""


class EmptyDataError(InputError):
    """No cells/genes, or cells/genes whose values are all zero where that is not allowed."""


class DuplicateNamesError(InputError):
    """Cell or feature names are not unique."""


class NoSharedFeaturesError(InputError):
    """Two data sets share no (or too few) features to be compared."""


class CellweaveWarning(UserWarning):
    """A one-line note about the input the run goes on with (names the problem and the fix);
    the CLI prints it on stderr."""

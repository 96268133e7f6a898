"""One registry for every pluggable thing: imputation methods, mapping methods, align solvers,
mosaic modality kinds.

A :class:`Method` declares its name, kind, a one-line description, typed :class:`Option`\\ s
with ranges, and its runner. :meth:`Method.check_options` refuses an unknown or ill-typed
option with one :class:`~cellweave.errors.InvalidOptionError` naming the valid options, before
any work starts; ``--list-methods`` and the docs tables come from :meth:`Registry.table`.

Example
-------
>>> REGISTRY = Registry("imputation method")
>>> @REGISTRY.register("knn", kind="baseline", description="mean of the k nearest spots",
...                    options=[Int("k", 10, low=1)])
... def knn(X, *, k=10): ...
>>> REGISTRY.get("knn").check_options({"k": 5})
{'k': 5}
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidOptionError

__all__ = [
    "Bool",
    "Choice",
    "Float",
    "Int",
    "Method",
    "Option",
    "Registry",
    "Text",
]

_NUMBER_TYPES: dict[type, tuple[type, ...]] = {int: (int,), float: (int, float)}


@dataclass(frozen=True)
class Option:
    """One option of a method: its type, default, allowed range or choices.

    Attributes
    ----------
    name
        Keyword the runner takes.
    type
        ``int``, ``float``, ``bool``, ``str`` or ``object`` (anything; checked by the runner).
    default
        Value used when the option is not given (for help texts and ``uns`` params).
    low, high
        Bounds of a number (``None``: unbounded), inclusive unless ``low_open`` /
        ``high_open``.
    choices
        Allowed values (strings, or any hashable values).
    allow_none
        Whether ``None`` is a valid value.
    doc
        One line for help texts.
    low_open, high_open
        Exclude the bound itself (``low=0, low_open=True``: a number > 0).
    finite
        Refuse infinite numbers (NaN is always refused).
    """

    name: str
    type: type
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    allow_none: bool = False
    doc: str = ""
    low_open: bool = False
    high_open: bool = False
    finite: bool = True

    def check(self, value: Any, *, owner: str) -> Any:
        """``value`` converted to this option's type, or ``InvalidOptionError``."""
        if value is None:
            if self.allow_none or self.default is None:
                return None
            raise InvalidOptionError(
                f"{owner} option {self.name}=None is not allowed; {self.expects()}"
            )
        value = self._typed(value, owner=owner)
        self._check_range(value, owner=owner)
        return value

    def expects(self) -> str:
        """What a valid value looks like, as words ("an integer >= 1")."""
        if self.choices is not None:
            words = "one of " + ", ".join(map(repr, self.choices))
        elif self.type is bool:
            words = "true or false"
        else:
            words = {int: "an integer", float: "a number", str: "a string"}.get(
                self.type, "a value"
            )
            words += _range_words(self.low, self.high, self.low_open, self.high_open)
            if self.type is float and self.finite and self.low is None and self.high is None:
                words = "a finite number"
        return "pass " + words + (" or None" if self.allow_none else "")

    def _typed(self, value: Any, *, owner: str) -> Any:
        if self.type is object:
            return value
        if self.type is bool:
            if isinstance(value, bool) or type(value).__name__ == "bool_":
                return bool(value)
            raise self._error(value, owner)
        if self.type in _NUMBER_TYPES:
            return self._number(value, owner)
        if self.type is str and isinstance(value, str):
            return value
        if self.choices is not None and value in self.choices:
            return value
        raise self._error(value, owner)

    def _number(self, value: Any, owner: str) -> int | float:
        if isinstance(value, bool) or not _is_real(value) or math.isnan(float(value)):
            raise self._error(value, owner)
        if math.isinf(float(value)) and (self.finite or self.type is int):
            raise self._error(value, owner)
        if self.type is int:
            if float(value) != int(value):
                raise self._error(value, owner)
            return int(value)
        return float(value)

    def _check_range(self, value: Any, *, owner: str) -> None:
        if self.choices is not None and value not in self.choices:
            raise self._error(value, owner)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not self._within(value):
                raise self._error(value, owner)

    def _within(self, value: float) -> bool:
        """Whether ``value`` lies within the bounds (open or closed)."""
        low, high = self.low, self.high
        if low is not None and (value < low or (self.low_open and value == low)):
            return False
        return high is None or not (value > high or (self.high_open and value == high))

    def _error(self, value: Any, owner: str) -> InvalidOptionError:
        return InvalidOptionError(
            f"{owner} option {self.name}={value!r} is invalid; {self.expects()}"
        )


def _is_real(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, str)


def _range_words(
    low: float | None, high: float | None, low_open: bool = False, high_open: bool = False
) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {_num(low)}"
    if high is not None:
        return f" {'<' if high_open else '<='} {_num(high)}"
    return ""


def _num(value: float) -> str:
    """A bound in words: whole numbers in full (``4294967295``), others as ``:g``."""
    whole = float(value).is_integer() and abs(value) < 1e15
    return str(int(value)) if whole else f"{value:g}"


def Int(name: str, default: Any = None, *, low=None, high=None, allow_none=False, doc="") -> Option:
    """An integer option (``low``/``high`` inclusive)."""
    return Option(name, int, default, low, high, None, allow_none, doc)


def Float(
    name: str,
    default: Any = None,
    *,
    low=None,
    high=None,
    allow_none=False,
    doc="",
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> Option:
    """A real-valued option: ``low``/``high`` inclusive unless ``low_open``/``high_open``
    (``low=0, low_open=True``: > 0); NaN is always refused, infinity unless ``finite=False``."""
    return Option(
        name, float, default, low, high, None, allow_none, doc, low_open, high_open, finite
    )


def Bool(name: str, default: Any = None, *, allow_none=False, doc="") -> Option:
    """A true/false option."""
    return Option(name, bool, default, allow_none=allow_none, doc=doc)


def Choice(name: str, default: Any, choices: Iterable[Any], *, allow_none=False, doc="") -> Option:
    """An option taking one of ``choices``."""
    return Option(name, object, default, choices=tuple(choices), allow_none=allow_none, doc=doc)


def Text(name: str, default: Any = None, *, allow_none=False, doc="") -> Option:
    """A free string option."""
    return Option(name, str, default, allow_none=allow_none, doc=doc)


@dataclass(frozen=True)
class Method:
    """A registered method (or modality kind): name, kind, options and runner.

    Attributes
    ----------
    name
        Name users pass (``method="knn"``).
    kind
        Family, e.g. ``"baseline"``, ``"model"``, ``"reference"``, ``"solver"``, ``"modality"``.
    runner
        The callable (or object) that does the work.
    description
        One line for help texts and ``--list-methods``.
    options
        The options the runner accepts, by name.
    meta
        Anything else the capability needs to know (e.g. ``{"spatial": True}``).
    """

    name: str
    kind: str
    runner: Any
    description: str
    options: Mapping[str, Option] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    what: str = "method"

    def check_options(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` checked and converted; an unknown or ill-typed one is an error."""
        unknown = sorted(set(params) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            where = f"{self.what} {self.name!r}"
            raise InvalidOptionError(
                f"unknown option {unknown[0]!r} for {where}; valid options: {valid}"
            )
        owner = f"{self.what} {self.name!r}"
        return {key: self.options[key].check(value, owner=owner) for key, value in params.items()}

    def defaults(self) -> dict[str, Any]:
        """Every option's default value."""
        return {name: option.default for name, option in self.options.items()}


class Registry:
    """Methods of one capability by name (``Registry("imputation method")``).

    Parameters
    ----------
    what
        What the entries are, for messages ("imputation method", "modality kind").
    entry
        The :class:`Method` subclass the entries are made of (a capability may add
        read-only views of its ``meta``, e.g. ``spatial``).
    """

    def __init__(self, what: str, *, entry: type[Method] = Method) -> None:
        self.what = what
        self.entry = entry
        self._methods: dict[str, Method] = {}

    def add(
        self,
        name: str,
        runner: Any,
        *,
        kind: str,
        description: str,
        options: Iterable[Option] = (),
        replace: bool = False,
        **meta: Any,
    ) -> Method:
        """Register ``runner`` under ``name`` and return its :class:`Method`.

        A name registered twice is an error unless ``replace`` (e.g. plug-ins registered
        again at run time).
        """
        if name in self._methods and not replace:
            raise RuntimeError(f"{self.what} {name!r} registered twice")
        by_name = {option.name: option for option in options}
        method = self.entry(name, kind, runner, description, by_name, meta, self.what)
        self._methods[name] = method
        return method

    def register(self, name: str, **spec: Any) -> Callable[[Any], Any]:
        """Decorator form of :meth:`add`; returns the runner unchanged."""

        def decorate(runner: Any) -> Any:
            self.add(name, runner, **spec)
            return runner

        return decorate

    def get(self, name: str) -> Method:
        """The entry called ``name``, or ``InvalidOptionError`` listing the choices."""
        if name not in self._methods:
            raise InvalidOptionError(
                f"unknown {self.what} {name!r}; choose one of {', '.join(self)}"
            )
        return self._methods[name]

    def names(self, kind: str | None = None) -> list[str]:
        """Registered names in order of registration (of one ``kind`` if given)."""
        return [n for n, m in self._methods.items() if kind is None or m.kind == kind]

    def table(self) -> list[tuple[str, str, str, str]]:
        """Rows ``(name, kind, description, options)`` for ``--list-methods`` and docs."""
        return [
            (m.name, m.kind, m.description, ", ".join(_option_words(o) for o in m.options.values()))
            for m in self._methods.values()
        ]

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def __iter__(self) -> Iterator[str]:
        return iter(self._methods)

    def __len__(self) -> int:
        return len(self._methods)

    def __getitem__(self, name: str) -> Method:
        return self.get(name)


def _option_words(option: Option) -> str:
    return f"{option.name}={option.default!r}"


def undeclared_keywords(
    runner: Callable[..., Any], method: Method, fixed: Iterable[str]
) -> set[str]:
    """Keyword parameters of ``runner`` that ``method`` does not declare (a registration check)."""
    parameters = inspect.signature(runner).parameters
    keywords = {n for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    return keywords - set(method.options) - set(fixed)

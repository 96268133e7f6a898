"""The shared method registry and its option checks."""

import math

import numpy as np
import pytest

from cellweave._params import jsonable, params_entry
from cellweave.errors import InputError, InvalidOptionError
from cellweave.registry import Bool, Choice, Float, Int, Registry, Text, undeclared_keywords


@pytest.fixture
def registry():
    reg = Registry("test method")

    @reg.register(
        "knn",
        kind="baseline",
        description="mean of neighbours",
        options=[
            Int("k", 10, low=1),
            Float("weight", 0.5, low=0, high=1),
            Choice("mode", "mean", ["mean", "median"]),
            Bool("center", False),
            Text("label", "x"),
            Int("limit", None, low=1, allow_none=True),
        ],
        spatial=True,
    )
    def knn(X, *, k=10, weight=0.5, mode="mean", center=False, label="x", limit=None):
        return k

    return reg


def test_valid_options_are_converted(registry):
    out = registry.get("knn").check_options(
        {"k": 5.0, "weight": 1, "mode": "median", "limit": None}
    )
    assert out == {"k": 5, "weight": 1.0, "mode": "median", "limit": None}
    assert isinstance(out["k"], int) and isinstance(out["weight"], float)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"bogus": 1}, "unknown option 'bogus'"),
        ({"k": "abc"}, "k='abc'"),
        ({"k": 2.5}, "an integer"),
        ({"k": 0}, ">= 1"),
        ({"weight": -1}, "in [0, 1]"),
        ({"weight": math.nan}, "weight=nan"),
        ({"mode": "max"}, "one of 'mean', 'median'"),
        ({"center": 1}, "true or false"),
        ({"k": None}, "k=None"),
        ({"k": True}, "an integer"),
    ],
)
def test_bad_options_are_one_line_errors(registry, params, words):
    with pytest.raises(InvalidOptionError) as err:
        registry.get("knn").check_options(params)
    message = str(err.value)
    assert words in message and "\n" not in message
    assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)


def test_unknown_option_lists_the_valid_ones(registry):
    with pytest.raises(
        InvalidOptionError, match="valid options: center, k, label, limit, mode, weight"
    ):
        registry.get("knn").check_options({"bogus": 1})


def test_unknown_method_lists_choices(registry):
    with pytest.raises(InvalidOptionError, match="unknown test method 'nope'; choose one of knn"):
        registry.get("nope")


def test_registry_listing_and_meta(registry):
    assert list(registry) == ["knn"] and "knn" in registry and len(registry) == 1
    assert registry.names(kind="model") == [] and registry.names("baseline") == ["knn"]
    method = registry["knn"]
    assert method.meta["spatial"] is True and method.defaults()["k"] == 10
    name, kind, description, options = registry.table()[0]
    assert (name, kind, description) == ("knn", "baseline", "mean of neighbours")
    assert "k=10" in options


def test_double_registration_is_refused(registry):
    with pytest.raises(RuntimeError, match="registered twice"):
        registry.add("knn", print, kind="baseline", description="")


def test_undeclared_keywords_finds_drift(registry):
    def runner(X, *, k=1, extra=2, random_state=0):
        return X

    assert undeclared_keywords(runner, registry["knn"], fixed=["random_state"]) == {"extra"}


def test_jsonable_encodes_numpy_nan_and_objects():
    value = {"a": np.int64(3), "b": np.float32(np.nan), "c": (1, np.inf), "d": None, 4: object}
    out = jsonable(value)
    assert out["a"] == 3 and type(out["a"]) is int
    assert out["b"] is None and out["c"] == [1, None] and out["d"] is None
    assert out["4"].startswith("<class")
    assert jsonable(np.arange(2)) == [0, 1]
    assert params_entry({"k": np.int32(2)}, method="knn") == {"params": {"k": 2}, "method": "knn"}

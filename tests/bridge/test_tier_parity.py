"""Both isolation tiers convert values by the same rules: a differential test.

The same Python value is passed to the same export (or returned by the same host
function) of the "every type" component loaded in-process and in a worker process,
side by side; the two must give the same value, or the same exception class with
the same message. ``tests/bridge/test_values.py`` checks each tier against expected
values; this file checks that the tiers cannot drift apart, message for message,
including on the edge cases no expected-value table spells out.
"""

from __future__ import annotations

import enum
import math
from array import array
from collections import ChainMap, OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from types import MappingProxyType, SimpleNamespace
from typing import Any

import attrs
import pytest

import wat as w
from support.bridge import (
    GUEST_COUNTER,
    HOST,
    NEVER_QUARANTINE,
    TYPES,
    Rec,
    assert_same,
    every_type_plugin,
    hooks,
    load,
    seen,
)
from support.values import ERRORS, GUEST_BAD_VALUES, ROUND_TRIPS
from wasmplug import Err, Ok, Plugin, PluginHost, Some, Variant


class Bigint(int):
    """An int subclass (as numpy's and IntEnum's ints are)."""


class Text(str):
    """A str subclass."""


class Level(enum.Enum):
    HIGH = "blue-ish"
    NUMBER = 3


class Raises:
    """A record-like object whose attribute ``y`` raises something other than AttributeError."""

    x = 1

    @property
    def y(self) -> int:
        raise LookupError("no y today")


NAN, INF = math.nan, math.inf

# Values no expected-value table spells out: each tier must treat them alike.
EDGES: list[tuple[str, Any]] = [
    ("bool", 0),
    ("bool", 1.0),
    ("bool", "true"),
    ("s8", Bigint(5)),
    ("s8", Bigint(500)),
    ("u64", 2**200),
    ("s64", -(2**200)),
    ("u32", NAN),
    ("u32", Fraction(1, 2)),
    ("u32", None),
    ("u32", Level.NUMBER),
    ("f32", 2**200),
    ("f32", 2**1100),
    ("f32", -(2**1100)),
    ("f32", 1e300),
    ("f32", -1e-50),
    ("f32", Fraction(1, 3)),
    ("f32", Bigint(7)),
    ("f64", 2**1100),
    ("f64", 5e-324),
    ("f64", None),
    ("char", Text("x")),
    ("char", "\udc80"),
    ("char", b"a"),
    ("char", None),
    ("string", Text("sub")),
    ("string", "\udc80tail"),
    ("string", "\x00" * 3),
    ("string", "\U0010ffff"),
    ("string", None),
    ("string", 5),
    ("bytes", [True, 1]),
    ("bytes", [1.0]),
    ("bytes", [Bigint(3)]),
    ("bytes", [None]),
    ("bytes", memoryview(b"abcdef")[::2]),
    ("bytes", memoryview(array("H", [1, 2]))),
    ("bytes", array("b", [1])),
    ("bytes", (x for x in [1])),
    ("bytes", {1, 2}),
    ("bytes", None),
    ("strings", [Text("a")]),
    ("strings", {"a"}),
    ("strings", (x for x in ["a"])),
    ("strings", ["a", "\udc80"]),
    ("strings", None),
    ("chunks", [b"a", "b"]),
    ("chunks", [b"a", [300]]),
    ("u32s", [True]),
    ("u32s", [Bigint(1), 2]),
    ("u32s", [2**32]),
    ("u32s", [1.5]),
    ("u32s", range(3)),
    ("u32s", array("I", [1, 2])),
    ("u32s", array("L", [1, 2])),
    ("s8s", [-129]),
    ("u16s", [None]),
    ("u64s", [-1]),
    ("f32s", [1e300, -1e300]),
    ("f32s", [2**1100]),
    ("f32s", [NAN, True]),
    ("f32s", array("d", [1.0])),
    ("f64s", [2**1100]),
    ("f64s", [Bigint(2), 0.5]),
    ("f64s", [Fraction(1, 2)]),
    ("bools", [1]),
    ("bools", [True, None]),
    ("bools", array("b", [1])),
    ("chars", ["a", ""]),
    ("chars", ["\ud800"]),
    ("chars", "ab"),
    ("scalars", {"b": 1, "c": "x", "f": 0.0, "i": 0, "u": 0, "d": 0.0}),
    ("scalars", {"b": True, "c": "x", "f": 2**1100, "i": 0, "u": 0, "d": 0.0}),
    ("scalars", {"b": True, "c": "x", "f": 0.0, "i": 0, "u": -1, "d": 0.0}),
    ("scalars", {"b": True, "c": "x", "f": 0.0, "i": 0, "u": 0}),
    ("point", {"x": 1, "y": 2, "z": 3}),
    ("point", {"x": True, "y": 2}),
    ("point", {"x": 2**31, "y": 2**31}),
    ("point", ChainMap({"x": 1, "y": 2})),  # a Mapping that is no dict
    ("point", ChainMap({"x": 1})),
    ("point", MappingProxyType({"x": 1, "y": 2})),
    ("point", OrderedDict(y=2, x=1)),
    ("point", Raises()),
    ("point", SimpleNamespace(x=1, y=None)),
    ("point", None),
    ("point", 5),
    ("point", [1, 2]),
    ("point", "xy"),
    ("person", {"first-name": "a", "first_name": 5, "age": 1, "home": None}),
    ("person", {"first_name": "a", "age": 1, "home": {"x": 1}}),
    ("person", {"first-name": "a", "age": 1}),
    ("person", SimpleNamespace(first_name="a", age=1, home=SimpleNamespace(x=1))),
    ("points", [{"x": 1, "y": 2}, None]),
    ("points", ({"x": 1, "y": 2},)),
    ("tuple", (1, "a", 1.0, 2)),
    ("tuple", (256, "a", 1.0)),
    ("tuple", (1, "a", "b")),
    ("tuple", (1, b"a", 1.0)),
    ("tuple", {1: 1, 2: 2, 3: 3}),
    ("tuple", "abc"),
    ("tuple", None),
    ("shape", Variant("num", True)),
    ("shape", Variant("num", 2**1100)),
    ("shape", Variant("big", -1)),
    ("shape", Variant("pt", {"x": 1})),
    ("shape", Variant("pt")),
    ("shape", Variant("text", None)),
    ("shape", Variant("empty", 0)),
    ("shape", Variant(1)),  # type: ignore[arg-type]
    ("shape", Variant(["num"], 1)),  # type: ignore[arg-type]
    ("shape", Variant("NUM", 1.0)),
    ("shape", ("num", 1.0)),
    ("shape", None),
    ("color", Level.HIGH),
    ("color", Level.NUMBER),
    ("color", Text("red")),
    ("color", "Red"),
    ("color", ["red"]),
    ("color", None),
    ("perms", ("read", "write")),
    ("perms", {Level.HIGH}),
    ("perms", [["read"]]),
    ("perms", [1]),
    ("perms", {"read": True}),
    ("perms", None),
    ("flags32", {f"f{i}" for i in range(33)}),
    ("opt-u32", Some(None)),
    ("opt-u32", Some(2**32)),
    ("opt-u32", Some(Some(1))),
    ("opt-u32", True),
    ("opt-str", Some("x")),
    ("opt-point", {"x": 1}),
    ("opt-opt", Some(Some(1))),
    ("opt-opt", Some(Some(None))),
    ("opt-opt", Some(True)),
    ("res", Ok(2**32)),
    ("res", Ok()),
    ("res", Err()),
    ("res", Err(b"x")),
    ("res", Ok),
    ("res", None),
    ("res-no-ok", Ok(1)),
    ("res-no-ok", Err(None)),
    ("res-list", [Ok(1), Err(2)]),
    ("res-same", [Ok(1)]),
    ("res-unit", [Err(0)]),
    ("res-ok-only", [Err("x")]),
]

VALUES: list[Any] = [
    *[pytest.param(p.values[0], p.values[1], id=p.id) for p in ROUND_TRIPS],
    *[pytest.param(p.values[0], p.values[1], id=p.id) for p in ERRORS],
    *[pytest.param(key, value, id=f"{key}-edge{i}") for i, (key, value) in enumerate(EDGES)],
]


def outcome(plugin: Plugin, name: str, *args: Any) -> tuple[str, Any]:
    """What calling ``name`` gives: ``("value", v)`` or ``("raised", (class, message))``."""
    try:
        return "value", plugin.call(name, *args)
    except Exception as e:
        return "raised", (type(e), str(e).replace(f"{plugin.name}: ", "<plugin>: "))


def assert_alike(inprocess: tuple[str, Any], process: tuple[str, Any]) -> None:
    assert inprocess[0] == process[0], (inprocess, process)
    if inprocess[0] == "raised":
        assert process[1] == inprocess[1]
    else:
        assert_same(process[1], _expected(inprocess[1]))


def _expected(value: Any) -> Any:
    """An in-process value as ``assert_same`` expects it (records by their fields)."""
    if attrs.has(type(value)):
        return Rec(**{a.name: _expected(getattr(value, a.name)) for a in attrs.fields(type(value))})
    if isinstance(value, list):
        return [_expected(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_expected(v) for v in value)
    if isinstance(value, Variant):
        return Variant(value.case, _expected(value.value))
    if isinstance(value, Ok | Err | Some):
        return type(value)(_expected(value.value))
    return value


@pytest.fixture(scope="module")
def tiers() -> Iterator[tuple[Plugin, Plugin]]:
    """The every-type component in-process and in a worker process, side by side."""
    with (
        every_type_plugin("inprocess", NEVER_QUARANTINE) as inprocess,
        every_type_plugin("process", NEVER_QUARANTINE) as process,
    ):
        yield inprocess, process


@pytest.fixture
def both(tiers: tuple[Plugin, Plugin]) -> Iterator[tuple[Plugin, Plugin]]:
    seen.clear()
    hooks.clear()
    yield tiers
    hooks.clear()


@pytest.mark.parametrize(("key", "value"), VALUES)
def test_an_argument_converts_alike_in_both_tiers(
    both: tuple[Plugin, Plugin], key: str, value: Any
) -> None:
    inprocess, process = both
    assert_alike(outcome(inprocess, f"echo-{key}", value), outcome(process, f"echo-{key}", value))


# A valid argument of each type, for the host direction.
_VALID: dict[str, Any] = {"res": Ok(1), "res-no-ok": Ok()}
for _p in ROUND_TRIPS:
    _VALID.setdefault(_p.values[0], _p.values[1])
assert set(_VALID) == set(TYPES), set(TYPES) - set(_VALID)


@pytest.mark.parametrize(("key", "value"), VALUES)
def test_a_host_functions_result_converts_alike_in_both_tiers(
    both: tuple[Plugin, Plugin], key: str, value: Any
) -> None:
    """What a host function returns is lowered into the guest (in-process) or encoded
    for the worker (process tier) by the same rules, with the same errors; and the
    host function receives the same Python value in both tiers."""
    inprocess, process = both
    hooks[key] = lambda _a: value
    results = []
    for plugin in (inprocess, process):
        seen.clear()
        results.append(outcome(plugin, f"call-h-{key}", _VALID[key]))
        [(_, received)] = seen
        results.append(("value", received))
    assert_alike(results[0], results[2])
    assert_alike(results[1], results[3])  # the arguments the host function saw


# -- resource handles ------------------------------------------------------------------------

CTOR = "demo:x/api@0.1.0#[constructor]counter"
GET = "demo:x/api@0.1.0#[method]counter.get"
TAKE = "demo:x/api@0.1.0#[static]counter.take"


@pytest.fixture(scope="module")
def counter_tiers() -> Iterator[tuple[Plugin, Plugin]]:
    with (
        PluginHost(cache_dir=False) as a,
        PluginHost(cache_dir=False, isolation="process", spare_workers=0) as b,
    ):
        a.provide(HOST, {"poke": lambda: None})
        b.provide(HOST, {"poke": lambda: None})
        yield load(a, GUEST_COUNTER), load(b, GUEST_COUNTER)


HANDLE_MISUSES = ["not-a-resource", "none", "moved", "closed", "other-plugin", "discarded"]


@pytest.mark.parametrize("misuse", HANDLE_MISUSES)
def test_a_misused_resource_handle_fails_alike_in_both_tiers(
    counter_tiers: tuple[Plugin, Plugin], misuse: str
) -> None:
    results = []
    for plugin in counter_tiers:
        other = counter_tiers[1] if plugin is counter_tiers[0] else counter_tiers[0]
        handle: Any
        if misuse == "not-a-resource":
            handle = 5
        elif misuse == "none":
            handle = None
        elif misuse == "moved":
            handle = plugin.call(CTOR, 1)
            assert plugin.call(TAKE, handle, 1) == 2
        elif misuse == "closed":
            handle = plugin.call(CTOR, 1)
            handle.close()
        elif misuse == "other-plugin":
            handle = other.call(CTOR, 1)
        else:
            handle = plugin.call(CTOR, 1)
            plugin.reset()
        results.append((outcome(plugin, GET, handle), outcome(plugin, TAKE, handle, 0)))
    assert results[0] == results[1]


def test_an_illegal_value_from_the_guest_fails_alike_in_both_tiers() -> None:
    """What the guest cannot legally return (lifting traps) is the same fault, with the
    same message, whichever process runs the guest."""
    text = w.component(GUEST_BAD_VALUES)
    with (
        PluginHost(cache_dir=False) as a,
        PluginHost(cache_dir=False, isolation="process", spare_workers=0) as b,
    ):
        plugins = [load(h, text, restart_policy=NEVER_QUARANTINE) for h in (a, b)]
        for func in GUEST_BAD_VALUES:
            inprocess, process = (outcome(p, func.name) for p in plugins)
            assert inprocess[0] == "raised", func.name
            assert_alike(inprocess, process)

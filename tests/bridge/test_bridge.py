"""The typed bridge, for every WIT value type, in both directions.

Export direction: ``echo-<key>(a: T) -> T`` exports whose core code returns
its flattened argument (see ``wat.py``), so a value goes Python -> lower ->
guest -> lift -> Python. Host direction: ``call-h-<key>(a: T) -> T`` exports
pass their argument to the imported host function ``h-<key>`` (canon lower),
so the Python host function receives a lifted value and its return value is
lowered back into the guest.

Resources: a guest-defined ``counter`` (exported interface, implemented with
``canon resource.new/rep/drop``) and a host-defined ``counter`` (imported,
implemented by a Python class).
"""

from __future__ import annotations

import enum
import gc
import math
import struct
import weakref
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import attrs
import pytest

import wat as w
from wasmplug import (
    Err,
    ErrorResult,
    HostFunctionError,
    LinkError,
    Manifest,
    Ok,
    Plugin,
    PluginClosedError,
    PluginHost,
    PluginTrapped,
    Resource,
    Some,
    StaleResourceError,
    Variant,
    WitTypeError,
    WitValueError,
)

HOST = "demo:x/host@0.1.0"
API = "demo:x/api@0.1.0#"
MANIFEST = Manifest(name="t", host_interfaces=(HOST,))

U8, S32, U32, U64 = w.P("u8"), w.P("s32"), w.P("u32"), w.P("u64")
F32, F64, STRING = w.P("f32"), w.P("f64"), w.P("string")
POINT = w.Record("point", (("x", S32), ("y", S32)))
PERSON = w.Record("person", (("first-name", STRING), ("age", U8), ("home", w.Option(POINT))))
SHAPE = w.Variant(
    "shape",
    (("empty", None), ("num", F32), ("big", U64), ("text", STRING), ("pt", POINT)),
)
COLOR = w.Enum("color", ("red", "green", "blue-ish"))
PERMS = w.Flags("perms", ("read", "write", "exec"))
FLAGS32 = w.Flags("flags32", tuple(f"f{i}" for i in range(32)))
RES = w.Result(U32, STRING)

INT_RANGES = {
    "s8": (-(2**7), 2**7 - 1),
    "u8": (0, 2**8 - 1),
    "s16": (-(2**15), 2**15 - 1),
    "u16": (0, 2**16 - 1),
    "s32": (-(2**31), 2**31 - 1),
    "u32": (0, 2**32 - 1),
    "s64": (-(2**63), 2**63 - 1),
    "u64": (0, 2**64 - 1),
}

TYPES: dict[str, w.Ty] = {
    **{name: w.P(name) for name in ["bool", *INT_RANGES, "f32", "f64", "char", "string"]},
    "bytes": w.List(U8),
    "strings": w.List(STRING),
    "chunks": w.List(w.List(U8)),
    "u32s": w.List(U32),
    "point": POINT,
    "points": w.List(POINT),
    "person": PERSON,
    "tuple": w.Tuple((U8, STRING, F64)),
    "shape": SHAPE,
    "color": COLOR,
    "perms": PERMS,
    "flags32": FLAGS32,
    "opt-u32": w.Option(U32),
    "opt-str": w.Option(STRING),
    "opt-point": w.Option(POINT),
    "opt-opt": w.Option(w.Option(U32)),
    "res": RES,
    "res-no-ok": w.Result(None, STRING),
    "res-list": w.List(RES),
    "res-same": w.List(w.Result(STRING, STRING)),
    "res-unit": w.List(w.Result(None, None)),
    "res-ok-only": w.List(w.Result(U32, None)),
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class Rec:
    """An expected record value: any attrs record with exactly these attributes."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def __repr__(self) -> str:
        return f"Rec({self.fields})"


def assert_same(out: Any, expected: Any) -> None:
    """Deep equality that also checks Python types (bool is not int, bytes is not list)."""
    if isinstance(expected, Rec):
        assert attrs.has(type(out)), f"{out!r} is not a record object"
        assert [a.name for a in attrs.fields(type(out))] == list(expected.fields)
        for name, value in expected.fields.items():
            assert_same(getattr(out, name), value)
        return
    assert type(out) is type(expected), f"{out!r} is a {type(out).__name__}, not {expected!r}"
    if isinstance(expected, list | tuple):
        assert len(out) == len(expected), (out, expected)
        for a, b in zip(out, expected, strict=True):
            assert_same(a, b)
    elif isinstance(expected, Variant):
        assert out.case == expected.case
        assert_same(out.value, expected.value)
    elif isinstance(expected, Ok | Err | Some):
        assert_same(out.value, expected.value)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(out)
    elif isinstance(expected, float):
        assert out == expected
        assert math.copysign(1, out) == math.copysign(1, expected)  # -0.0 stays -0.0
    else:
        assert out == expected


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def load(host: PluginHost, text: str, *, manifest: Manifest = MANIFEST) -> Plugin:
    return host.load(text.encode(), allow_unsigned=True, manifest=manifest)


def echo_funcs(keys: list[str]) -> list[w.Func]:
    return [w.Func(f"echo-{k}", (("a", TYPES[k]),), TYPES[k]) for k in keys]


def host_funcs(keys: list[str]) -> dict[str, list[w.Func]]:
    return {HOST: [w.Func(f"h-{k}", (("a", TYPES[k]),), TYPES[k]) for k in keys]}


# ---------------------------------------------------------------------------
# One component with every type, in both directions, shared by the module
# ---------------------------------------------------------------------------

seen: list[tuple[str, Any]] = []
"""``(key, value)`` for every call of a host function ``h-<key>``."""
hooks: dict[str, Callable[[Any], Any]] = {}
"""What host function ``h-<key>`` returns for its argument (default: the argument)."""


def _host_impl(key: str) -> Callable[[Any], Any]:
    def impl(a: Any) -> Any:
        seen.append((key, a))
        hook = hooks.get(key)
        return a if hook is None else hook(a)

    return impl


@pytest.fixture(scope="module")
def bridge() -> Iterator[Plugin]:
    text = w.component(echo_funcs(list(TYPES)), host_funcs(list(TYPES)))
    with PluginHost(cache_dir=False) as host:
        host.provide(HOST, {f"h-{k}": _host_impl(k) for k in TYPES})
        yield load(host, text)


@pytest.fixture
def plugin(bridge: Plugin) -> Iterator[Plugin]:
    """The shared plugin, with the host function log and hooks cleared."""
    seen.clear()
    hooks.clear()
    yield bridge
    hooks.clear()
    assert not bridge.metrics().faults, "a test faulted the shared plugin"


class Hue(enum.Enum):
    GREEN = "green"


def _int_cases() -> list[Any]:
    cases = []
    for name, (lo, hi) in INT_RANGES.items():
        cases += [
            pytest.param(name, lo, lo, id=f"{name}-min"),
            pytest.param(name, hi, hi, id=f"{name}-max"),
            pytest.param(name, 0, 0, id=f"{name}-zero"),
        ]
    return cases


INF = float("inf")
KIB_BYTES = bytes(range(256)) * 4

ROUND_TRIPS = [
    pytest.param("bool", True, True, id="bool-true"),
    pytest.param("bool", False, False, id="bool-false"),
    *_int_cases(),
    pytest.param("f32", 1.5, 1.5, id="f32"),
    pytest.param("f32", 3, 3.0, id="f32-int"),
    pytest.param("f32", 0.1, f32(0.1), id="f32-rounded"),
    pytest.param("f32", -0.0, -0.0, id="f32-neg-zero"),
    pytest.param("f32", math.nan, math.nan, id="f32-nan"),
    pytest.param("f32", INF, INF, id="f32-inf"),
    pytest.param("f32", -INF, -INF, id="f32-neg-inf"),
    pytest.param("f64", 0.1, 0.1, id="f64"),
    pytest.param("f64", 2**53, float(2**53), id="f64-int"),
    pytest.param("f64", 1e308, 1e308, id="f64-big"),
    pytest.param("f64", math.nan, math.nan, id="f64-nan"),
    pytest.param("f64", INF, INF, id="f64-inf"),
    pytest.param("f64", -INF, -INF, id="f64-neg-inf"),
    pytest.param("char", "a", "a", id="char-ascii"),
    pytest.param("char", "é", "é", id="char-latin1"),
    pytest.param("char", "🦀", "🦀", id="char-non-bmp"),
    pytest.param("char", "\x00", "\x00", id="char-nul"),
    pytest.param("char", "\U0010ffff", "\U0010ffff", id="char-max"),
    pytest.param("char", "\ue000", "\ue000", id="char-after-surrogates"),
    pytest.param("string", "", "", id="string-empty"),
    pytest.param("string", "héllo wörld 🦀", "héllo wörld 🦀", id="string-unicode"),
    pytest.param("string", "a\x00b", "a\x00b", id="string-nul"),
    pytest.param("string", "x" * 1024, "x" * 1024, id="string-1kib-ascii"),
    pytest.param("string", "🦀" * 256, "🦀" * 256, id="string-1kib-non-bmp"),
    pytest.param("bytes", b"", b"", id="bytes-empty"),
    pytest.param("bytes", b"\x00\xffab", b"\x00\xffab", id="bytes"),
    pytest.param("bytes", bytearray(b"xy"), b"xy", id="bytes-from-bytearray"),
    pytest.param("bytes", [0, 255, 7], b"\x00\xff\x07", id="bytes-from-list"),
    pytest.param("bytes", (1, 2), b"\x01\x02", id="bytes-from-tuple"),
    pytest.param("bytes", memoryview(b"mv"), b"mv", id="bytes-from-memoryview"),
    pytest.param("bytes", KIB_BYTES, KIB_BYTES, id="bytes-1kib"),
    pytest.param("strings", [], [], id="strings-empty"),
    pytest.param("strings", ["a", "", "🦀"], ["a", "", "🦀"], id="strings"),
    pytest.param("strings", ("x", "y"), ["x", "y"], id="strings-from-tuple"),
    pytest.param("chunks", [b"ab", b"", bytearray(b"c")], [b"ab", b"", b"c"], id="chunks"),
    pytest.param("u32s", list(range(1000)), list(range(1000)), id="u32s-1000"),
    pytest.param("point", {"x": -1, "y": 2}, Rec(x=-1, y=2), id="record-from-dict"),
    pytest.param("point", SimpleNamespace(x=3, y=4), Rec(x=3, y=4), id="record-from-object"),
    pytest.param(
        "person",
        {"first-name": "Ada", "age": 36, "home": None},
        Rec(first_name="Ada", age=36, home=None),
        id="record-kebab-keys",
    ),
    pytest.param(
        "person",
        {"first_name": "Ada", "age": 36, "home": {"x": 1, "y": 2}},
        Rec(first_name="Ada", age=36, home=Rec(x=1, y=2)),
        id="record-snake-keys-nested",
    ),
    pytest.param(
        "person",
        SimpleNamespace(first_name="Bo", age=7, home=SimpleNamespace(x=0, y=-1)),
        Rec(first_name="Bo", age=7, home=Rec(x=0, y=-1)),
        id="record-object-attributes",
    ),
    pytest.param("points", [], [], id="list-record-empty"),
    pytest.param(
        "points",
        [{"x": 1, "y": 2}, SimpleNamespace(x=-3, y=4)],
        [Rec(x=1, y=2), Rec(x=-3, y=4)],
        id="list-record",
    ),
    pytest.param("tuple", (7, "hé", 2.5), (7, "hé", 2.5), id="tuple"),
    pytest.param("tuple", [7, "x", 1], (7, "x", 1.0), id="tuple-from-list"),
    pytest.param("shape", Variant("empty"), Variant("empty", None), id="variant-no-payload"),
    pytest.param("shape", Variant("num", 1.5), Variant("num", 1.5), id="variant-f32"),
    pytest.param("shape", Variant("big", 2**64 - 1), Variant("big", 2**64 - 1), id="variant-u64"),
    pytest.param("shape", Variant("text", "hé🦀"), Variant("text", "hé🦀"), id="variant-string"),
    pytest.param(
        "shape", Variant("pt", {"x": 1, "y": 2}), Variant("pt", Rec(x=1, y=2)), id="variant-record"
    ),
    pytest.param("color", "red", "red", id="enum-first"),
    pytest.param("color", "blue-ish", "blue-ish", id="enum-kebab"),
    pytest.param("color", Hue.GREEN, "green", id="enum-from-python-enum"),
    pytest.param("perms", set(), frozenset(), id="flags-empty"),
    pytest.param("perms", {"read", "exec"}, frozenset({"read", "exec"}), id="flags-set"),
    pytest.param("perms", frozenset({"write"}), frozenset({"write"}), id="flags-frozenset"),
    pytest.param("perms", ["read", "read"], frozenset({"read"}), id="flags-from-list"),
    pytest.param("flags32", {"f0", "f31"}, frozenset({"f0", "f31"}), id="flags-32-edges"),
    pytest.param("flags32", set(FLAGS32.names), frozenset(FLAGS32.names), id="flags-32-all"),
    pytest.param("opt-u32", None, None, id="option-none"),
    pytest.param("opt-u32", 0, 0, id="option-zero"),
    pytest.param("opt-u32", Some(5), 5, id="option-explicit-some"),
    pytest.param("opt-str", "", "", id="option-string-empty"),
    pytest.param("opt-str", None, None, id="option-string-none"),
    pytest.param("opt-point", {"x": 1, "y": 2}, Rec(x=1, y=2), id="option-record"),
    pytest.param("opt-opt", None, None, id="option-option-none"),
    pytest.param("opt-opt", Some(None), Some(None), id="option-option-some-none"),
    pytest.param("opt-opt", Some(5), Some(5), id="option-option-some"),
    pytest.param(
        "res-list",
        [Ok(1), Err("x"), Ok(2)],
        [Ok(1), Err("x"), Ok(2)],
        id="list-result",
    ),
    pytest.param("res-same", [Ok("a"), Err("a")], [Ok("a"), Err("a")], id="list-result-same-types"),
    pytest.param("res-unit", [Ok(), Err()], [Ok(None), Err(None)], id="list-result-no-payloads"),
    pytest.param("res-ok-only", [Ok(3), Err()], [Ok(3), Err(None)], id="list-result-no-err"),
]


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "expected"), ROUND_TRIPS)
def test_export_round_trip(plugin: Plugin, key: str, value: Any, expected: Any) -> None:
    assert_same(plugin.call(f"echo-{key}", value), expected)


@pytest.mark.parametrize(("key", "value", "expected"), ROUND_TRIPS)
def test_host_round_trip(plugin: Plugin, key: str, value: Any, expected: Any) -> None:
    """The host function receives the typed value and its return value reaches the guest."""
    assert_same(plugin.call(f"call-h-{key}", value), expected)
    assert len(seen) == 1
    assert seen[0][0] == key
    assert_same(seen[0][1], expected)


def test_exports_attribute_access(plugin: Plugin) -> None:
    assert plugin.exports.echo_opt_u32(7) == 7
    assert plugin.exports.call_h_string("hé") == "hé"


def test_record_result_is_frozen_attrs_object(plugin: Plugin) -> None:
    out = plugin.call("echo-person", {"first-name": "Ada", "age": 36, "home": None})
    assert out.first_name == "Ada"
    assert attrs.has(type(out))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        out.age = 1  # type: ignore[misc]
    # A record object the bridge produced is accepted back as input.
    assert plugin.call("echo-person", out) == out


@pytest.mark.parametrize("key", ["f32", "f64"], ids=["f32", "f64"])
def test_float_nan_and_inf_from_host(plugin: Plugin, key: str) -> None:
    hooks[key] = lambda a: math.nan if a > 0 else -INF
    assert math.isnan(plugin.call(f"call-h-{key}", 1.0))
    assert plugin.call(f"call-h-{key}", -1.0) == -INF


# ---------------------------------------------------------------------------
# Conversion errors: exports
# ---------------------------------------------------------------------------


def _range_errors() -> list[Any]:
    cases = []
    for name, (lo, hi) in INT_RANGES.items():
        cases += [
            pytest.param(name, lo - 1, WitValueError, str(lo - 1), id=f"{name}-min-1"),
            pytest.param(name, hi + 1, WitValueError, str(hi + 1), id=f"{name}-max+1"),
        ]
    return cases


ERRORS = [
    *_range_errors(),
    pytest.param("bool", 1, WitTypeError, "expects bool", id="bool-from-int"),
    pytest.param("bool", None, WitTypeError, "expects bool", id="bool-from-none"),
    pytest.param("s32", True, WitTypeError, "expects s32", id="int-from-bool"),
    pytest.param("u64", 1.0, WitTypeError, "got float", id="int-from-float"),
    pytest.param("u8", "1", WitTypeError, "got str", id="int-from-str"),
    pytest.param("f32", True, WitTypeError, "expects f32", id="f32-from-bool"),
    pytest.param("f64", "1.0", WitTypeError, "expects f64", id="f64-from-str"),
    pytest.param("char", "ab", WitTypeError, "expects char", id="char-two"),
    pytest.param("char", "", WitTypeError, "expects char", id="char-empty"),
    pytest.param("char", 65, WitTypeError, "expects char", id="char-from-int"),
    pytest.param("char", "\ud800", WitValueError, "surrogate", id="char-surrogate"),
    pytest.param("char", "\udfff", WitValueError, "surrogate", id="char-low-surrogate"),
    pytest.param("string", b"x", WitTypeError, "expects string", id="string-from-bytes"),
    pytest.param("string", "a\ud800", WitValueError, "UTF-8", id="string-surrogate"),
    pytest.param("bytes", [256], WitValueError, "[0, 255]", id="bytes-item-too-big"),
    pytest.param("bytes", [-1], WitValueError, "[0, 255]", id="bytes-item-negative"),
    pytest.param("bytes", "abc", WitTypeError, "list<u8>", id="bytes-from-str"),
    pytest.param("strings", ["a", 1], WitTypeError, "item 1", id="list-bad-item"),
    pytest.param("strings", "ab", WitTypeError, "list<string>", id="list-from-str"),
    pytest.param("point", {"x": 1}, WitTypeError, "'y'", id="record-missing-field"),
    pytest.param("point", (1, 2), WitTypeError, "record", id="record-from-tuple"),
    pytest.param("point", {"x": 1, "y": "2"}, WitTypeError, "field 'y'", id="record-bad-field"),
    pytest.param(
        "person", {"age": 1, "home": None}, WitTypeError, "'first-name'", id="record-missing-kebab"
    ),
    pytest.param(
        "person",
        SimpleNamespace(first_name="a", age=300, home=None),
        WitValueError,
        "field 'age'",
        id="record-field-range",
    ),
    pytest.param(
        "points", [{"x": 1, "y": 2}, {"x": 1}], WitTypeError, "item 1", id="list-record-missing"
    ),
    pytest.param("tuple", (1, "a"), WitTypeError, "tuple of 3", id="tuple-too-short"),
    pytest.param("tuple", (1, 2, 3.0), WitTypeError, "element 1", id="tuple-bad-element"),
    pytest.param("shape", "num", WitTypeError, "Variant", id="variant-from-str"),
    pytest.param("shape", Variant("nope"), WitValueError, "'nope'", id="variant-unknown-case"),
    pytest.param("shape", Variant("empty", 1), WitValueError, "no payload", id="variant-payload"),
    pytest.param("shape", Variant("num", "x"), WitTypeError, "case 'num'", id="variant-bad-value"),
    pytest.param("color", "purple", WitValueError, "'purple'", id="enum-unknown"),
    pytest.param("color", 1, WitTypeError, "expects enum", id="enum-from-int"),
    pytest.param("perms", {"read", "bogus"}, WitValueError, "'bogus'", id="flags-unknown"),
    pytest.param("perms", "read", WitTypeError, "expects flags", id="flags-from-str"),
    pytest.param("opt-u32", "x", WitTypeError, "expects u32", id="option-bad-payload"),
    pytest.param("opt-opt", 5, WitTypeError, "Some", id="option-option-bare"),
    pytest.param("res", 5, WitTypeError, "Ok", id="result-bare-value"),
    pytest.param("res", Ok("x"), WitTypeError, "ok: expects u32", id="result-bad-ok"),
    pytest.param("res", Err(5), WitTypeError, "err: expects string", id="result-bad-err"),
    pytest.param("res-list", [Ok(1), 2], WitTypeError, "item 1", id="list-result-bare"),
    pytest.param("res-unit", [Ok(1)], WitValueError, "no payload", id="result-unit-payload"),
]


@pytest.mark.parametrize(("key", "value", "exc", "fragment"), ERRORS)
def test_export_argument_errors(
    plugin: Plugin, key: str, value: Any, exc: type[Exception], fragment: str
) -> None:
    with pytest.raises(exc) as info:
        plugin.call(f"echo-{key}", value)
    message = str(info.value)
    assert f"echo-{key}: parameter 'a'" in message
    assert fragment in message
    # A conversion error is raised before the call: the instance is untouched.
    assert plugin.call("echo-u32", 5) == 5


@pytest.mark.parametrize("args", [(), (1, 2)], ids=["none", "two"])
def test_wrong_argument_count(plugin: Plugin, args: tuple[int, ...]) -> None:
    with pytest.raises(
        WitTypeError, match=rf"echo-u32 takes 1 argument\(s\) \(a\), got {len(args)}"
    ):
        plugin.call("echo-u32", *args)
    with pytest.raises(WitTypeError, match="takes 1 argument"):
        plugin.exports.echo_u32(*args)


def test_error_in_second_parameter_names_it(host: PluginHost) -> None:
    func = w.Func("pair", (("a", w.P("string")), ("b", U8)), U32, body="(local.get 2)")
    plugin = load(host, w.component([func]))
    assert plugin.call("pair", "x", 3) == 3
    with pytest.raises(WitValueError, match=r"pair: parameter 'b' expects u8: 256"):
        plugin.call("pair", "x", 256)
    assert plugin.call("pair", "y", 4) == 4


GUEST_BAD_VALUES = [
    w.Func("bad-char", (), w.P("char"), "(i32.const 0xD800)"),
    w.Func("bad-char-big", (), w.P("char"), "(i32.const 0x110000)"),
    w.Func("bad-enum", (), COLOR, "(i32.const 3)"),
    w.Func(
        "bad-option",
        (),
        w.Option(U32),
        f"(i32.store8 (i32.const {w.RET}) (i32.const 2)) (i32.const {w.RET})",
    ),
    # A string of one byte, 0xFF: not UTF-8.
    w.Func(
        "bad-string",
        (),
        STRING,
        "(i32.store8 (i32.const 0) (i32.const 0xFF)) (i32.store (i32.const 16) (i32.const 0)) "
        "(i32.store (i32.const 20) (i32.const 1)) (i32.const 16)",
    ),
]


@pytest.mark.parametrize("func", GUEST_BAD_VALUES, ids=[f.name for f in GUEST_BAD_VALUES])
def test_invalid_value_from_guest_is_a_trap(host: PluginHost, func: w.Func) -> None:
    """Lifting rejects what the guest cannot legally return; the instance is replaced."""
    plugin = load(host, w.component([func]))
    with pytest.raises(PluginTrapped):
        plugin.call(func.name)
    assert plugin.metrics().faults == {"trap": 1}


def test_lifting_follows_canonical_abi_for_loose_values(host: PluginHost) -> None:
    """Any non-zero i32 is ``true``; integers narrower than i32 keep their low bits."""
    funcs = [
        w.Func("two", (), w.P("bool"), "(i32.const 2)"),
        w.Func("wide-u8", (), U8, "(i32.const 300)"),
        w.Func("wide-s8", (), w.P("s8"), "(i32.const 255)"),
    ]
    plugin = load(host, w.component(funcs))
    assert plugin.call("two") is True
    assert plugin.call("wide-u8") == 44
    assert plugin.call("wide-s8") == -1


# ---------------------------------------------------------------------------
# result<T, E> returned by an export: ok -> value, err -> ErrorResult (no fault)
# ---------------------------------------------------------------------------


def test_top_level_result_ok_returns_payload(plugin: Plugin) -> None:
    assert plugin.call("echo-res", Ok(7)) == 7
    assert plugin.call("echo-res-no-ok", Ok()) is None


def test_top_level_result_err_raises_and_instance_survives(plugin: Plugin) -> None:
    before = plugin.call("tick")
    with pytest.raises(ErrorResult) as info:
        plugin.call("echo-res", Err("bad"))
    assert info.value.value == "bad"
    assert info.value.export == "echo-res"
    assert info.value.plugin == "t"
    with pytest.raises(ErrorResult) as info2:
        plugin.call("echo-res-no-ok", Err("no"))
    assert info2.value.value == "no"
    # Same instance: its state carried on (a fault would have started a fresh one).
    assert plugin.call("tick") == before + 1
    assert plugin.call("echo-res", Ok(8)) == 8
    metrics = plugin.metrics()
    assert metrics.faults == {}
    assert metrics.restarts == 0


# ---------------------------------------------------------------------------
# Host functions: results, conversions of what they return
# ---------------------------------------------------------------------------


def _raise_err(value: Any) -> Callable[[Any], Any]:
    def hook(_a: Any) -> Any:
        raise Err(value)

    return hook


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        pytest.param(lambda a: 5, 5, id="plain-value-is-ok"),
        pytest.param(lambda a: Ok(6), 6, id="explicit-ok"),
        pytest.param(lambda a: a, 1, id="pass-through-ok"),
    ],
)
def test_host_result_ok(plugin: Plugin, hook: Callable[[Any], Any], expected: int) -> None:
    hooks["res"] = hook
    assert plugin.call("call-h-res", Ok(1)) == expected
    assert seen == [("res", Ok(1))]  # a result parameter reaches the host as Ok/Err


@pytest.mark.parametrize(
    "hook",
    [
        pytest.param(_raise_err("nope"), id="raise-err"),
        pytest.param(lambda a: Err("nope"), id="return-err"),
    ],
)
def test_host_result_err(plugin: Plugin, hook: Callable[[Any], Any]) -> None:
    hooks["res"] = hook
    with pytest.raises(ErrorResult) as info:
        plugin.call("call-h-res", Ok(1))
    assert info.value.value == "nope"
    hooks["res-no-ok"] = _raise_err("denied")
    with pytest.raises(ErrorResult, match="denied"):
        plugin.call("call-h-res-no-ok", Ok())
    hooks["res-no-ok"] = lambda a: None
    assert plugin.call("call-h-res-no-ok", Ok()) is None


def test_host_receives_err_parameter(plugin: Plugin) -> None:
    with pytest.raises(ErrorResult):
        plugin.call("call-h-res", Err("from-python"))
    assert seen == [("res", Err("from-python"))]
    assert type(seen[0][1]) is Err


def test_host_nested_results_are_explicit(plugin: Plugin) -> None:
    hooks["res-list"] = lambda a: [*a, Err("host"), Ok(9)]
    out = plugin.call("call-h-res-list", [Ok(1)])
    assert_same(out, [Ok(1), Err("host"), Ok(9)])


HOST_ARGS: dict[str, Any] = {
    "point": {"x": 0, "y": 0},
    "person": {"first-name": "", "age": 0, "home": None},
    "bytes": b"",
    "perms": set(),
    "color": "red",
    "tuple": (0, "", 0.0),
    "opt-opt": None,
    "shape": Variant("empty"),
    "f32": 0.0,
}


@pytest.mark.parametrize(
    ("key", "returned", "expected"),
    [
        pytest.param("point", {"x": 1, "y": 2}, Rec(x=1, y=2), id="record-from-dict"),
        pytest.param(
            "person",
            SimpleNamespace(first_name="Z", age=1, home=None),
            Rec(first_name="Z", age=1, home=None),
            id="record-from-object",
        ),
        pytest.param("bytes", bytearray(b"ba"), b"ba", id="bytes-from-bytearray"),
        pytest.param("bytes", [1, 2], b"\x01\x02", id="bytes-from-list"),
        pytest.param("perms", {"exec"}, frozenset({"exec"}), id="flags-from-set"),
        pytest.param("color", Hue.GREEN, "green", id="enum-from-python-enum"),
        pytest.param("tuple", [1, "a", 2], (1, "a", 2.0), id="tuple-from-list"),
        pytest.param("opt-opt", Some(None), Some(None), id="option-option"),
        pytest.param("shape", Variant("text", "t"), Variant("text", "t"), id="variant"),
        pytest.param("f32", 2, 2.0, id="f32-from-int"),
    ],
)
def test_host_return_conversions(plugin: Plugin, key: str, returned: Any, expected: Any) -> None:
    hooks[key] = lambda a: returned
    value = HOST_ARGS[key]
    assert_same(plugin.call(f"call-h-{key}", value), expected)


HOST_FAULTS = [
    pytest.param("u32", lambda a: "x", WitTypeError, id="wrong-type"),
    pytest.param("u32", lambda a: -1, WitValueError, id="out-of-range"),
    pytest.param("u32", lambda a: None, WitTypeError, id="none-for-u32"),
    pytest.param("u32", _raise_err("x"), Err, id="raise-err-without-result-type"),
    pytest.param("res-list", lambda a: [1], WitTypeError, id="bare-value-in-nested-result"),
    pytest.param("point", lambda a: {"x": 1}, WitTypeError, id="record-missing-field"),
    pytest.param("char", lambda a: "\ud800", WitValueError, id="surrogate-char"),
]


@pytest.mark.parametrize(("key", "hook", "cause"), HOST_FAULTS)
def test_host_bad_return_is_host_function_error(
    host: PluginHost, key: str, hook: Callable[[Any], Any], cause: type[BaseException]
) -> None:
    host.provide(HOST, {f"h-{key}": hook})
    plugin = load(host, w.component([], host_funcs([key])))
    arg = {"u32": 1, "res-list": [], "point": {"x": 0, "y": 0}, "char": "a"}[key]
    with pytest.raises(HostFunctionError) as info:
        plugin.call(f"call-h-{key}", arg)
    assert isinstance(info.value.__cause__, cause)
    assert f"h-{key}" in str(info.value)


def test_host_function_wrong_arity_is_link_error(host: PluginHost) -> None:
    host.provide(HOST, {"h-u32": lambda: 1})
    with pytest.raises(LinkError, match=r"h-u32 must accept 1 argument\(s\) \(a\)"):
        load(host, w.component([], host_funcs(["u32"])))


# ---------------------------------------------------------------------------
# Guest-defined resource
# ---------------------------------------------------------------------------

GUEST_COUNTER = f"""
(component
{w.LIBC}
  (type $counter (resource (rep i32) (dtor (core func $libc "dtor"))))
  (core func $new (canon resource.new $counter))
  (core func $rep (canon resource.rep $counter))
  (core func $drop (canon resource.drop $counter))
  (core module $M
    (import "r" "new" (func $new (param i32) (result i32)))
    (import "r" "rep" (func $rep (param i32) (result i32)))
    (import "r" "drop" (func $drop (param i32)))
    ;; The rep is the counter's value.
    (func (export "ctor") (param i32) (result i32) (call $new (local.get 0)))
    ;; A borrow of a resource this component defines arrives as its rep.
    (func (export "get") (param i32) (result i32) (local.get 0))
    ;; An own arrives as a handle: read it, then drop it (runs the destructor).
    (func (export "take") (param i32 i32) (result i32) (local $v i32)
      (local.set $v (i32.add (call $rep (local.get 0)) (local.get 1)))
      (call $drop (local.get 0))
      (local.get $v)))
  (core instance $m (instantiate $M (with "r" (instance
    (export "new" (func $new)) (export "rep" (func $rep)) (export "drop" (func $drop))))))
  (func $ctor (param "start" u32) (result (own $counter)) (canon lift (core func $m "ctor")))
  (func $get (param "self" (borrow $counter)) (result u32) (canon lift (core func $m "get")))
  (func $take (param "c" (own $counter)) (param "extra" u8) (result u32)
    (canon lift (core func $m "take")))
  ;; Exported functions may only mention exported (named) resource types, so the
  ;; interface is the instance of a small component that names them (as
  ;; wit-component does).
  (component $Api
    (import "t" (type $c (sub resource)))
    (import "ctor" (func $ctor (param "start" u32) (result (own $c))))
    (import "get" (func $get (param "self" (borrow $c)) (result u32)))
    (import "take" (func $take (param "c" (own $c)) (param "extra" u8) (result u32)))
    (export $ce "counter" (type $c))
    (export "[constructor]counter" (func $ctor) (func (param "start" u32) (result (own $ce))))
    (export "[method]counter.get" (func $get) (func (param "self" (borrow $ce)) (result u32)))
    (export "[static]counter.take" (func $take)
      (func (param "c" (own $ce)) (param "extra" u8) (result u32))))
  (instance $api (instantiate $Api (with "t" (type $counter)) (with "ctor" (func $ctor))
    (with "get" (func $get)) (with "take" (func $take))))
  (export "{API[:-1]}" (instance $api))
{w.LIBC_EXPORTS}
)
"""

CTOR, GET, TAKE = (
    API + "[constructor]counter",
    API + "[method]counter.get",
    API + "[static]counter.take",
)


@pytest.fixture
def counters(host: PluginHost) -> Plugin:
    return load(host, GUEST_COUNTER)


def test_guest_resource_constructor_and_methods(counters: Plugin) -> None:
    c = counters.call(CTOR, 7)
    assert isinstance(c, Resource)
    assert (c.type_name, c.owned, c.alive) == ("counter", True, True)
    assert counters.call(GET, c) == 7
    assert counters.exports.api["[method]counter.get"](c) == 7  # borrowing does not consume
    assert counters.call(GET, counters.call(CTOR, 2**32 - 1)) == 2**32 - 1
    assert "alive" in repr(c)


def test_guest_resource_close_runs_destructor(counters: Plugin) -> None:
    c = counters.call(CTOR, 1)
    assert counters.call("drops") == 0
    c.close()
    assert counters.call("drops") == 1
    assert not c.alive
    c.close()  # idempotent
    assert counters.call("drops") == 1
    with pytest.raises(StaleResourceError, match="already moved"):
        counters.call(GET, c)
    with counters.call(CTOR, 2) as d:
        assert counters.call(GET, d) == 2
    assert counters.call("drops") == 2


def test_guest_resource_own_parameter_moves_handle(counters: Plugin) -> None:
    c = counters.call(CTOR, 40)
    assert counters.call(TAKE, c, 2) == 42
    assert counters.call("drops") == 1  # the guest dropped it
    assert not c.alive
    with pytest.raises(StaleResourceError):
        counters.call(GET, c)
    c.close()  # nothing left to drop
    assert counters.call("drops") == 1


def test_guest_resource_survives_failed_call(counters: Plugin) -> None:
    """A conversion error in a later parameter must not consume an earlier own handle."""
    c = counters.call(CTOR, 5)
    with pytest.raises(WitValueError, match="parameter 'extra'"):
        counters.call(TAKE, c, 256)
    assert c.alive
    assert counters.call(GET, c) == 5
    assert counters.call(TAKE, c, 1) == 6


def test_guest_resource_wrong_argument(counters: Plugin) -> None:
    with pytest.raises(WitTypeError, match=r"parameter 'self' expects borrow<counter>"):
        counters.call(GET, 7)
    with pytest.raises(WitTypeError, match=r"parameter 'c' expects own<counter>"):
        counters.call(TAKE, None, 1)


def test_guest_resource_of_another_plugin_is_rejected(host: PluginHost, counters: Plugin) -> None:
    other = load(host, GUEST_COUNTER, manifest=Manifest(name="other"))
    c = other.call(CTOR, 1)
    with pytest.raises(WitValueError, match="belongs to plugin 'other'"):
        counters.call(GET, c)
    assert other.call(GET, c) == 1


def test_guest_resource_stale_after_fault(counters: Plugin) -> None:
    c = counters.call(CTOR, 3)
    with pytest.raises(PluginTrapped):
        counters.call("crash")
    assert not c.alive
    assert "stale" in repr(c)
    with pytest.raises(StaleResourceError, match="discarded"):
        counters.call(GET, c)
    c.close()  # harmless: the instance (and the guest object) is gone
    fresh = counters.call(CTOR, 4)
    assert counters.call(GET, fresh) == 4


def test_guest_resource_stale_after_reset(counters: Plugin) -> None:
    c = counters.call(CTOR, 3)
    counters.reset()
    assert not c.alive
    with pytest.raises(StaleResourceError):
        counters.call(GET, c)
    with pytest.raises(StaleResourceError):
        counters.call(TAKE, c, 0)


def test_guest_resource_after_plugin_close(counters: Plugin) -> None:
    c = counters.call(CTOR, 3)
    counters.close()
    assert not c.alive
    # The plugin itself is closed, which is what a call reports.
    with pytest.raises(PluginClosedError):
        counters.call(GET, c)
    c.close()


# ---------------------------------------------------------------------------
# Host-defined resource (imported by the component, implemented in Python)
# ---------------------------------------------------------------------------

HOST_COUNTER = f"""
(component
  (import "{HOST}" (instance $host
    (export "counter" (type $c (sub resource)))
    (export "[constructor]counter" (func (param "start" u32) (result (own $c))))
    (export "[method]counter.get" (func (param "self" (borrow $c)) (result u32)))
    (export "[static]counter.make" (func (param "n" u32) (result (own $c))))))
  (alias export $host "counter" (type $counter))
{w.LIBC}
  (core func $hnew (canon lower (func $host "[constructor]counter")))
  (core func $hget (canon lower (func $host "[method]counter.get")))
  (core func $hmake (canon lower (func $host "[static]counter.make")))
  (core func $hdrop (canon resource.drop $counter))
  (core module $M
    (import "h" "new" (func $new (param i32) (result i32)))
    (import "h" "get" (func $get (param i32) (result i32)))
    (import "h" "make" (func $make (param i32) (result i32)))
    (import "h" "drop" (func $drop (param i32)))
    ;; Construct, read and drop a host counter, all from inside the guest.
    (func (export "use-host") (param i32) (result i32) (local $h i32) (local $v i32)
      (local.set $h (call $new (local.get 0)))
      (local.set $v (call $get (local.get $h)))
      (call $drop (local.get $h))
      (local.get $v))
    (func (export "make") (param i32) (result i32) (call $make (local.get 0)))
    ;; Borrowed handles must be dropped before returning.
    (func (export "peek") (param i32) (result i32) (local $v i32)
      (local.set $v (call $get (local.get 0)))
      (call $drop (local.get 0))
      (local.get $v))
    (func (export "take") (param i32) (result i32) (local $v i32)
      (local.set $v (call $get (local.get 0)))
      (call $drop (local.get 0))
      (local.get $v)))
  (core instance $m (instantiate $M (with "h" (instance (export "new" (func $hnew))
    (export "get" (func $hget)) (export "make" (func $hmake)) (export "drop" (func $hdrop))))))
  (func $use (param "start" u32) (result u32) (canon lift (core func $m "use-host")))
  (export "use-host" (func $use))
  (func $make (param "n" u32) (result (own $counter)) (canon lift (core func $m "make")))
  (export "make" (func $make))
  (func $peek (param "c" (borrow $counter)) (result u32) (canon lift (core func $m "peek")))
  (export "peek" (func $peek))
  (func $take (param "c" (own $counter)) (result u32) (canon lift (core func $m "take")))
  (export "take" (func $take))
)
"""


class Counter:
    """The host implementation of ``counter``; records what the guest did with it."""

    log: list[tuple[str, Any]]

    def __init__(self, start: int) -> None:
        self.value = start
        Counter.log.append(("init", self))

    def get(self) -> int:
        Counter.log.append(("get", self))
        return self.value

    @staticmethod
    def make(n: int) -> Counter:
        return Counter(n * 10)


@pytest.fixture
def host_counters(host: PluginHost) -> Plugin:
    Counter.log = []
    host.provide(HOST, SimpleNamespace(Counter=Counter))
    return load(host, HOST_COUNTER)


def test_host_resource_constructed_and_used_by_guest(host_counters: Plugin) -> None:
    assert host_counters.call("use-host", 4) == 4
    (init, obj), (get, same) = Counter.log
    assert (init, get) == ("init", "get")
    assert same is obj
    assert obj.value == 4
    # The guest dropped its handle: wasmplug no longer keeps the object alive.
    ref = weakref.ref(obj)
    del obj, same
    Counter.log.clear()
    gc.collect()
    assert ref() is None


def test_host_resource_returned_to_python(host_counters: Plugin) -> None:
    c = host_counters.call("make", 3)
    assert isinstance(c, Counter)
    assert c.value == 30
    assert Counter.log == [("init", c)]


def test_host_resource_passed_from_python(host_counters: Plugin) -> None:
    c = Counter(5)
    assert host_counters.call("peek", c) == 5
    assert host_counters.call("peek", c) == 5
    assert host_counters.call("take", c) == 5  # own: the guest drops it
    assert [entry for _, entry in Counter.log] == [c, c, c, c]


def test_host_resource_wrong_argument(host_counters: Plugin) -> None:
    with pytest.raises(WitTypeError, match="parameter 'c' expects borrow<counter>"):
        host_counters.call("peek", None)
    assert host_counters.call("use-host", 1) == 1


def test_host_resource_owned_by_python_is_not_retained(host_counters: Plugin) -> None:
    """Once an own<counter> reaches Python, only Python holds the object."""
    c = host_counters.call("make", 1)
    ref = weakref.ref(c)
    del c
    Counter.log.clear()
    gc.collect()
    assert ref() is None


def test_host_resource_borrow_is_not_retained(host_counters: Plugin) -> None:
    """A borrow cannot outlive its call, so the host drops its reference when the call returns."""
    c = Counter(1)
    ref = weakref.ref(c)
    assert host_counters.call("peek", c) == 1
    del c
    Counter.log.clear()
    gc.collect()
    assert ref() is None

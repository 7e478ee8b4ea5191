"""Values through the bridge, for every WIT value type, in both directions.

Export direction: ``echo-<key>(a: T) -> T`` (a value goes Python -> lower -> guest ->
lift -> Python). Host direction: ``call-h-<key>(a: T) -> T`` passes its argument to the
host function ``h-<key>``, which receives a lifted value and returns one to lower. Also:
conversion errors with the parameter named, invalid values from the guest, and a
top-level ``result<T, E>``.
"""

from __future__ import annotations

import enum
import gc
import math
import re
from array import array
from types import SimpleNamespace
from typing import Any

import attrs
import pytest

import wat as w
from support.bridge import (
    COLOR,
    FLAGS32,
    INT_RANGES,
    STRING,
    U8,
    U32,
    Hue,
    Rec,
    assert_same,
    echo_funcs,
    f32,
    hooks,
    load,
    seen,
)
from wasmplug import (
    Err,
    ErrorResult,
    Ok,
    Plugin,
    PluginHost,
    PluginTrapped,
    Some,
    Variant,
    WitTypeError,
    WitValueError,
)
from wasmplug._runtime.plugin import find_export


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


class Hue2(enum.IntEnum):
    ONE = 1


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
    pytest.param("s64s", [-(2**63), 0, 2**63 - 1], [-(2**63), 0, 2**63 - 1], id="s64s-edges"),
    pytest.param("u64s", (0, 2**64 - 1), [0, 2**64 - 1], id="u64s-from-tuple"),
    pytest.param("u16s", [Hue2.ONE, 65535], [1, 65535], id="u16s-int-subclass"),
    pytest.param("f64s", [0.1, -0.0, INF, 3], [0.1, -0.0, INF, 3.0], id="f64s"),
    pytest.param("f64s", [1.5] * 5000, [1.5] * 5000, id="f64s-5000"),
    pytest.param("f64s", [math.nan], [math.nan], id="f64s-nan"),
    pytest.param("f32s", [0.1, 2, 1e300], [f32(0.1), 2.0, INF], id="f32s-rounded"),
    # An array.array of the element's typecode is a list<number> (copied in bulk).
    pytest.param("s8s", array("b", [-128, 127]), [-128, 127], id="s8s-from-array"),
    pytest.param("u16s", array("H", [0, 65535]), [0, 65535], id="u16s-from-array"),
    pytest.param("u32s", array("I", range(1000)), list(range(1000)), id="u32s-from-array"),
    pytest.param("u64s", array("Q", [0, 2**64 - 1]), [0, 2**64 - 1], id="u64s-from-array"),
    pytest.param("f64s", array("d", [1.5] * 5000), [1.5] * 5000, id="f64s-from-array"),
    pytest.param("f32s", array("f", [0.1, -2.0]), [f32(0.1), -2.0], id="f32s-from-array"),
    pytest.param("f64s", array("d"), [], id="f64s-from-empty-array"),
    pytest.param("bools", [True, False, True], [True, False, True], id="bools"),
    pytest.param("chars", ["a", "🦀", "\x00"], ["a", "🦀", "\x00"], id="chars"),
    pytest.param(
        "scalars",
        {"b": True, "c": "🦀", "f": 0.1, "i": -128, "u": 2**64 - 1, "d": -0.0},
        Rec(b=True, c="🦀", f=f32(0.1), i=-128, u=2**64 - 1, d=-0.0),
        id="record-of-scalars",
    ),
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
    pytest.param("s64s", [1, True], WitTypeError, "item 1", id="int-list-with-bool"),
    pytest.param("u32s", [1, -1], WitValueError, "item 1", id="int-list-negative"),
    pytest.param("s64s", [0, 2**63], WitValueError, "item 1", id="int-list-too-big"),
    pytest.param("s64s", [0, 1.0], WitTypeError, "item 1", id="int-list-with-float"),
    pytest.param("f64s", [1.0, "x"], WitTypeError, "item 1", id="float-list-with-str"),
    pytest.param("f64s", array("f", [1.0]), WitTypeError, "list<f64>", id="float-list-wrong-array"),
    pytest.param("u32s", array("i", [1]), WitTypeError, "list<u32>", id="int-list-wrong-array"),
    pytest.param("bytes", array("B", b"ab"), WitTypeError, "list<u8>", id="bytes-from-array"),
    pytest.param("chars", ["a", "bc"], WitTypeError, "item 1", id="char-list-bad-item"),
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


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("u32s", array("I", [1, 2**32 - 1]), id="u32s"),
        pytest.param("f64s", array("d", [0.5, -2.0]), id="f64s"),
    ],
)
def test_host_function_may_return_an_array(plugin: Plugin, key: str, value: array[Any]) -> None:
    """A host function's result is converted as an argument is: an array.array
    of the element's typecode is accepted in both tiers."""
    hooks[key] = lambda _a: value
    assert_same(plugin.call(f"call-h-{key}", [0]), value.tolist())


def test_record_of_scalars_is_rewritten_in_place_call_after_call(host: PluginHost) -> None:
    """A record parameter of fixed-size primitives is allocated once per instance
    (RecordTemplate); every call, good or bad, leaves it valid for the next."""
    plugin = load(host, w.component(echo_funcs(["point", "scalars"])))
    for i in range(3):
        assert_same(plugin.call("echo-point", {"x": i, "y": -i}), Rec(x=i, y=-i))
    assert_same(plugin.call("echo-point", SimpleNamespace(x=7, y=8)), Rec(x=7, y=8))
    assert_same(plugin.call("echo-point", {"x": 1, "y": 2}), Rec(x=1, y=2))
    for bad, exc, fragment in [
        ({"x": 1, "y": True}, WitTypeError, "field 'y': expects s32"),
        ({"x": 2**31, "y": 0}, WitValueError, "field 'x': expects s32"),
        ({"x": 1}, WitTypeError, "field 'y': is missing"),
        (SimpleNamespace(x=1), WitTypeError, "field 'y': is missing"),
        ((1, 2), WitTypeError, "expects record"),
    ]:
        with pytest.raises(exc, match=re.escape(fragment)):
            plugin.call("echo-point", bad)
        assert_same(plugin.call("echo-point", {"x": 3, "y": 4}), Rec(x=3, y=4))
    full = {"b": False, "c": "x", "f": 1e300, "i": 5, "u": 6, "d": 0.5}
    assert_same(plugin.call("echo-scalars", full), Rec(b=False, c="x", f=INF, i=5, u=6, d=0.5))
    with pytest.raises(WitValueError, match="field 'c'"):
        plugin.call("echo-scalars", {**full, "c": "\ud800"})
    assert plugin.call("echo-scalars", {**full, "i": -1}).i == -1
    plugin.close()  # frees the kept records with the instance


def test_string_parameter_points_at_the_encoded_bytes_call_after_call(host: PluginHost) -> None:
    """A top-level string parameter's slot points at the argument's UTF-8 bytes
    (StringParam), which must stay alive through the call and be replaced by the
    next: lengths up and down, empty, NUL inside, non-ASCII, a failed lowering."""
    plugin = load(host, w.component(echo_funcs(["string"])))
    texts = ["a" * 5000, "", "é\x00ü", "x", "漢字" * 300, "a\x00b", "", "last"]
    for text in texts:
        assert plugin.call("echo-string", "".join([text])) == text  # a fresh str object
    with pytest.raises(WitValueError):
        plugin.call("echo-string", "\ud800")  # not encodable: the slot keeps the last value
    assert plugin.call("echo-string", "after") == "after"
    gc.collect()
    assert plugin.call("echo-string", "again" * 100) == "again" * 100


def test_call_buffers_are_recycled_across_instances(host: PluginHost) -> None:
    """A discarded instance's call buffers serve the next instance (no store state
    lives in them): values stay right after reset(), a fault and a failed lowering."""
    plugin = load(host, w.component(echo_funcs(["point", "string", "strings", "u32"])))
    ex = find_export(plugin, "echo-point")
    assert ex is not None
    assert_same(plugin.call("echo-point", {"x": 1, "y": 2}), Rec(x=1, y=2))
    assert plugin.call("echo-strings", ["a", "b"]) == ["a", "b"]
    [first] = plugin._pool.live()
    buf = first.buffers[ex.index]
    plugin.reset()
    assert ex.spare == [buf]
    assert_same(plugin.call("echo-point", {"x": 3, "y": 4}), Rec(x=3, y=4))
    [second] = plugin._pool.live()
    assert second is not first
    assert second.buffers[ex.index] is buf
    assert ex.spare == []
    with pytest.raises(WitTypeError, match="item 1"):
        plugin.call("echo-strings", ["ok", 1])  # the first item was lowered, then freed
    plugin.reset()
    assert plugin.call("echo-strings", ["c"]) == ["c"]
    assert plugin.call("echo-string", "é" * 300) == "é" * 300
    assert plugin.call("echo-u32", 7) == 7
    plugin.close()
    assert ex.spare == [], "a closed plugin keeps no buffers"


def test_string_parameter_buffer_grows_and_shrinks(host: PluginHost) -> None:
    """A string parameter is written into a per-instance buffer that grows on demand;
    a shorter string after a longer one, an empty one and a failed encode stay exact."""
    plugin = load(host, w.component(echo_funcs(["string", "opt-str"])))
    for text in ["", "a", "é" * 200, "x" * 100_000, "short", "", "🦀" * 70_000, "z"]:
        assert plugin.call("echo-string", text) == text
    with pytest.raises(WitValueError, match="UTF-8"):
        plugin.call("echo-string", "a\ud800")
    with pytest.raises(WitTypeError, match="expects string"):
        plugin.call("echo-string", b"bytes")
    assert plugin.call("echo-string", "after") == "after"
    assert plugin.call("echo-opt-str", "nested strings take the generic path") == (
        "nested strings take the generic path"
    )

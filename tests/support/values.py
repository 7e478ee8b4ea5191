"""The value tables of the bridge tests: what each WIT type accepts, returns and refuses.

``ROUND_TRIPS``: ``(key, value, expected)``, a value of ``TYPES[key]`` and what it comes
back as. ``ERRORS``: ``(key, value, exception class, message fragment)``, a value that
``TYPES[key]`` refuses. Shared by ``tests/bridge/test_values.py`` (each tier on its own)
and ``tests/bridge/test_tier_parity.py`` (both tiers side by side).
"""

from __future__ import annotations

import enum
import math
from array import array
from types import SimpleNamespace
from typing import Any

import pytest

import wat as w
from support.bridge import COLOR, FLAGS32, INT_RANGES, STRING, U32, Hue, Rec, f32
from wasmplug import Err, Ok, Some, Variant, WitTypeError, WitValueError

__all__ = ["ERRORS", "GUEST_BAD_VALUES", "INF", "ROUND_TRIPS"]


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
    # Beyond float32's range: infinity, as C's (float)x (struct.pack would raise).
    pytest.param("f32", 1e300, INF, id="f32-overflow"),
    pytest.param("f32", -(2**200), -INF, id="f32-int-overflow"),
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
    pytest.param(
        "bytes", memoryview(array("H", [1, 2])), b"\x01\x00\x02\x00", id="bytes-from-wide-view"
    ),
    pytest.param("bytes", memoryview(b"abcd")[::2], b"ac", id="bytes-from-strided-view"),
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
    pytest.param("bytes", [1, True], WitValueError, "[0, 255]", id="bytes-item-bool"),
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
    pytest.param(
        "shape", Variant(["num"], 1), WitValueError, "no case named", id="variant-unhashable-case"
    ),
    pytest.param("shape", Variant("empty", 1), WitValueError, "no payload", id="variant-payload"),
    pytest.param("shape", Variant("num", "x"), WitTypeError, "case 'num'", id="variant-bad-value"),
    pytest.param("color", "purple", WitValueError, "'purple'", id="enum-unknown"),
    pytest.param("color", 1, WitTypeError, "expects enum", id="enum-from-int"),
    pytest.param("perms", {"read", "bogus"}, WitValueError, "'bogus'", id="flags-unknown"),
    pytest.param("perms", "read", WitTypeError, "expects flags", id="flags-from-str"),
    pytest.param("perms", [["read"]], WitTypeError, "flag names", id="flags-unhashable-item"),
    pytest.param("opt-u32", "x", WitTypeError, "expects u32", id="option-bad-payload"),
    pytest.param("opt-opt", 5, WitTypeError, "Some", id="option-option-bare"),
    pytest.param("res", 5, WitTypeError, "Ok", id="result-bare-value"),
    pytest.param("res", Ok("x"), WitTypeError, "ok: expects u32", id="result-bad-ok"),
    pytest.param("res", Err(5), WitTypeError, "err: expects string", id="result-bad-err"),
    pytest.param("res-list", [Ok(1), 2], WitTypeError, "item 1", id="list-result-bare"),
    pytest.param("res-unit", [Ok(1)], WitValueError, "no payload", id="result-unit-payload"),
]


# Exports whose guest code returns a value its WIT type does not allow (lifting traps).
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

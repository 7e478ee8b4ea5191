"""Values through the bridge, for every WIT value type, in both directions.

Export direction: ``echo-<key>(a: T) -> T`` (a value goes Python -> lower -> guest ->
lift -> Python). Host direction: ``call-h-<key>(a: T) -> T`` passes its argument to the
host function ``h-<key>``, which receives a lifted value and returns one to lower. Also:
conversion errors with the parameter named, invalid values from the guest, and a
top-level ``result<T, E>``.
"""

from __future__ import annotations

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
    U8,
    U32,
    Rec,
    assert_same,
    echo_funcs,
    hooks,
    load,
    seen,
)
from support.values import ERRORS, GUEST_BAD_VALUES, INF, ROUND_TRIPS
from wasmplug import (
    Err,
    ErrorResult,
    Ok,
    Plugin,
    PluginHost,
    PluginTrapped,
    WitTypeError,
    WitValueError,
)
from wasmplug._runtime.plugin import find_export

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

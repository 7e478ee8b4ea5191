"""Host functions: ``result`` returns, conversions of what they return, and their faults."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

import wat as w
from support.bridge import (
    HOST,
    Hue,
    Rec,
    assert_same,
    hooks,
    host_funcs,
    load,
    seen,
)
from wasmplug import (
    Err,
    ErrorResult,
    HostFunctionError,
    LinkError,
    Ok,
    Plugin,
    PluginHost,
    Some,
    Variant,
    WitTypeError,
    WitValueError,
)

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

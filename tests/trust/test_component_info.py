"""Reading a component's import/export names without compiling, checked against wasmtime."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wasmtime.component import Component

from wasmplug import InvalidComponentError
from wasmplug._runtime.compiler import Compiler
from wasmplug._trust import wasm_sections as ws
from wasmplug._trust.component_info import read_component_info

CORE = """
  (core module $m (func (export "one") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func $one (result u32) (canon lift (core func $i "one")))
"""

WATS = {
    "exports-only": f'(component {CORE} (export "one" (func $one)))',
    "everything": f"""
(component
  (import "demo:plugin/host@0.1.2" (instance (export "ping" (func))))
  (import "wasi:random/random@0.2.0" (instance))
  (import "log" (func (param "msg" string)))
  (import "r" (type (sub resource)))
  (type $t (record (field "a" u32)))
  (export "t" (type $t))
  {CORE}
  (export "one" (func $one))
  (export "one-typed" (func $one) (func (result u32)))
  (instance $inst (export "one" (func $one)))
  (export "demo:plugin/api@0.1.0" (instance $inst))
  (export "mod" (core module $m))
)""",
    "nested-component-is-opaque": f"""
(component
  (import "top" (func))
  (component $inner (import "inner-import" (func)) (export "inner-export" (func 0)))
  {CORE}
  (export "one" (func $one))
)""",
    "empty": "(component)",
}

_KINDS = {
    "FuncType": "function",
    "ComponentInstanceType": "instance",
    "ModuleType": "module",
    "ComponentType": "component",
    "ResourceType": "type",
}


def wasmtime_view(component: Component, engine: wasmtime.Engine) -> tuple[dict[str, str], ...]:
    def kinds(items: Mapping[str, object]) -> dict[str, str]:
        return {
            name: _KINDS.get(type(item.ty).__name__, "type")  # type: ignore[attr-defined]
            for name, item in items.items()
        }

    return kinds(component.type.imports(engine)), kinds(component.type.exports(engine))


def our_view(data: bytes) -> tuple[dict[str, str], ...]:
    info = read_component_info(data)
    return {i.name: i.kind for i in info.imports}, {e.name: e.kind for e in info.exports}


@pytest.mark.parametrize("name", sorted(WATS))
def test_matches_wasmtime_on_wat_components(name: str) -> None:
    data = bytes(wasmtime.wat2wasm(WATS[name]))
    engine = wasmtime.Engine()
    assert our_view(data) == wasmtime_view(Component(engine, data), engine)


def test_reports_file_order_and_kinds() -> None:
    info = read_component_info(bytes(wasmtime.wat2wasm(WATS["everything"])))
    assert info.import_names == ["demo:plugin/host@0.1.2", "wasi:random/random@0.2.0", "log", "r"]
    assert [e.kind for e in info.exports] == [
        "type",
        "function",
        "function",
        "instance",
        "module",
    ]
    nested = read_component_info(bytes(wasmtime.wat2wasm(WATS["nested-component-is-opaque"])))
    assert nested.import_names == ["top"]
    assert nested.export_names == ["one"]


@pytest.mark.slow
def test_matches_wasmtime_on_the_greeter(greeter_wasm: Path) -> None:
    data = greeter_wasm.read_bytes()
    # The default compile cache: compiled once per machine.
    compiler = Compiler.standalone()
    expected = wasmtime_view(compiler.compile(data, "greeter"), compiler.engine)
    imports, exports = our_view(data)
    assert (imports, exports) == expected
    assert imports["demo:plugin/host@0.1.0"] == "instance"
    assert exports["greet"] == "function"


def _section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + ws.encode_u32_leb(len(payload)) + payload


def _name(prefix: int, text: str) -> bytes:
    raw = text.encode()
    return bytes([prefix]) + ws.encode_u32_leb(len(raw)) + raw


def test_name_prefixes_and_attributes() -> None:
    attrs = b"\x02" + b"\x01" + _name(0x01, "+build")[1:] + b"\x00" + _name(0x00, "a:b/c")[1:]
    imports = (
        b"\x03"
        + _name(0x00, "a")
        + b"\x01\x00"  # func, type 0
        + _name(0x01, "b:c/d@1.0.0")
        + b"\x05\x00"  # instance, type 0
        + _name(0x02, "e")
        + attrs
        + b"\x03\x01"  # (type (sub resource))
    )
    exports = b"\x01" + _name(0x00, "f") + b"\x01\x02" + b"\x01" + b"\x01\x00"  # typed func
    data = ws.COMPONENT_HEADER + _section(10, imports) + _section(11, exports)
    info = read_component_info(data)
    assert [(i.name, i.kind) for i in info.imports] == [
        ("a", "function"),
        ("b:c/d@1.0.0", "instance"),
        ("e", "type"),
    ]
    assert [(e.name, e.kind) for e in info.exports] == [("f", "function")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than the 8-byte header"),
        (b"garbage!garbage!", "magic"),
        (bytes(wasmtime.wat2wasm("(module)")), "core WebAssembly module, not a component"),
        (ws.COMPONENT_HEADER + _section(10, b"\x01" + _name(0x07, "x")), "unknown prefix"),
        (ws.COMPONENT_HEADER + _section(10, b"\x01" + _name(0, "x") + b"\x09\x00"), "extern type"),
        (ws.COMPONENT_HEADER + _section(10, b"\x02" + _name(0, "x") + b"\x01\x00"), "truncated"),
        (ws.COMPONENT_HEADER + _section(10, b"\x00\x00"), "trailing"),
        (ws.COMPONENT_HEADER + _section(11, b"\x01" + _name(0, "x") + b"\x00\x00\x00"), "core"),
        (ws.COMPONENT_HEADER + _section(11, b"\x01" + _name(0, "x") + b"\x01\x00\x07"), "flag"),
        (ws.COMPONENT_HEADER + _section(10, b"\x01\x00\x02\xff\xfe\x01\x00"), "UTF-8"),
        (ws.COMPONENT_HEADER + _section(0x20, b""), "unknown component section"),
        (ws.COMPONENT_HEADER + b"\x0a\x05\x01", "claims 5 bytes"),
    ],
)
def test_malformed_is_a_clear_invalid_component_error(data: bytes, message: str) -> None:
    with pytest.raises(InvalidComponentError, match=message):
        read_component_info(data)


VALID = bytes(wasmtime.wat2wasm(WATS["everything"]))


def _check(data: bytes) -> None:
    try:
        read_component_info(data)
    except InvalidComponentError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data: bytes) -> None:
    _check(data)
    _check(ws.COMPONENT_HEADER + data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID) - 1), st.integers(0, 255), st.integers(1, len(VALID)))
def test_mutated_and_truncated_components_never_crash(pos: int, byte: int, cut: int) -> None:
    mutated = bytearray(VALID)
    mutated[pos] = byte
    _check(bytes(mutated))
    _check(VALID[:cut])

"""The static capability check at load time: imports vs manifest vs grants vs providers."""

from __future__ import annotations

import pytest
import wasmtime.component

from wasmplug import (
    Grants,
    InvalidComponentError,
    LinkError,
    Manifest,
    PluginHost,
    PluginTrapped,
    UnsignedPluginError,
)
from wasmplug._semver import semver_compatible

IFACE = "demo:x/host@0.1.0"

IMPORTING = b"""
(component
  (import "demo:x/host@0.1.0" (instance $h
    (export "ping" (func (param "x" u32) (result u32)))
    (export "pong" (func))
  ))
  (core func $ping (canon lower (func $h "ping")))
  (core module $m
    (import "h" "ping" (func $p (param i32) (result i32)))
    (func (export "run") (param i32) (result i32) local.get 0 call $p)
  )
  (core instance $hi (export "ping" (func $ping)))
  (core instance $i (instantiate $m (with "h" (instance $hi))))
  (func (export "run") (param "x" u32) (result u32) (canon lift (core func $i "run")))
)
"""

DECLARED = Manifest(name="t", host_interfaces=(IFACE,))


def host_wit(version: str = "0.1.0") -> str:
    """The application's WIT for ``demo:x/host``."""
    return f"""
package demo:x@{version};

interface host {{
    ping: func(x: u32) -> u32;
    pong: func();
}}
"""


class Impl:
    def ping(self, x: int) -> int:
        return x + 1

    def pong(self) -> None:
        return None


def test_declared_and_provided_links(host: PluginHost) -> None:
    host.provide(IFACE, Impl(), wit=host_wit())
    plugin = host.load(IMPORTING, allow_unsigned=True, manifest=DECLARED)
    assert plugin.call("run", 41) == 42


def test_mapping_impl_with_wit_names(host: PluginHost) -> None:
    host.provide(IFACE, {"ping": lambda x: x * 2, "pong": lambda: None})
    plugin = host.load(IMPORTING, allow_unsigned=True, manifest=DECLARED)
    assert plugin.call("run", 21) == 42


def test_undeclared_import_is_refused(host: PluginHost) -> None:
    host.provide(IFACE, Impl(), wit=host_wit())
    with pytest.raises(LinkError, match="not declared in the manifest") as info:
        host.load(IMPORTING, allow_unsigned=True, manifest=Manifest(name="t"))
    assert IFACE in str(info.value)


def test_unprovided_import_is_refused(host: PluginHost) -> None:
    with pytest.raises(LinkError, match="not provided by the application"):
        host.load(IMPORTING, allow_unsigned=True, manifest=DECLARED)


def test_every_missing_function_is_listed(host: PluginHost) -> None:
    host.provide(IFACE, {})
    with pytest.raises(LinkError) as info:
        host.load(IMPORTING, allow_unsigned=True, manifest=DECLARED)
    assert len(info.value.problems) == 2
    assert "ping" in info.value.problems[0]
    assert "pong" in info.value.problems[1]


def test_wrong_arity_is_refused_at_load(host: PluginHost) -> None:
    host.provide(IFACE, {"ping": lambda: 1, "pong": lambda: None})
    with pytest.raises(LinkError, match=r"ping must accept 1 argument\(s\) \(x\)"):
        host.load(IMPORTING, allow_unsigned=True, manifest=DECLARED)


def test_sensitive_interface_needs_a_grant(host: PluginHost) -> None:
    host.provide(IFACE, Impl(), wit=host_wit(), sensitive=True)
    with pytest.raises(LinkError, match="sensitive interface not granted"):
        host.load(IMPORTING, allow_unsigned=True, manifest=DECLARED)
    plugin = host.load(
        IMPORTING,
        allow_unsigned=True,
        manifest=DECLARED,
        grants=Grants(host_interfaces={IFACE}),
    )
    assert plugin.call("run", 1) == 2


def test_semver_compatible_provider_is_used(host: PluginHost) -> None:
    host.provide("demo:x/host@0.1.7", Impl(), wit=host_wit("0.1.7"))
    plugin = host.load(
        IMPORTING, allow_unsigned=True, manifest=Manifest(name="t", host_interfaces=(IFACE,))
    )
    assert plugin.call("run", 1) == 2


def test_incompatible_provider_is_not_used(host: PluginHost) -> None:
    host.provide("demo:x/host@0.2.0", Impl(), wit=host_wit("0.2.0"))
    with pytest.raises(LinkError, match="not provided"):
        host.load(IMPORTING, allow_unsigned=True, manifest=DECLARED)


@pytest.mark.parametrize(
    ("wanted", "offered", "ok"),
    [
        ("a:b/c@1.2.0", "a:b/c@1.9.1", True),
        ("a:b/c@1.2.0", "a:b/c@2.0.0", False),
        ("a:b/c@0.1.0", "a:b/c@0.1.5", True),
        ("a:b/c@0.1.0", "a:b/c@0.2.0", False),
        ("a:b/c@0.0.1", "a:b/c@0.0.2", False),
        ("a:b/c", "a:b/c", True),
        ("a:b/c", "a:b/c@1.0.0", False),
        ("a:b/c@1.0.0", "a:b/d@1.0.0", False),
    ],
    ids=lambda v: str(v),
)
def test_semver_rules(wanted: str, offered: str, ok: bool) -> None:
    assert semver_compatible(wanted, offered) is ok


def test_unsigned_needs_explicit_opt_in(host: PluginHost) -> None:
    with pytest.raises(UnsignedPluginError, match="allow_unsigned=True"):
        host.load(b"(component)")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00asm\x0d\x00\x01\x00garbage", b"(component (oops))", b"\x00asm\x01\x00\x00\x00"],
    ids=["empty", "garbage", "bad-wat", "core-module"],
)
def test_malformed_input_is_a_typed_error(host: PluginHost, data: bytes) -> None:
    with pytest.raises(InvalidComponentError):
        host.load(data, allow_unsigned=True)


WASI_HTTP = b"""
(component
  (import "wasi:http/outgoing-handler@0.2.0" (instance $h (export "handle" (func))))
  (core func $handle (canon lower (func $h "handle")))
  (core module $m
    (import "h" "handle" (func $handle))
    (func (export "ok") (result i32) i32.const 1)
    (func (export "send") (result i32) call $handle i32.const 2))
  (core instance $i (instantiate $m (with "h" (instance (export "handle" (func $handle))))))
  (func (export "ok") (result u32) (canon lift (core func $i "ok")))
  (func (export "send") (result u32) (canon lift (core func $i "send")))
)
"""


def test_wasi_http_is_linked_as_traps_never_for_real(
    host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: object) -> None:
        raise AssertionError("wasi:http must never be linked for real")

    monkeypatch.setattr(wasmtime.component.Linker, "add_wasi_http", refuse, raising=False)
    plugin = host.load(WASI_HTTP, allow_unsigned=True)
    assert plugin.call("ok") == 1
    with pytest.raises(PluginTrapped):
        plugin.call("send")  # the import is there, but calling it traps
    assert plugin.call("ok") == 1, "a fresh instance serves the next call"
    assert plugin.metrics().faults == {"trap": 1}


TYPES_ONLY = b"""
(component
  (import "demo:x/types@0.1.0" (instance $t
    (type $r (record (field "a" u32)))
    (export "r" (type (eq $r)))
  ))
  (core module $m (func (export "one") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)
"""


def test_a_types_only_interface_needs_a_declaration_but_no_provider(host: PluginHost) -> None:
    declared = Manifest(name="t", host_interfaces=("demo:x/types@0.1.0",))
    assert host.load(TYPES_ONLY, allow_unsigned=True, manifest=declared).call("one") == 1
    with pytest.raises(LinkError, match="not declared"):
        host.load(TYPES_ONLY, allow_unsigned=True, manifest=Manifest(name="t"))

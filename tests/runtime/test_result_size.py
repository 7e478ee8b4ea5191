"""Lifting a result counts against the call (issue 9 §7).

A guest can return millions of values, or many list elements that all point at
the same large string, from a few bytes of its own memory. Lifting is bounded by
``Limits.max_result_bytes`` (a typed :class:`ResultTooLarge` fault) and checks the
call's deadline on long lists (:class:`PluginTimeout`).
"""

from __future__ import annotations

import pytest

import wat
from wasmplug import (
    Limits,
    Plugin,
    PluginHost,
    PluginTimeout,
    ResultTooLarge,
)
from wasmplug._bridge import lift
from wasmplug._runtime.instance import Instance
from wat import Func, List, P

# many(n, len) -> list<string>: n strings that all point at the same `len` bytes.
_MANY_BODY = """
      (local $p i32) (local $i i32) (local $need i32)
      (local.set $p (i32.and (i32.add (i32.add (i32.const 1024) (local.get 1)) (i32.const 7))
                             (i32.const -8)))
      (local.set $need (i32.add (local.get $p) (i32.mul (local.get 0) (i32.const 8))))
      (if (i32.gt_u (local.get $need) (i32.mul (memory.size) (i32.const 65536)))
        (then (drop (memory.grow (i32.add (i32.const 1) (i32.shr_u
          (i32.sub (local.get $need) (i32.mul (memory.size) (i32.const 65536)))
          (i32.const 16)))))))
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get 0)))
        (i32.store (i32.add (local.get $p) (i32.mul (local.get $i) (i32.const 8)))
                   (i32.const 1024))
        (i32.store (i32.add (local.get $p) (i32.add (i32.mul (local.get $i) (i32.const 8))
                   (i32.const 4))) (local.get 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (i32.store (i32.const 16) (local.get $p))
      (i32.store (i32.const 20) (local.get 0))
      (i32.const 16)
"""
MANY = Func("many", (("n", P("u32")), ("len", P("u32"))), List(P("string")), _MANY_BODY)
ECHO_BYTES = Func("echo-bytes", (("b", List(P("u8"))),), List(P("u8")))
ECHO_U32 = Func("echo-u32", (("v", List(P("u32"))),), List(P("u32")))
COMPONENT = wat.component(
    [MANY, ECHO_BYTES, ECHO_U32],
    {"test:host/sink": [Func("take", (("s", List(P("string"))),), P("u32"))]},
)


@pytest.fixture
def load(host: PluginHost) -> object:
    received: list[int] = []
    host.provide("test:host/sink", {"take": lambda s: received.append(len(s)) or len(s)})

    def load(limits: Limits) -> Plugin:
        from wasmplug import Manifest

        return host.load(
            COMPONENT.encode(),
            allow_unsigned=True,
            limits=limits,
            manifest=Manifest(name="many", host_interfaces=("test:host/sink",)),
        )

    return load


def test_millions_of_strings_are_refused(load) -> None:  # type: ignore[no-untyped-def]
    """2,200,000 strings (70 MB lifted) under the default 64 MiB cap: refused before
    one of them is decoded."""
    plugin = load(Limits(timeout_ms=None))
    with pytest.raises(ResultTooLarge, match="max_result_bytes=67108864") as info:
        plugin.call("many", 2_200_000, 1)
    assert info.value.fault == "result-size"
    assert info.value.export == "many"
    assert plugin.metrics().faults == {"result-size": 1}
    assert plugin.call("many", 3, 2) == ["\0\0"] * 3  # a fresh instance answers


def test_one_string_many_times_is_refused(load) -> None:  # type: ignore[no-untyped-def]
    """70 list elements pointing at the same 1 MiB: 1 MiB of guest memory, 70 MiB lifted."""
    plugin = load(Limits())
    with pytest.raises(ResultTooLarge):
        plugin.call("many", 70, 2**20)
    assert len(plugin.call("many", 10, 2**20)) == 10


def test_small_cap_counts_contents_and_values(load) -> None:  # type: ignore[no-untyped-def]
    plugin = load(Limits(max_result_bytes=1000))
    assert plugin.call("echo-bytes", b"x" * 1000) == b"x" * 1000
    with pytest.raises(ResultTooLarge):
        plugin.call("echo-bytes", b"x" * 1001)
    assert plugin.call("many", 31, 0) == [""] * 31  # 31 x 32 bytes
    with pytest.raises(ResultTooLarge):
        plugin.call("many", 32, 0)  # 32 x 32 = 1024 bytes
    assert plugin.call("many", 30, 1) == ["\0"] * 30
    assert plugin.call("echo-u32", list(range(31))) == list(range(31))
    with pytest.raises(ResultTooLarge):
        plugin.call("echo-u32", list(range(32)))


def test_host_function_arguments_are_bounded(load) -> None:  # type: ignore[no-untyped-def]
    plugin = load(Limits(max_result_bytes=10_000))
    assert plugin.call("call-take", ["ab"] * 100) == 100
    # The guest's fault, not the host function's: raised as itself, as in a worker.
    with pytest.raises(ResultTooLarge):
        plugin.call("call-take", ["ab"] * 1000)
    assert plugin.metrics().faults == {"result-size": 1}


def test_wasmtime_copy_bound_is_a_result_size_fault(load) -> None:  # type: ignore[no-untyped-def]
    """Past a few million values wasmtime itself refuses to copy the result out."""
    plugin = load(Limits(timeout_ms=None, max_result_bytes=None))
    with pytest.raises(ResultTooLarge, match="too large for wasmtime to lift"):
        plugin.call("many", 3_000_000, 0)


def test_deadline_is_checked_while_lifting(  # type: ignore[no-untyped-def]
    load, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = load(Limits())
    monkeypatch.setattr(Instance, "lift_deadline_s", lambda self: 0.0)  # already passed
    assert len(plugin.call("many", lift.CHUNK, 1)) == lift.CHUNK  # short lists do not check
    with pytest.raises(PluginTimeout, match="while its result was being lifted"):
        plugin.call("many", lift.CHUNK + 1, 1)
    assert plugin.metrics().faults == {"timeout": 1}


def test_process_tier_reports_the_same_faults(host: PluginHost) -> None:
    """In a worker process the cap and the lifting deadline give the same typed faults."""
    from wasmplug import Manifest

    host.provide("test:host/sink", {"take": len})
    plugin = host.load(
        COMPONENT.encode(),
        allow_unsigned=True,
        limits=Limits(max_result_bytes=1000),
        manifest=Manifest(name="many", host_interfaces=("test:host/sink",)),
        isolation="process",
    )
    assert plugin.call("many", 31, 0) == [""] * 31
    with pytest.raises(ResultTooLarge):
        plugin.call("many", 32, 0)
    assert plugin.metrics().faults == {"result-size": 1}
    assert plugin.call("many", 3, 1) == ["\0"] * 3

"""``PluginHost(instance_slots=N)``: wasmtime's pooling allocator, its capacity and sizing."""

from __future__ import annotations

from pathlib import Path

import pytest

import wat
from wasmplug import InstantiationError, Limits, PluginHost
from wasmplug._runtime.engine import pooling_settings
from wat import Func, P

PAGE = 65536
GROW = Func("grow", (("pages", P("u32")),), P("s32"), "(memory.grow (local.get 0))")
SIZE = Func("size", (("x", P("u32")),), P("u32"), "(memory.size)")
ADD = Func(
    "add", (("a", P("s32")), ("b", P("s32"))), P("s32"), "(i32.add (local.get 0) (local.get 1))"
)
COMPONENT = wat.component([ADD, GROW, SIZE]).encode()


def _host(tmp_path: Path, slots: int, limits: Limits | None = None) -> PluginHost:
    return PluginHost(cache_dir=tmp_path / "cache", instance_slots=slots, limits=limits)


def test_fresh_instances_reuse_the_slots(tmp_path: Path) -> None:
    with _host(tmp_path, 2) as host:
        plugin = host.load(COMPONENT, allow_unsigned=True)
        for i in range(20):  # ten times more instances than slots, one at a time
            plugin.reset()
            assert plugin.call("add", i, 1) == i + 1
        assert plugin.metrics().instances == 1


def test_a_slot_starts_with_a_fresh_memory(tmp_path: Path) -> None:
    # The slot's memory is reset when it is reused: the new instance sees the
    # component's initial memory (1 page, the one libc exports), not the old size.
    with _host(tmp_path, 1, Limits(memory_bytes=8 * PAGE)) as host:
        plugin = host.load(COMPONENT, allow_unsigned=True)
        assert plugin.call("grow", 3) == 1
        assert plugin.call("size", 0) == 4
        plugin.reset()
        assert plugin.call("size", 0) == 1


def test_the_memory_limit_still_holds(tmp_path: Path) -> None:
    # Slots are sized by the host's limits; the store's limiter still applies per
    # plugin: memory.grow past the limit fails in the guest (-1), not in Python.
    with _host(tmp_path, 2, Limits(memory_bytes=4 * PAGE)) as host:
        plugin = host.load(COMPONENT, allow_unsigned=True)
        assert plugin.call("grow", 3) == 1
        assert plugin.call("grow", 1) == -1
        small = host.load(COMPONENT, allow_unsigned=True, limits=Limits(memory_bytes=2 * PAGE))
        assert small.call("grow", 2) == -1
        assert small.call("grow", 1) == 1


def test_one_instance_more_than_the_slots_is_refused_and_named(tmp_path: Path) -> None:
    with _host(tmp_path, 1) as host:
        first = host.load(COMPONENT, allow_unsigned=True)
        with pytest.raises(InstantiationError, match=r"instance_slots=1"):
            host.load(COMPONENT, allow_unsigned=True)
        first.close()
        second = host.load(COMPONENT, allow_unsigned=True)  # the slot came back
        assert second.call("add", 2, 3) == 5
        with pytest.raises(InstantiationError, match="instance_slots"):
            host.load(COMPONENT, allow_unsigned=True, pool_size=1)


def test_a_component_larger_than_a_slot_does_not_load(tmp_path: Path) -> None:
    big = wat.component([ADD]).replace('(memory (export "mem") 1)', '(memory (export "mem") 3)')
    assert big != wat.component([ADD])
    with _host(tmp_path, 2, Limits(memory_bytes=2 * PAGE)) as host:
        with pytest.raises(InstantiationError, match="instance slots"):
            host.load(big.encode(), allow_unsigned=True)


def test_instance_slots_must_be_positive() -> None:
    with pytest.raises(ValueError, match="instance_slots"):
        PluginHost(cache_dir=False, instance_slots=0)


def test_pooling_settings_follow_the_limits() -> None:
    got = pooling_settings(10, Limits(memory_bytes=8 * PAGE, memories=2, tables=3, instances=4))
    assert got["total_component_instances"] == 10
    assert got["total_memories"] == 20
    assert got["max_memories_per_component"] == 2
    assert got["max_memory_size"] == 4 * PAGE  # memory_bytes shared by the memories
    assert got["total_tables"] == 30
    assert got["total_core_instances"] == 40
    unbounded = pooling_settings(1, Limits.unlimited())
    assert unbounded["max_memory_size"] == 4 * 2**30
    assert unbounded["max_memories_per_component"] == 1
    assert unbounded["table_elements"] == 100_000

"""Resources declared directly in a world (``resource r`` outside any interface).

Imported ones are defined by the host (a Python class, provided under the
resource's name with the world's WIT, or a mapping of its functions' WIT names);
exported ones are defined by the guest. World-level functions use both.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

import wat as w
from wasmplug import HostInterfaceError, LinkError, Manifest, Plugin, PluginHost, Resource

WORLD_WIT = """
package demo:w@0.1.0;

world plugin {
    resource counter {
        constructor(start: u32);
        get: func() -> u32;
        make: static func(n: u32) -> counter;
    }
    import total: func(c: borrow<counter>) -> u32;
}
"""

MANIFEST = Manifest(name="w", host_interfaces=("counter", "total"))


def importing(extra: str = "") -> str:
    """A component importing world-level resource ``counter`` and function ``total``."""
    return f"""
(component
  (import "counter" (type $c (sub resource)))
  (import "[constructor]counter" (func $ctor (param "start" u32) (result (own $c))))
  (import "[method]counter.get" (func $get (param "self" (borrow $c)) (result u32)))
  (import "[static]counter.make" (func $make (param "n" u32) (result (own $c))))
  (import "total" (func $total (param "c" (borrow $c)) (result u32)))
  {extra}
{w.LIBC}
  (core func $hnew (canon lower (func $ctor)))
  (core func $hget (canon lower (func $get)))
  (core func $hmake (canon lower (func $make)))
  (core func $htotal (canon lower (func $total)))
  (core func $hdrop (canon resource.drop $c))
  (core module $M
    (import "h" "new" (func $new (param i32) (result i32)))
    (import "h" "get" (func $get (param i32) (result i32)))
    (import "h" "make" (func $make (param i32) (result i32)))
    (import "h" "total" (func $total (param i32) (result i32)))
    (import "h" "drop" (func $drop (param i32)))
    (func (export "use-host") (param i32) (result i32) (local $h i32) (local $v i32)
      (local.set $h (call $new (local.get 0)))
      (local.set $v (i32.add (call $get (local.get $h)) (call $total (local.get $h))))
      (call $drop (local.get $h))
      (local.get $v))
    (func (export "make") (param i32) (result i32) (call $make (local.get 0)))
    (func (export "peek") (param i32) (result i32) (local $v i32)
      (local.set $v (call $total (local.get 0)))
      (call $drop (local.get 0))
      (local.get $v)))
  (core instance $m (instantiate $M (with "h" (instance (export "new" (func $hnew))
    (export "get" (func $hget)) (export "make" (func $hmake)) (export "total" (func $htotal))
    (export "drop" (func $hdrop))))))
  (func (export "use-host") (param "start" u32) (result u32) (canon lift (core func $m "use-host")))
  (func (export "make") (param "n" u32) (result (own $c)) (canon lift (core func $m "make")))
  (func (export "peek") (param "c" (borrow $c)) (result u32) (canon lift (core func $m "peek")))
)
"""


class Counter:
    def __init__(self, start: int) -> None:
        self.value = start

    def get(self) -> int:
        return self.value

    @staticmethod
    def make(n: int) -> Counter:
        return Counter(n * 10)

    def reset(self) -> None:  # public, but not in the WIT
        raise AssertionError("reached a method the WIT does not define")


def total(c: Counter) -> int:
    return c.value + 100


@pytest.fixture
def plugin(host: PluginHost) -> Plugin:
    host.provide("counter", Counter, wit=WORLD_WIT, world="plugin")
    host.provide("total", total, wit=WORLD_WIT, world="plugin")
    return host.load(importing().encode(), manifest=MANIFEST, allow_unsigned=True)


def test_imported_world_resource_round_trip(plugin: Plugin) -> None:
    assert plugin.call("use-host", 4) == 4 + 104  # constructor, method, world function
    made = plugin.call("make", 3)  # static, own<counter> returned to Python
    assert isinstance(made, Counter)
    assert made.value == 30
    assert plugin.call("peek", Counter(5)) == 105  # borrow<counter> from Python


def test_imported_world_resource_objects_are_released(plugin: Plugin) -> None:
    made = plugin.call("make", 1)
    ref = weakref.ref(made)
    del made
    gc.collect()
    assert ref() is None


def test_an_unprovided_world_resource_is_a_link_error_at_load(host: PluginHost) -> None:
    host.provide("total", total, wit=WORLD_WIT, world="plugin")
    with pytest.raises(LinkError, match="counter: not provided by the application"):
        host.load(importing().encode(), manifest=MANIFEST, allow_unsigned=True)


def test_an_undeclared_world_resource_is_a_link_error(host: PluginHost) -> None:
    host.provide("counter", Counter, wit=WORLD_WIT, world="plugin")
    host.provide("total", total, wit=WORLD_WIT, world="plugin")
    with pytest.raises(LinkError, match="counter: imported but not declared"):
        host.load(importing().encode(), manifest=Manifest(name="w", host_interfaces=("total",)),
                  allow_unsigned=True)  # fmt: skip


def test_a_world_resource_with_explicit_keys(host: PluginHost) -> None:
    host.provide(
        "counter",
        {
            "[constructor]counter": Counter,
            "[method]counter.get": Counter.get,
            "[static]counter.make": Counter.make,
        },
    )
    host.provide("total", total)
    plugin = host.load(importing().encode(), manifest=MANIFEST, allow_unsigned=True)
    assert plugin.call("use-host", 1) == 102


def test_a_world_resource_class_needs_wit(host: PluginHost) -> None:
    host.provide("counter", Counter)  # a class is callable, but its methods are not explicit
    host.provide("total", total)
    with pytest.raises(LinkError, match="world-level resource is linked with its WIT"):
        host.load(importing().encode(), manifest=MANIFEST, allow_unsigned=True)


@pytest.mark.parametrize(
    "extra",
    [
        '(import "[method]counter.reset" (func (param "self" (borrow $c))))',
        '(import "[static]counter.mro" (func))',
    ],
    ids=["helper-method", "type-attribute"],
)
def test_world_resource_functions_outside_the_wit_are_refused(host: PluginHost, extra: str) -> None:
    host.provide("counter", Counter, wit=WORLD_WIT, world="plugin")
    host.provide("total", total, wit=WORLD_WIT, world="plugin")
    with pytest.raises(LinkError, match="not a function of what the application provides"):
        host.load(importing(extra).encode(), manifest=MANIFEST, allow_unsigned=True)


def test_a_world_function_with_another_type_is_refused(host: PluginHost) -> None:
    text = importing().replace(
        '(import "total" (func $total (param "c" (borrow $c)) (result u32)))',
        '(import "total" (func $total (param "c" (borrow $c)) (result s32)))',
    )
    host.provide("counter", Counter, wit=WORLD_WIT, world="plugin")
    host.provide("total", total, wit=WORLD_WIT, world="plugin")
    with pytest.raises(LinkError, match="total: the plugin imports it as"):
        host.load(text.encode(), manifest=MANIFEST, allow_unsigned=True)


def test_provide_checks_the_world_resource_class(host: PluginHost) -> None:
    class NoMake:
        def __init__(self, start: int) -> None:
            pass

        def get(self) -> int:
            return 0

    with pytest.raises(HostInterfaceError, match="has no static method 'make'"):
        host.provide("counter", NoMake, wit=WORLD_WIT, world="plugin")
    with pytest.raises(HostInterfaceError, match="imports no function or resource named"):
        host.provide("other", NoMake, wit=WORLD_WIT, world="plugin")
    with pytest.raises(HostInterfaceError, match="needs world="):
        host.provide("counter", Counter, wit=WORLD_WIT)


# ---------------------------------------------------------------------------
# Exported by the guest
# ---------------------------------------------------------------------------

EXPORTING = f"""
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
    (func (export "ctor") (param i32) (result i32) (call $new (local.get 0)))
    (func (export "get") (param i32) (result i32) (local.get 0))
    (func (export "take") (param i32 i32) (result i32) (local $v i32)
      (local.set $v (i32.add (call $rep (local.get 0)) (local.get 1)))
      (call $drop (local.get 0))
      (local.get $v)))
  (core instance $m (instantiate $M (with "r" (instance
    (export "new" (func $new)) (export "rep" (func $rep)) (export "drop" (func $drop))))))
  (export $ce "counter" (type $counter))
  (func $ctor (param "start" u32) (result (own $ce)) (canon lift (core func $m "ctor")))
  (func $get (param "self" (borrow $ce)) (result u32) (canon lift (core func $m "get")))
  (func $take (param "c" (own $ce)) (param "extra" u8) (result u32)
    (canon lift (core func $m "take")))
  (export "[constructor]counter" (func $ctor))
  (export "[method]counter.get" (func $get))
  (export "[static]counter.take" (func $take))
{w.LIBC_EXPORTS}
)
"""


def test_exported_world_resource(host: PluginHost) -> None:
    plugin = host.load(EXPORTING.encode(), allow_unsigned=True)
    assert [r.name for r in plugin.shape.export_resources] == ["counter"]
    c = plugin.call("[constructor]counter", 7)
    assert isinstance(c, Resource)
    assert (c.type_name, c.owned) == ("counter", True)
    assert plugin.call("[method]counter.get", c) == 7
    assert plugin.call("[static]counter.take", c, 1) == 8  # own: moved into the guest
    assert not c.alive
    assert plugin.call("drops") == 1


def test_exported_world_resource_dropped_from_python(host: PluginHost) -> None:
    plugin = host.load(EXPORTING.encode(), allow_unsigned=True)
    c: Any = plugin.call("[constructor]counter", 2)
    c.close()  # runs the guest's destructor
    assert plugin.call("drops") == 1

"""Resources across the bridge.

A guest-defined ``counter`` (an exported interface, implemented with ``canon
resource.new/rep/drop``) and a host-defined ``counter`` (imported, implemented by a
Python class).
"""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace
from typing import Any

import pytest

import wat as w
from support.bridge import (
    API,
    HOST,
    load,
)
from wasmplug import (
    Manifest,
    Plugin,
    PluginClosedError,
    PluginHost,
    PluginTrapped,
    Resource,
    StaleResourceError,
    WitTypeError,
    WitValueError,
)

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

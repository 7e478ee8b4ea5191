"""Resources across the bridge.

A guest-defined ``counter`` (an exported interface, implemented with ``canon
resource.new/rep/drop``) and a host-defined ``counter`` (imported, implemented by a
Python class).
"""

from __future__ import annotations

import functools
import gc
import inspect
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import wat as w
from support.bridge import (
    API,
    GUEST_COUNTER,
    HOST,
    load,
)
from support.fakeworker import FakeWorkers
from support.interrupts import interrupted_at
from wasmplug import (
    Limits,
    Manifest,
    Plugin,
    PluginClosedError,
    PluginCrashed,
    PluginHost,
    PluginTrapped,
    Resource,
    ResourceLimitExceeded,
    StaleResourceError,
    WitTypeError,
    WitValueError,
)
from wasmplug._bridge import hostfuncs
from wasmplug._bridge.resources import handle_instance
from wasmplug._bridge.wit import FuncSig
from wasmplug._runtime.callpath import CallPath
from wasmplug._runtime.process.backend import ProcessBackend
from wasmplug._runtime.process.wire import Channel, Op
from wasmplug._runtime.resource_types import attr_name, build_resource_classes

# ---------------------------------------------------------------------------
# Guest-defined resource
# ---------------------------------------------------------------------------

CTOR, GET, TAKE = (
    API + "[constructor]counter",
    API + "[method]counter.get",
    API + "[static]counter.take",
)


poke_hook: list[Callable[[], None]] = []
"""What the host function ``poke`` runs (the guest calls it from ``call-poke``)."""


# The same component plus an unused ``wasi:io/poll`` import: a plugin that could block
# in WASI, whose calls (and destructor runs) therefore go through a call thread.
_POLL_IMPORT = '(import "wasi:io/poll@0.2.0" (instance (export "pollable" (type (sub resource)))))'
GUEST_COUNTER_CALL_THREAD = GUEST_COUNTER.replace("(component\n", f"(component {_POLL_IMPORT}\n", 1)


# No test here is about time, and a host function may run a full gc.collect() of the
# whole test process (seconds on a loaded machine): the default 1 s budget must not
# decide these tests. Still finite, so that a hang fails.
UNHURRIED = Limits(timeout_ms=60_000)


@pytest.fixture(params=["direct", "call-thread", "process"])
def counters(host: PluginHost, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Plugin]:
    """The guest counter in process (calls on the caller's thread or on a call thread)
    and in a worker process: the same handles, methods, drops and staleness."""
    poke_hook.clear()
    impl = {"poke": lambda: poke_hook[0]() if poke_hook else None}
    if request.param == "process":
        with PluginHost(
            cache_dir=tmp_path / "process-cache", isolation="process", spare_workers=0
        ) as process_host:
            process_host.provide(HOST, impl)
            host.provide(HOST, impl)  # for a second, in-process plugin (see below)
            yield load(process_host, GUEST_COUNTER, limits=UNHURRIED)
        poke_hook.clear()
        return
    host.provide(HOST, impl)
    threaded = request.param == "call-thread"
    plugin = load(host, GUEST_COUNTER_CALL_THREAD if threaded else GUEST_COUNTER, limits=UNHURRIED)
    assert plugin._threaded is threaded
    yield plugin
    poke_hook.clear()


def test_guest_resource_constructor_and_methods(counters: Plugin) -> None:
    c = counters.call(CTOR, 7)
    assert isinstance(c, Resource)
    assert (c.type_name, c.owned, c.alive) == ("counter", True, True)
    assert counters.call(GET, c) == 7
    assert counters.exports.api["[method]counter.get"](c) == 7  # borrowing does not consume
    assert counters.call(GET, counters.call(CTOR, 2**32 - 1)) == 2**32 - 1
    assert "alive" in repr(c)


def test_an_interrupt_in_a_handle_call_leaves_its_instance_unlocked(counters: Plugin) -> None:
    """Regression: a call with a handle argument locked the handle's instance with
    ``InstancePool.lock`` and released it in a later ``finally``: Ctrl-C right after
    the lock was taken left it held, and every later call on that instance (or, in a
    pool of one, on the plugin) waited for ever. It is held by a ``with`` statement
    now. Interrupted at every C call of the call path's frames in turn, then the
    handle's instance must be unlocked and the plugin serve calls."""
    codes = {
        CallPath._invoke.__code__,
        CallPath._call_guarded.__code__,
        CallPath._on_thread.__code__,
        CallPath._run_on_thread.__code__,
        inspect.unwrap(CallPath._run).__code__,
        ProcessBackend._invoke_once.__code__,
        ProcessBackend._invoke_on.__code__,
        ProcessBackend._run.__code__,
    }
    k = 1
    while True:
        c = counters.call(CTOR, 7)
        if not interrupted_at(counters, codes, k, call=functools.partial(counters.call, GET, c)):
            break
        inst = handle_instance(c)  # in-process an Instance, else its worker's
        lock = inst.lock if counters._backend is None else inst.worker.lock
        assert not lock.locked(), f"the instance's lock is held after C call {k}"
        # Served again (each call must end within interrupted_at's deadline).
        assert not interrupted_at(counters, (), 1, call=lambda: counters.call(CTOR, 1))
        k += 1
    assert k > (1 if counters._threaded else 3)  # (a call thread runs _run elsewhere)


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
    other = load(host, GUEST_COUNTER, manifest=Manifest(name="other", host_interfaces=(HOST,)))
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


def instance_of(plugin: Plugin) -> Any:
    """The plugin's one instance: in-process, or the worker's as its handles see it."""
    if plugin._backend is not None:
        [worker] = plugin._backend.pool.live()
        return worker.instance
    [inst] = plugin._pool.live()
    return inst


def test_guest_resource_type_is_a_python_class(counters: Plugin) -> None:
    counter_cls = counters.exports.api.Counter
    assert issubclass(counter_cls, Resource)
    assert counter_cls.__name__ == "Counter"
    c = counter_cls(7)
    assert type(c) is counter_cls
    assert (c.type_name, c.owned, c.alive) == ("counter", True, True)
    assert c.get() == 7
    assert c.get_plus(2) == 9  # [method]counter.get-plus
    assert counter_cls.add(c, 1) == 8  # [static]counter.add
    assert counter_cls.get(c) == 7  # an unbound method takes the handle
    assert c.drop_() == 7  # [method]counter.drop does not shadow Resource.drop
    assert "Counter own<counter> alive" in repr(c)
    # Handles from the string form and from any export have the class too.
    assert type(counters.call(CTOR, 1)) is counter_cls
    assert counters.call(API + "[method]counter.get-plus", c, 1) == 8
    # Own parameters still move the handle.
    assert counter_cls.take(c, 2) == 9
    with pytest.raises(StaleResourceError, match="already moved"):
        c.get()
    # take() dropped c in the guest; the temporary from call(CTOR, 1) was collected.
    assert counters.call("drops") == 2


def test_guest_resource_functions_by_exact_wit_name(counters: Plugin) -> None:
    api = counters.exports.api
    c = api.Counter(3)
    assert api["[method]counter.get-plus"](c, 1) == 4
    assert api["[constructor]counter"](5).get() == 5
    with pytest.raises(KeyError):
        api["[method]counter.get_plus"]  # the old half snake-cased form
    assert "Counter" in dir(api)
    assert not any(name.startswith("[") for name in dir(api))
    with pytest.raises(AttributeError, match="no export 'counter'"):
        api.counter  # noqa: B018


def test_guest_resource_class_checks_arguments(counters: Plugin) -> None:
    counter_cls = counters.exports.api.Counter
    with pytest.raises(WitTypeError, match=r"takes 1 argument\(s\) \(start\), got 0"):
        counter_cls()
    with pytest.raises(WitValueError, match="parameter 'start'"):
        counter_cls(-1)
    with pytest.raises(WitTypeError, match=r"parameter 'self' expects borrow<counter>"):
        counter_cls.get(7)
    with pytest.raises(TypeError, match="created by wasmplug"):
        Resource()


def test_guest_resource_drop_and_with_block(counters: Plugin) -> None:
    counter_cls = counters.exports.api.Counter
    c = counter_cls(1)
    c.drop()
    assert counters.call("drops") == 1
    c.drop()  # idempotent
    with pytest.raises(StaleResourceError, match="already moved"):
        c.get()
    with counter_cls(5) as d:
        assert d.get() == 5
    assert counters.call("drops") == 2
    assert not d.alive


def test_garbage_collected_handle_runs_the_destructor(counters: Plugin) -> None:
    counter_cls = counters.exports.api.Counter
    c = counter_cls(1)
    ref = weakref.ref(c)
    del c
    gc.collect()
    assert ref() is None
    # The finalizer did not enter Wasm: the drop waits for a safe point...
    assert len(instance_of(counters).pending_drops) == 1
    # ...which is the start of the next call on that instance.
    assert counters.call("drops") == 1
    assert instance_of(counters).pending_drops == []
    for i in range(10):
        counter_cls(i)  # each temporary is dropped before the next call
    assert counters.call("drops") == 11


# The guest counter plus a handle-free export with a parameter that is no primitive
# (a tuple: the process tier's worker decodes it, so the call is not its plain kind).
GUEST_COUNTER_PAIR = GUEST_COUNTER.replace(
    f'  (export "{API[:-1]}" (instance $api))\n',
    f'''  (export "{API[:-1]}" (instance $api))
  (func $sum (param "p" (tuple u32 u32)) (result u32) (canon lift (core func $m "get-plus")))
  (export "sum" (func $sum))
''',
    1,
)


@pytest.mark.parametrize("tier", ["inprocess", "process"])
def test_collected_handles_are_dropped_before_a_call_of_any_export(
    tier: str, tmp_path: Path
) -> None:
    """Regression (process tier): a CALL carrying garbage-collected handles' drops made
    the worker fail (FAULT "start") when the export named no handle and had only
    primitive types (``drops``, ``call-poke``): it served those inline and refused the
    drops. Each kind of handle-free export takes them, and the destructors run first."""
    with PluginHost(cache_dir=tmp_path / "cache", isolation=tier, spare_workers=0) as host:  # type: ignore[arg-type]
        host.provide(HOST, {"poke": lambda: None})
        plugin = load(host, GUEST_COUNTER_PAIR, limits=UNHURRIED)
        counter_cls = plugin.exports.api.Counter
        kinds = [
            ("call-poke", (), None),  # no parameter, no result
            ("drops", (), "drops"),  # no parameter, a primitive result
            ("sum", ((2, 3),), 5),  # a parameter the worker decodes
        ]
        for dropped, (export, args, result) in enumerate(kinds, start=1):
            counter_cls(1)  # a temporary: collected at once, its drop pending
            gc.collect()
            assert len(instance_of(plugin).pending_drops) == 1
            value = plugin.call(export, *args)
            assert value == (dropped if result == "drops" else result)
            assert instance_of(plugin).pending_drops == []
            assert plugin.call("drops") == dropped  # the destructors ran


def test_handle_dropped_inside_a_call_on_its_instance_waits(counters: Plugin) -> None:
    """A finalizer or drop() can run inside a host function of the same instance;
    neither may re-enter the guest."""
    counter_cls = counters.exports.api.Counter
    held = [counter_cls(1), counter_cls(2)]
    seen: list[int] = []

    def poke() -> None:
        held.pop().drop()  # explicit drop while the instance is running: queued
        held.pop()  # the last reference: the finalizer queues it
        gc.collect()
        seen.append(len(instance_of(counters).pending_drops))

    poke_hook.append(poke)
    counters.call("call-poke")
    assert seen == [2]
    assert counters.call("drops") == 2


def test_handle_collected_on_another_thread(counters: Plugin) -> None:
    held = [counters.exports.api.Counter(1)]
    worker = threading.Thread(target=lambda: (held.clear(), gc.collect()))
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert counters.call("drops") == 1


def test_moved_or_stale_handles_are_not_dropped_again(counters: Plugin) -> None:
    counter_cls = counters.exports.api.Counter
    c = counter_cls(40)
    assert counter_cls.take(c, 2) == 42
    del c
    gc.collect()
    assert counters.call("drops") == 1  # only the guest's own drop
    d = counter_cls(1)
    counters.reset()
    del d
    gc.collect()
    assert counters.call("drops") == 0  # a fresh instance; the old one took d with it


def test_pending_drops_are_freed_when_the_instance_goes(counters: Plugin) -> None:
    inst = instance_of(counters)
    c = counters.exports.api.Counter(1)
    del c
    gc.collect()
    assert len(inst.pending_drops) == 1
    counters.close()
    assert inst.pending_drops == []


def test_trapping_destructor_on_drop(counters: Plugin) -> None:
    counter_cls = counters.exports.api.Counter
    keep = counter_cls(1)
    bad = counter_cls(0xDEAD)
    with pytest.raises(PluginTrapped) as info:
        bad.drop()
    assert "destructor" in "".join(info.value.__notes__)
    assert not keep.alive, "the instance was discarded"
    assert counters.metrics().faults == {"trap": 1}
    assert counter_cls(2).get() == 2


def test_trapping_destructor_after_garbage_collection(counters: Plugin) -> None:
    counter_cls = counters.exports.api.Counter
    bad = counter_cls(0xDEAD)
    del bad
    gc.collect()
    with pytest.raises(PluginTrapped) as info:
        counters.call("tick")
    assert "destructor" in "".join(info.value.__notes__)
    assert counters.call("drops") == 0  # a fresh instance
    assert counter_cls(2).get() == 2


def test_resource_class_without_constructor() -> None:
    sig = FuncSig("[method]token.peek", (), None)
    classes, plain = build_resource_classes("api", ["token"], [(sig, lambda *a: 1)])
    assert plain == {}
    token = classes["token"]
    with pytest.raises(TypeError, match="'token' has no constructor"):
        token()
    # Names that would shadow the handle's own attributes, or are keywords.
    assert [attr_name(n) for n in ("drop", "close", "alive", "class", "get-a")] == [
        "drop_",
        "close_",
        "alive_",
        "class_",
        "get_a",
    ]


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
      (local.get $v))
    ;; Construct n host counters and keep every handle.
    (func (export "hoard") (param i32) (result i32) (local $i i32)
      (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get 0)))
        (drop (call $new (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
      (local.get $i)))
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
  (func $hoard (param "n" u32) (result u32) (canon lift (core func $m "hoard")))
  (export "hoard" (func $hoard))
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


COUNTER_WIT = """
package demo:x@0.1.0;

interface host {
    resource counter {
        constructor(start: u32);
        get: func() -> u32;
        make: static func(n: u32) -> counter;
    }
}
"""


@pytest.fixture(params=["inprocess", "process"])
def host_counters(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Plugin]:
    """In both isolation tiers: with ``isolation="process"`` the objects stay in this
    process and the worker holds ids, and nothing is retained longer than in-process."""
    Counter.log = []
    with PluginHost(cache_dir=tmp_path / "cache", isolation=request.param, spare_workers=0) as host:
        host.provide(HOST, SimpleNamespace(Counter=Counter), wit=COUNTER_WIT)
        yield load(host, HOST_COUNTER)


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


def test_host_resources_returned_again_and_again(host_counters: Plugin) -> None:
    """Regression (process tier): the worker's stand-in for a host object it handed
    back as ``own`` died as the reply was built, and its DROP reached the application
    before the RESULT naming the object: "no counter object with id 1", worker killed.
    Handing an object back gives it up; no id stays in the application's table."""
    made = [host_counters.call("make", i) for i in range(5)]
    assert [c.value for c in made] == [0, 10, 20, 30, 40]
    assert [host_counters.call("peek", c) for c in made] == [0, 10, 20, 30, 40]
    assert host_counters.call("take", made[0]) == 0
    assert host_counters.call("use-host", 6) == 6
    backend = host_counters._backend
    if backend is not None:  # each object left the worker's table as the worker let go
        assert [w.objects for w in backend.pool.live()] == [{}]


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


def host_objects_held(plugin: Plugin) -> int:
    """Host objects the application keeps for the plugin's instances (in-process: the
    bridge's table of them; process tier: each worker's)."""
    if plugin._backend is not None:
        return sum(len(worker.objects) for worker in plugin._backend.pool.live())
    return sum(1 for obj in list(hostfuncs._HOST_OBJECTS.values()) if isinstance(obj, Counter))


@pytest.mark.parametrize("isolation", ["inprocess", "process"])
def test_a_guest_hoarding_host_objects_stops_at_the_limit(isolation: str, tmp_path: Path) -> None:
    """Regression: a guest calling a host constructor in a loop, keeping every handle,
    grew the application's table of host objects without bound (in the process tier
    a worker that never reported them dropped kept them for as long as it lived).
    ``Limits.host_objects`` bounds what one instance holds, alike in both tiers: the
    host call past it fails the call with ResourceLimitExceeded, the instance is
    discarded, and its objects are released."""
    Counter.log = []
    with PluginHost(cache_dir=tmp_path / "cache", isolation=isolation, spare_workers=0) as host:
        host.provide(HOST, SimpleNamespace(Counter=Counter), wit=COUNTER_WIT)
        plugin = load(host, HOST_COUNTER, limits=Limits(host_objects=8))
        assert plugin.call("hoard", 8) == 8  # up to the limit
        assert host_objects_held(plugin) == 8
        with pytest.raises(ResourceLimitExceeded, match=r"Limits\.host_objects=8 ") as caught:
            plugin.call("hoard", 1)
        assert (caught.value.plugin, caught.value.export) == (plugin.name, "hoard")
        assert host_objects_held(plugin) == 0  # released with the discarded instance
        with pytest.raises(ResourceLimitExceeded, match="host_objects"):
            plugin.call("hoard", 9)
        assert plugin.call("hoard", 3) == 3  # a fresh instance
        del Counter.log[:]


def test_the_host_object_limit_defaults_to_the_table_limit() -> None:
    assert Limits().host_objects == Limits().table_elements == 100_000
    assert Limits.unlimited().host_objects is None


def test_a_worker_that_never_reports_host_objects_dropped_is_bounded(
    tmp_path: Path, fake_workers: FakeWorkers
) -> None:
    """A compromised worker calls the host constructor in a loop and never reports an
    id dropped: the host call past ``Limits.host_objects`` fails, the worker that
    goes on anyway is killed, and the application keeps none of the objects."""
    replies: list[bool] = []
    ctor: list[int] = []

    def hoard(chan: Channel, _end: Any) -> None:
        chan.recv()  # the CALL
        for i in range(20):
            chan.send([Op.HOSTCALL, ctor[0], [i]])
            reply = chan.recv()
            replies.append(reply[1])
            if not reply[1]:
                break
        chan.send([Op.HOSTCALL, ctor[0], [99]])  # it carries on regardless

    fake_workers.install(hoard)
    Counter.log = []
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as host:
        host.provide(HOST, SimpleNamespace(Counter=Counter), wit=COUNTER_WIT)
        plugin = load(host, HOST_COUNTER, limits=Limits(host_objects=8))
        assert plugin._backend is not None
        [(_, names)] = plugin._backend._host_calls.wanted
        ctor.append(names.index("[constructor]counter"))
        with pytest.raises(PluginCrashed, match="a host call after a host function failed"):
            plugin.call("use-host", 1)
        assert replies == [True] * 8 + [False]
        assert host_objects_held(plugin) == 0
        assert plugin.call("hoard", 3) == 3  # a real worker
        del Counter.log[:]

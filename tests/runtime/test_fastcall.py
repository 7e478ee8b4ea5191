"""The generated per-export call functions (``_runtime/fastcall.py``).

Every other test calls through them too; these pin what is particular to them:
which exports get one, that an argument the fast path refuses is still reported by
the general path naming the parameter (on the same instance, which survives), and
that results, faults and counters are the general path's.
"""

from __future__ import annotations

import enum
import functools
import math
import threading
import time
from typing import Any

import pytest

import wat as w
from support.bridge import load
from support.interrupts import (
    interrupt_every_c_call,
    interrupt_every_reset,
    interrupted_at,
    served_elsewhere,
)
from wasmplug import (
    Limits,
    Plugin,
    PluginError,
    PluginHost,
    PluginTimeout,
    PluginTrapped,
    WitTypeError,
    WitValueError,
)
from wasmplug._bridge import callctx as _callctx
from wasmplug._runtime.callpath import CallPath, _pack_numbers
from wasmplug._runtime.plugin import find_export
from wasmplug._runtime.pool import InstancePool

ADD = w.Func(
    "add",
    (("a", w.P("s32")), ("b", w.P("s32"))),
    w.P("s32"),
    "(i32.add (local.get 0) (local.get 1))",
)
MIX = w.Func("mix", (("n", w.P("u8")), ("x", w.P("f64"))), w.P("f64"), "(local.get 1)")
WIDE = w.Func("wide", (("v", w.P("u64")),), w.P("u64"))
CHAR = w.Func("echo-char", (("c", w.P("char")),), w.P("char"))
TEXT = w.Func("echo-text", (("s", w.P("string")),), w.P("string"))
FLAG = w.Func("echo-bool", (("b", w.P("bool")),), w.P("bool"))
SPIN = w.Func("spin", (), None, "(loop $l (br $l))")
BURN = w.Func(  # n iterations of a loop: fuel in proportion to n
    "burn",
    (("n", w.P("u32")),),
    None,
    "(loop $l (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br_if $l (local.get 0)))",
)
COMPONENT = w.component([ADD, MIX, WIDE, CHAR, TEXT, FLAG, SPIN, BURN])


class Small(enum.IntEnum):
    SEVEN = 7


@pytest.fixture
def plugin(host: PluginHost) -> Plugin:
    return load(host, COMPONENT)


def test_in_process_exports_get_a_generated_function(plugin: Plugin) -> None:
    for name, args in [("add", (1, 2)), ("echo-text", ("x",)), ("tick", ()), ("echo-char", ("c",))]:
        plugin.call(name, *args)
        bound = find_export(plugin, name).bound
        assert bound is not None, name
        assert not isinstance(bound, functools.partial), name
        assert bound.__name__ == f"call_{name}"


def test_results_match_python(plugin: Plugin) -> None:
    assert plugin.call("add", 2**31 - 1, -(2**31) + 1) == 0
    assert plugin.call("add", -5, 3) == -2
    assert plugin.exports.add(40, 2) == 42
    assert plugin.call("mix", 255, 0.5) == 0.5
    assert plugin.call("mix", 0, 3) == 3.0  # an int for an f64
    assert plugin.call("mix", Small.SEVEN, 1.0) == 1.0  # an int subclass: the general path
    assert plugin.call("wide", 2**64 - 1) == 2**64 - 1
    assert plugin.call("echo-char", "é") == "é"
    assert plugin.call("echo-text", "héllo" * 300) == "héllo" * 300
    assert plugin.call("echo-text", "") == ""
    # A result is read by its length (an embedded NUL, 4-byte UTF-8), and a shorter one
    # after a longer one is not padded with the longer one's tail.
    assert plugin.call("echo-text", "a\x00b\U0001d11e" * 3) == "a\x00b\U0001d11e" * 3
    assert plugin.call("echo-text", "z") == "z"
    assert plugin.call("echo-bool", True) is True


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((True, 1), WitTypeError, "parameter 'a' expects s32"),
        ((1, 2**31), WitValueError, "parameter 'b' expects s32"),
        ((-(2**31) - 1, 0), WitValueError, "parameter 'a' expects s32"),
        ((1, 1.5), WitTypeError, "parameter 'b' expects s32"),
        ((1, "2"), WitTypeError, "parameter 'b' expects s32"),
        ((1,), WitTypeError, "takes 2 argument"),
        ((1, 2, 3), WitTypeError, "takes 2 argument"),
    ],
)
def test_refused_arguments_name_the_parameter_and_keep_the_instance(
    plugin: Plugin,
    args: tuple[object, ...],
    error: type[Exception],
    message: str,
) -> None:
    before = plugin.call("tick")
    with pytest.raises(error, match=message):
        plugin.call("add", *args)
    assert plugin.call("tick") == before + 1  # the same instance: its state survived
    metrics = plugin.metrics()
    assert not metrics.faults
    assert metrics.instances == 1
    assert plugin.call("add", 1, 2) == 3


def test_refused_float_and_string_arguments(plugin: Plugin) -> None:
    with pytest.raises(WitTypeError, match="parameter 'x' expects f64"):
        plugin.call("mix", 1, "0.5")
    with pytest.raises(WitValueError, match="parameter 'n' expects u8"):
        plugin.call("mix", 256, 0.5)
    with pytest.raises(WitTypeError, match="parameter 'n' expects u8"):
        plugin.call("mix", False, 0.5)
    with pytest.raises(WitValueError, match="parameter 'x' expects f64: the int is too large"):
        plugin.call("mix", 1, 10**400)  # too large for a float
    with pytest.raises(WitTypeError, match="parameter 's' expects string"):
        plugin.call("echo-text", b"bytes")
    with pytest.raises(WitValueError, match="parameter 's' expects string"):
        plugin.call("echo-text", "\ud800")  # a lone surrogate
    assert not plugin.metrics().faults
    assert plugin.call("echo-text", "ok") == "ok"


def test_faults_and_counters_are_the_general_paths(host: PluginHost) -> None:
    plugin = load(host, COMPONENT)
    plugin.call("tick")
    with pytest.raises(PluginTrapped):
        plugin.call("crash")
    assert plugin.call("tick") == 1  # a fresh instance
    metrics = plugin.metrics()
    assert metrics.faults == {"trap": 1}
    assert metrics.restarts == 1
    assert metrics.calls == 2  # the two ticks; the trapped call did not return

    host.close()
    with PluginHost(cache_dir=False, limits=Limits(timeout_ms=50)) as timed:
        spinner = load(timed, COMPONENT)
        for _ in range(2):  # the deadline is armed afresh on every call
            with pytest.raises(PluginTimeout):
                spinner.call("spin")
            assert spinner.call("add", 1, 2) == 3
        assert math.isclose(spinner.call("mix", 1, 2.5), 2.5)


def test_fuel_is_refilled_before_every_call() -> None:
    from wasmplug import FuelExhausted

    with PluginHost(cache_dir=False, consume_fuel=True) as fueled:
        plugin = load(fueled, COMPONENT, limits=Limits(fuel=100_000))
        # The largest power of two of iterations that fits the budget: each such call
        # burns more than half of it.
        n = 1024
        while True:
            try:
                plugin.call("burn", n * 2)
            except FuelExhausted:
                break
            n *= 2
        assert n >= 4096
        bound = find_export(plugin, "burn").bound
        assert bound is not None
        assert bound.__name__ == "call_burn"  # the generated path
        plugin.call("burn", n)  # on a fresh instance (the fault discarded the last one)
        [inst] = plugin._pool.live()
        for _ in range(5):  # without a refill, the first of these would run out
            plugin.call("burn", n)
        assert plugin._pool.live() == [inst]
        assert plugin.metrics().faults == {"fuel": 1}


def test_string_results_within_the_budget(host: PluginHost) -> None:
    from wasmplug import ResultTooLarge
    from wasmplug._bridge import ffi
    from wasmplug._runtime.fastcall import LINGER

    limits = Limits(max_result_bytes=LINGER + 1000)
    with PluginHost(cache_dir=False, limits=limits) as small:
        plugin = load(small, COMPONENT)
        ex = find_export(plugin, "echo-text")
        assert ex is not None
        assert plugin.call("echo-text", "ab") == "ab"
        (inst,) = plugin._pool.live()
        buf = inst.buffers[ex.index]
        assert buf.result.kind == ffi.STRING  # a short result stays until the next call
        big = "x" * (LINGER + 1)
        assert plugin.call("echo-text", big) == big
        assert buf.result.kind == ffi.BOOL  # a long one is deleted at once
        for too_big in ("y" * (LINGER + 1001), "z" * (LINGER + 50_000)):
            with pytest.raises(ResultTooLarge):
                plugin.call("echo-text", too_big)
            assert buf.result.kind == ffi.BOOL
        assert plugin.metrics().faults == {"result-size": 2}
        assert plugin.call("echo-text", "ok") == "ok"
        (inst,) = plugin._pool.live()
        buf = inst.buffers[ex.index]
        assert buf.result.kind == ffi.STRING
        buf.free()  # what closing the instance does with buffers it does not keep
        assert buf.result.kind == ffi.BOOL
    with PluginHost(cache_dir=False, limits=Limits(max_result_bytes=10)) as tiny:
        plugin = load(tiny, COMPONENT)
        with pytest.raises(ResultTooLarge):
            plugin.call("echo-text", "x" * 11)
        assert plugin.call("echo-text", "x" * 10) == "x" * 10


# The pool's common case is inlined (InstancePool.hot_path); the cases below take
# the pool's own methods from inside the generated function.


def test_a_queued_instance_discarded_elsewhere_is_skipped(plugin: Plugin) -> None:
    pool = plugin._pool
    [inst] = pool.live()
    assert inst.lock.acquire(timeout=5)  # as a resource call does, while it sits idle in the queue
    pool.discard(inst)
    inst.lock.release()
    assert plugin.call("add", 1, 2) == 3
    [fresh] = pool.live()
    assert fresh is not inst
    assert fresh.alive
    assert not fresh.lock.locked()
    assert not inst.lock.locked()
    assert plugin.call("add", 2, 2) == 4
    assert pool.live() == [fresh]


def test_a_call_waits_for_an_idle_instance_locked_elsewhere(plugin: Plugin) -> None:
    pool = plugin._pool  # pool_size=1
    [inst] = pool.live()
    assert inst.lock.acquire(timeout=5)
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(plugin.call("add", 3, 4)))
    thread.start()
    thread.join(0.05)  # waiting for the lock (a pool of one: its slot stays queued)
    assert thread.is_alive()
    assert out == []
    assert pool._slots.qsize() == 1
    inst.lock.release()
    thread.join(5.0)
    assert out == [7]
    assert pool.live() == [inst]
    assert not inst.lock.locked()


@pytest.mark.parametrize("pool_size", [1, 2])
def test_an_interrupt_after_any_c_call_leaves_no_instance_held(
    host: PluginHost, pool_size: int
) -> None:
    """Ctrl-C landing right after any C call of the generated function leaves the
    plugin usable: no lock or slot is left held (a pool of one: its instance's lock;
    a larger pool: a slot taken from the queue, then its instance's lock)."""
    plugin = host.load(COMPONENT.encode(), allow_unsigned=True, pool_size=pool_size)
    assert plugin.call("add", 1, 2) == 3
    bound = find_export(plugin, "add").bound
    assert bound is not None
    assert interrupt_every_c_call(plugin, {bound.__code__}, pool_size) > 2
    assert served_elsewhere(plugin)
    pool = plugin._pool
    assert pool._slots.qsize() == pool_size
    assert not any(inst.lock.locked() for inst in pool.live())


def test_an_interrupt_after_any_c_call_of_the_general_path_leaves_no_instance_held(
    plugin: Plugin,
) -> None:
    """The same for the general path of a pool of one on its existing instance, at
    every C call of its own frames (admission, the instance, lowering, the call).
    Making a new instance: see the next test."""
    assert plugin.call("add", 1, 2) == 3
    codes = {
        CallPath._invoke.__code__,
        CallPath._admit.__code__,
        CallPath._call_solo.__code__,
        CallPath._run.__code__,
        _pack_numbers.__code__,
    }
    k = 1
    while interrupted_at(plugin, codes, k, general=True):
        assert served_elsewhere(plugin), f"not served after an interrupt at C call {k}"
        plugin.call("add", 1, 2)  # an instance again (making one is not under test)
        k += 1
    assert k > 5
    assert served_elsewhere(plugin)


POOL_CODES = {
    InstancePool.run.__code__,
    InstancePool._new.__code__,
    InstancePool._discard.__code__,
    InstancePool.ready_solo.__code__,
}
"""The pool's own frames on a call's way: taking a slot and a lock, making an instance."""


@pytest.mark.parametrize("pool_size", [1, 2])
def test_an_interrupt_anywhere_in_the_pool_leaves_no_instance_held_or_lost(
    host: PluginHost, pool_size: int
) -> None:
    """Regression: the general path took an instance with ``InstancePool.checkout``,
    which returned it with its lock held: Ctrl-C right after the lock was taken
    (or as ``checkout`` returned) put the slot back with the lock still held, or kept
    both, and the next call on that slot waited for ever; an interrupt as ``new()``
    returned left its instance alive without a slot. Each try here makes its instance
    (none is idle), at ``pool_size`` 1 (``ready_solo``) and 2."""
    plugin = host.load(COMPONENT.encode(), allow_unsigned=True, pool_size=pool_size)
    codes = POOL_CODES | {CallPath._invoke.__code__, CallPath._call_guarded.__code__}
    assert interrupt_every_c_call(plugin, codes, pool_size, general=True, fresh=True) > 2
    assert interrupt_every_c_call(plugin, codes, pool_size, fresh=True) > 2  # the fast path


@pytest.mark.parametrize("pool_size", [1, 2])
def test_an_interrupt_during_reset_leaves_no_instance_held(
    host: PluginHost, pool_size: int
) -> None:
    """Regression: ``InstancePool.drain`` (``reset()``, ``close()``) took each idle
    instance's lock with ``acquire(blocking=False)`` and released it in a ``try``
    after: Ctrl-C right after the acquire left the lock held, and the next call on
    that instance waited for ever."""
    plugin = host.load(COMPONENT.encode(), allow_unsigned=True, pool_size=pool_size)
    codes = {InstancePool.drain.__code__, InstancePool._discard.__code__}
    assert interrupt_every_reset(plugin, codes, pool_size) >= 2


def test_calls_past_the_pool_size_wait_for_a_busy_instance(plugin: Plugin) -> None:
    pool = plugin._pool
    inst = pool.checkout()  # busy: the queue is empty
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(plugin.call("add", 5, 6)))
    thread.start()
    thread.join(0.05)
    assert out == []
    pool.checkin(inst)
    thread.join(5.0)
    assert out == [11]
    assert pool.live() == [inst]


def test_an_instance_checked_in_after_close_is_discarded(plugin: Plugin) -> None:
    pool = plugin._pool
    [inst] = pool.live()
    plugin.call("add", 1, 1)  # bound
    pool.closed = True  # as close() does first, while this call would be running
    try:
        assert find_export(plugin, "add").bound((1, 2)) == 3
        assert not inst.alive
        assert pool.live() == []
    finally:
        plugin.close()


class _Spin:
    """A ``spin`` call (it times out) on a thread of its own, seen in flight on ``ticker``."""

    def __init__(self, spinner: Plugin, ticker: Any) -> None:
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(spinner,))
        self.thread.start()
        deadline = time.monotonic() + 10
        while not ticker.running():
            assert time.monotonic() < deadline, "the call never showed as in flight"
            time.sleep(0.001)

    def _run(self, spinner: Plugin) -> None:
        try:
            spinner.call("spin")
        except PluginTimeout as e:
            self.errors.append(e)

    def join(self) -> None:
        """Wait for the call's timeout (it must come)."""
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        assert len(self.errors) == 1


def test_a_call_is_in_flight_for_the_ticker_exactly_while_it_runs() -> None:
    """The thread's current-instance entry is the ticker's only "in flight" signal on
    this path: present while the guest spins (so the deadline fires), gone after."""
    with PluginHost(cache_dir=False, limits=Limits(timeout_ms=300)) as timed:
        spinner = load(timed, COMPONENT)
        ticker = timed._services.ticker
        assert spinner.call("add", 1, 2) == 3
        assert ticker.running() == []
        spin = _Spin(spinner, ticker)
        (inst,) = ticker.running()
        assert getattr(inst, "plugin", None) is spinner
        assert not ticker.in_flight  # one registration, not two
        spin.join()
        assert ticker.running() == []
        assert spin.thread.ident not in _callctx.running  # (other tests' stuck threads may be)


def test_a_ticker_ticks_only_for_its_own_hosts_calls() -> None:
    """``callctx.running`` holds every host's calls: a call spinning in one host
    neither shows as in flight on another host's ticker nor makes it tick."""
    with (
        PluginHost(cache_dir=False, limits=Limits(timeout_ms=300)) as timed,
        PluginHost(cache_dir=False) as other,
    ):
        spinner = load(timed, COMPONENT)
        assert load(other, COMPONENT).call("add", 1, 2) == 3
        other_ticker = other._services.ticker
        spin = _Spin(spinner, timed._services.ticker)
        assert other_ticker.running() == []
        before = other_ticker.epoch
        spin.join()
        # About 300 ticks if it ticked for the other host's call (the old code); none here.
        assert other_ticker.epoch - before < 30


def test_call_by_name_keeps_its_lookup_per_plugin(host: PluginHost) -> None:
    one, two = load(host, COMPONENT), load(host, COMPONENT)
    assert one.call("add", 1, 2) == 3
    assert two.call("add", 3, 4) == 7
    assert one._bound_calls["add"] is not two._bound_calls["add"]
    with pytest.raises(PluginError, match="nope"):
        one.call("nope")
    assert "nope" not in one._bound_calls

"""The epoch ticker (``_runtime/engine.py``): it times only calls it sees running at two
looks in a row, so short back-to-back calls cost no ticks, and a long call is still
ended at its deadline, whatever short calls run around it or inside it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from support.timing import LOAD_SLACK_S
from wasmplug import Limits, Manifest, Plugin, PluginHost, PluginTimeout
from wasmplug._runtime.engine import EpochTicker

# A guest that calls the host function ``cb`` in a loop for ever, and one that adds.
LOOPER = """
(component
  (import "cb" (func $cb (param "x" u32) (result u32)))
  (core func $cb_lowered (canon lower (func $cb)))
  (core module $m
    (import "host" "cb" (func $cb (param i32) (result i32)))
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "spin") (loop $l br $l))
    (func (export "loop-cb") (loop $l (drop (call $cb (i32.const 1))) (br $l))))
  (core instance $host (export "cb" (func $cb_lowered)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add")))
  (func (export "spin") (canon lift (core func $i "spin")))
  (func (export "loop-cb") (canon lift (core func $i "loop-cb")))
)
"""


def load(
    host: PluginHost, name: str, cb: Callable[[int], int], limits: Limits | None = None
) -> Plugin:
    """The looper as plugin ``name``, its ``cb`` import served by ``cb`` (under its own
    interface name, so that two of them on one host each have theirs)."""
    iface = f"cb-{name}"
    host.provide(iface, cb)
    text = LOOPER.replace('(import "cb"', f'(import "{iface}"')
    manifest = Manifest(name=name, version="0.1.0", host_interfaces=(iface,))
    return host.load(text.encode(), allow_unsigned=True, manifest=manifest, limits=limits)


# The promise (docs/crash-isolation.md): a timeout fires up to the idle poll (10 ms)
# plus a tick late; plus room for a loaded machine.
LATE_S = 0.011 + LOAD_SLACK_S


def test_short_back_to_back_calls_do_not_make_it_tick(host: PluginHost) -> None:
    plugin = load(host, "looper", lambda x: x)
    ticker = plugin._ticker
    plugin.call("add", 1, 2)
    before, start = ticker.epoch, time.monotonic()
    while time.monotonic() - start < 0.3:
        for _ in range(100):
            plugin.call("add", 1, 2)
    elapsed_ms = (time.monotonic() - start) * 1000
    # It used to tick through them: about one tick per millisecond.
    assert ticker.epoch - before < elapsed_ms / 3


@pytest.mark.parametrize("timeout_ms", [20, 200])
def test_a_long_call_after_short_ones_ends_at_its_deadline(
    host: PluginHost, timeout_ms: int
) -> None:
    plugin = load(host, "looper", lambda x: x, Limits(timeout_ms=timeout_ms))
    for _ in range(2000):
        plugin.call("add", 1, 2)
    start = time.monotonic()
    with pytest.raises(PluginTimeout):
        plugin.call("spin")
    elapsed = time.monotonic() - start
    assert timeout_ms / 1000 <= elapsed < timeout_ms / 1000 + LATE_S


@pytest.mark.parametrize("where", ["same host", "another host"])
def test_a_call_whose_host_function_makes_short_calls_ends_at_its_deadline(
    host: PluginHost, where: str
) -> None:
    """The looks find the nested calls (a new one each time, perhaps on another host's
    engine) current on the thread; the outer call, whose deadline counts, is still the
    one running."""
    other = PluginHost(cache_dir=False) if where == "another host" else host
    try:
        adder = load(other, "adder", lambda x: x)
        nested = 0

        def cb(x: int) -> int:
            nonlocal nested
            for _ in range(20):
                adder.call("add", 1, 2)
            nested += 20
            return x

        outer = load(host, "outer", cb, Limits(timeout_ms=200))
        start = time.monotonic()
        with pytest.raises(PluginTimeout):
            outer.call("loop-cb")
        elapsed = time.monotonic() - start
        assert nested > 0
        assert 0.2 <= elapsed < 0.2 + LATE_S
    finally:
        if other is not host:
            other.close()


def test_close_stops_the_thread_at_once_and_is_idempotent() -> None:
    from wasmtime import Engine

    ticker = EpochTicker(Engine(), tick_ms=1.0, idle_poll_ms=10_000)
    start = time.monotonic()
    ticker.close()
    assert not ticker._thread.is_alive()
    assert time.monotonic() - start < 1.0  # not the 10 s poll
    ticker.close()
    closers = [threading.Thread(target=ticker.close) for _ in range(4)]
    for t in closers:
        t.start()
    for t in closers:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in closers)

"""The epoch ticker (``_runtime/engine.py``): it times only calls it sees running at two
looks in a row, so short back-to-back calls cost no ticks, and a long call is still
ended at its deadline, whatever short calls run around it or inside it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from support.timing import LOAD_SLACK_S
from wasmplug import Limits, Manifest, Plugin, PluginHost, PluginTimeout
from wasmplug._runtime import engine
from wasmplug._runtime.engine import EpochTicker
from wasmplug._runtime.process import backend as backend_module

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
    host: PluginHost,
    name: str,
    cb: Callable[[int], int],
    limits: Limits | None = None,
    isolation: Literal["inprocess", "process"] | None = None,
) -> Plugin:
    """The looper as plugin ``name``, its ``cb`` import served by ``cb`` (under its own
    interface name, so that two of them on one host each have theirs)."""
    iface = f"cb-{name}"
    host.provide(iface, cb)
    text = LOOPER.replace('(import "cb"', f'(import "{iface}"')
    manifest = Manifest(name=name, version="0.1.0", host_interfaces=(iface,))
    return host.load(
        text.encode(), allow_unsigned=True, manifest=manifest, limits=limits, isolation=isolation
    )


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
    assert ticker.epoch - before < elapsed_ms / 2


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
    ticker.start()
    thread = ticker._thread
    assert thread is not None
    assert thread.is_alive()
    start = time.monotonic()
    ticker.close()
    assert not thread.is_alive()
    assert time.monotonic() - start < 1.0  # not the 10 s poll
    ticker.close()
    closers = [threading.Thread(target=ticker.close) for _ in range(4)]
    for t in closers:
        t.start()
    for t in closers:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in closers)


def _switches(tid: int, pid: int | None = None) -> int:
    """Voluntary context switches of thread ``tid`` (of process ``pid``: this one)."""
    where = f"/proc/{pid}/task/{tid}" if pid is not None else f"/proc/self/task/{tid}"
    with open(f"{where}/status") as fh:
        for line in fh:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _quiet(tids: list[int], pid: int | None = None) -> bool:
    """The threads ``tids`` (of process ``pid``) do not wake in half a second: polling
    every 10 ms, they would wake 50 times."""
    before = sum(_switches(t, pid) for t in tids)
    time.sleep(0.5)
    return sum(_switches(t, pid) for t in tids) - before < 10


def test_an_idle_ticker_rests_and_the_next_call_wakes_it(
    host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "REST_AFTER_S", 0.05)
    monkeypatch.setattr(engine, "REST_POLL_S", 5.0)  # a call not woken for would take 5 s
    plugin = load(host, "looper", lambda x: x, Limits(timeout_ms=200))
    assert plugin.call("add", 1, 2) == 3
    ticker = plugin._ticker
    thread = ticker._thread
    assert thread is not None
    assert thread.native_id is not None
    _until(lambda: ticker.resting and _quiet([thread.native_id]))
    start = time.monotonic()
    with pytest.raises(PluginTimeout):
        plugin.call("spin")  # its store re-arms (the epoch moved): that wakes the ticker
    assert time.monotonic() - start < 0.2 + LATE_S


def test_an_idle_workers_ticker_rests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The application kills a worker 50 ms past the deadline; on a loaded machine the
    # worker's ticker may be starved longer than that (see test_process.py).
    monkeypatch.setattr(backend_module, "KILL_GRACE_MS", 5000.0)
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as host:
        plugin = load(host, "looper", lambda x: x, Limits(timeout_ms=200))
        assert plugin.call("add", 1, 2) == 3
        backend = plugin._backend
        assert backend is not None
        [pid] = backend.worker_pids()
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]

        _until(lambda: _quiet(tids, pid))
        assert plugin.call("add", 1, 2) == 3
        with pytest.raises(PluginTimeout, match="epoch deadline"):  # the worker's own
            plugin.call("spin")


def test_a_host_whose_plugins_all_run_in_workers_starts_no_ticker(tmp_path: Path) -> None:
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as host:
        plugin = load(host, "looper", lambda x: x)
        assert plugin.call("add", 1, 2) == 3
        ticker = host._services.ticker
        assert ticker._thread is None  # no thread polling 100 times a second for nothing
        local = load(host, "local", lambda x: x, isolation="inprocess")
        assert local.call("add", 1, 2) == 3
        assert ticker._thread is not None
        assert ticker._thread.is_alive()

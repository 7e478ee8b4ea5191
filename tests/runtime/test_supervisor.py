"""Restart policy, quarantine, backoff, metrics and the plugin lifecycle."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from wasmplug import (
    ErrorResult,
    FaultRecord,
    HostFunctionError,
    Limits,
    Manifest,
    Plugin,
    PluginClosedError,
    PluginError,
    PluginHost,
    PluginQuarantinedError,
    PluginTimeout,
    PluginTrapped,
    RestartPolicy,
)
from wasmplug._runtime.supervisor import Supervisor

# `divide` returns result<u32, string>: the canonical ABI return area is
# [u8 discriminant, pad, u32 payload] for ok and [u8, pad, ptr, len] for err.
# `enter` counts entries into Wasm through the host function "entered".
SUPERVISED_WAT = r"""
(component
  (import "entered" (func $entered))
  (core module $m
    (import "host" "entered" (func $entered))
    (memory (export "mem") 1)
    (data (i32.const 64) "division by zero")
    (func (export "add") (param i32 i32) (result i32)
      call $entered
      local.get 0 local.get 1 i32.add)
    (func (export "boom") call $entered unreachable)
    (func (export "spin") call $entered (loop $l br $l))
    (func (export "divide") (param i32 i32) (result i32)
      call $entered
      (if (i32.eqz (local.get 1))
        (then
          (i32.store8 (i32.const 200) (i32.const 1))
          (i32.store (i32.const 204) (i32.const 64))
          (i32.store (i32.const 208) (i32.const 16)))
        (else
          (i32.store8 (i32.const 200) (i32.const 0))
          (i32.store (i32.const 204) (i32.div_u (local.get 0) (local.get 1)))))
      i32.const 200)
  )
  (core func $entered_lowered (canon lower (func $entered)))
  (core instance $host (export "entered" (func $entered_lowered)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add")))
  (func (export "boom") (canon lift (core func $i "boom")))
  (func (export "spin") (canon lift (core func $i "spin")))
  (func (export "divide") (param "a" u32) (param "b" u32) (result (result u32 (error string)))
    (canon lift (core func $i "divide") (memory (core memory $i "mem"))))
)
"""


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


def wait_until_blocked(thread: threading.Thread, timeout_s: float = 10.0) -> None:
    """Return once ``thread`` sits still inside wasmplug's runtime (blocked), or fail.

    The pool's wait may be a C call (``SimpleQueue.get``, or an instance's lock taken
    by a generated call function, whose code is named ``<wasmplug call ...>``) with no
    Python frame of its own, so "blocked" means: the innermost Python frame is in
    ``wasmplug/_runtime`` or generated there, and stays on the same line for 20
    samples 1 ms apart.
    """
    deadline = time.monotonic() + timeout_s
    last, same = None, 0
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident or -1)
        here = (frame.f_code.co_filename, frame.f_lineno) if frame is not None else None
        inside = here is not None and (
            "wasmplug/_runtime" in here[0].replace("\\", "/")
            or here[0].startswith("<wasmplug call ")
        )
        same = same + 1 if inside and here == last else 0
        if same >= 20:
            return
        last = here
        time.sleep(0.001)
    raise AssertionError(f"{thread.name} never blocked inside wasmplug's runtime")


def load(host: PluginHost, entered: Counter | None = None, **kwargs: object) -> Plugin:
    host.provide("entered", entered if entered is not None else Counter())
    return host.load(
        SUPERVISED_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="supervised", host_interfaces=("entered",)),
        **kwargs,  # type: ignore[arg-type]
    )


def test_quarantine_after_max_faults_and_reset(host: PluginHost) -> None:
    entered = Counter()
    plugin = load(host, entered, restart_policy=RestartPolicy(max_faults=3, window_s=60))
    assert plugin.call("add", 1, 2) == 3
    for _ in range(3):
        with pytest.raises(PluginTrapped):
            plugin.call("boom")
    assert entered.n == 4
    assert plugin.metrics().quarantined

    start = time.perf_counter()
    for export, args in [("add", (1, 2)), ("boom", ()), ("divide", (4, 2))]:
        with pytest.raises(PluginQuarantinedError) as info:
            plugin.call(export, *args)
        exc = info.value
        assert exc.plugin == "supervised"
        assert exc.export == export
        assert "quarantined after 3 faults in 60 s" in str(exc)
        assert "last fault: trap" in str(exc)
        assert "reset()" in str(exc)
    assert time.perf_counter() - start < 1.0
    assert entered.n == 4, "a quarantined plugin never enters Wasm"
    assert plugin.metrics().instances == 0

    plugin.reset()
    assert not plugin.metrics().quarantined
    assert plugin.call("add", 2, 3) == 5
    assert entered.n == 5


def test_quarantine_counts_only_faults_inside_the_window() -> None:
    """The window is measured on the supervisor's clock (injected: no wall-clock gaps)."""
    now = [100.0]
    sup = Supervisor(RestartPolicy(max_faults=2, window_s=5.0), clock=lambda: now[0])
    fault = PluginTrapped("unreachable")
    sup.record_fault(fault)
    now[0] += 5.001  # the first fault leaves the window
    sup.record_fault(fault)
    assert not sup.quarantined
    now[0] += 4.999  # still inside the second fault's window
    sup.record_fault(fault)
    assert sup.quarantined
    sup.reset()
    assert not sup.quarantined
    sup.record_fault(fault)
    assert not sup.quarantined, "reset forgot the window"


def test_faults_in_the_window_quarantine_a_real_plugin(host: PluginHost) -> None:
    plugin = load(host, restart_policy=RestartPolicy(max_faults=2, window_s=3600))
    with pytest.raises(PluginTrapped):
        plugin.call("boom")
    assert plugin.call("add", 1, 1) == 2
    with pytest.raises(PluginTrapped):
        plugin.call("boom")
    with pytest.raises(PluginQuarantinedError):
        plugin.call("add", 1, 1)


def test_reset_on_a_healthy_plugin_discards_idle_instances(host: PluginHost) -> None:
    plugin = load(host)
    assert plugin.metrics().instances == 1
    plugin.reset()
    assert plugin.metrics().instances == 0
    assert plugin.call("add", 1, 1) == 2
    assert plugin.metrics().instances == 1


def test_backoff_delays_the_restart(host: PluginHost) -> None:
    plugin = load(host, restart_policy=RestartPolicy(backoff_initial_ms=20, max_faults=10))
    assert plugin.call("add", 1, 1) == 2
    with pytest.raises(PluginTrapped):
        plugin.call("boom")
    start = time.perf_counter()
    assert plugin.call("add", 1, 1) == 2
    first = time.perf_counter() - start
    assert first >= 0.015, f"restart after one fault took only {first * 1000:.1f} ms"

    # The backoff doubles with consecutive faults (a success resets the streak):
    # the second `boom` already runs on an instance restarted after 20 ms.
    for _ in range(2):
        with pytest.raises(PluginTrapped):
            plugin.call("boom")
    start = time.perf_counter()
    assert plugin.call("add", 1, 1) == 2
    second = time.perf_counter() - start
    assert second >= 0.035, f"restart after 2 faults in a row took only {second * 1000:.1f} ms"
    assert plugin.metrics().restarts == 3


def test_backoff_policy_values() -> None:
    policy = RestartPolicy(backoff_initial_ms=20, backoff_max_ms=100)
    assert [policy.backoff_ms(n) for n in range(6)] == [0.0, 20.0, 40.0, 80.0, 100.0, 100.0]
    assert RestartPolicy().backoff_ms(3) == 0.0


def test_metrics(host: PluginHost) -> None:
    # 200 ms: the budget also covers the calls expected to succeed (room for a loaded machine).
    plugin = load(host, limits=Limits(timeout_ms=200), restart_policy=RestartPolicy(max_faults=10))
    metrics = plugin.metrics()
    assert (metrics.calls, metrics.total_faults, metrics.restarts) == (0, 0, 0)
    assert metrics.faults == {}
    assert metrics.instances == 1
    assert metrics.last_fault is None
    assert not metrics.quarantined

    assert plugin.call("add", 1, 2) == 3
    assert plugin.call("divide", 7, 2) == 3
    with pytest.raises(PluginTrapped):
        plugin.call("boom")
    with pytest.raises(PluginTrapped):
        plugin.call("boom")
    before = time.time()
    with pytest.raises(PluginTimeout):
        plugin.call("spin")
    assert plugin.call("add", 1, 2) == 3

    metrics = plugin.metrics()
    assert metrics.calls == 3
    assert dict(metrics.faults) == {"trap": 2, "timeout": 1}
    assert metrics.total_faults == 3
    assert metrics.restarts == 3
    assert metrics.instances == 1
    last = metrics.last_fault
    assert isinstance(last, FaultRecord)
    assert last.kind == "timeout"
    assert last.export == "spin"
    assert "time limit" in last.message
    assert before - 1 <= last.at <= time.time() + 1


def test_host_function_fault_kind(host: PluginHost) -> None:
    def entered() -> None:
        raise RuntimeError("no")

    host.provide("entered", entered)
    plugin = host.load(
        SUPERVISED_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="supervised", host_interfaces=("entered",)),
    )
    with pytest.raises(HostFunctionError):
        plugin.call("add", 1, 2)
    metrics = plugin.metrics()
    assert metrics.faults == {"host-function": 1}
    assert metrics.last_fault is not None
    assert metrics.last_fault.kind == "host-function"


def test_error_result_is_not_a_fault(host: PluginHost) -> None:
    entered = Counter()
    plugin = load(host, entered, restart_policy=RestartPolicy(max_faults=1))
    for _ in range(3):
        with pytest.raises(ErrorResult) as info:
            plugin.call("divide", 1, 0)
        exc = info.value
        assert exc.value == "division by zero"
        assert exc.plugin == "supervised"
        assert exc.export == "divide"
    assert plugin.call("divide", 9, 3) == 3
    metrics = plugin.metrics()
    assert metrics.total_faults == 0
    assert metrics.restarts == 0
    assert metrics.calls == 4
    assert not metrics.quarantined
    assert entered.n == 4


def test_close_then_call(host: PluginHost) -> None:
    entered = Counter()
    plugin = load(host, entered)
    assert plugin.call("add", 1, 1) == 2
    assert not plugin.closed
    plugin.close()
    assert plugin.closed
    assert plugin.metrics().instances == 0
    with pytest.raises(PluginClosedError) as info:
        plugin.call("add", 1, 1)
    assert info.value.plugin == "supervised"
    assert info.value.export == "add"
    with pytest.raises(PluginClosedError):
        plugin.exports.add(1, 1)
    plugin.close()  # idempotent
    assert plugin.closed
    assert entered.n == 1
    assert plugin not in host.plugins


def test_close_after_fault_and_context_manager(host: PluginHost) -> None:
    with load(host) as plugin, pytest.raises(PluginTrapped):
        plugin.call("boom")
    assert plugin.closed
    with pytest.raises(PluginClosedError):
        plugin.call("add", 1, 1)


def test_close_from_inside_a_host_function(host: PluginHost) -> None:
    """close() cannot wait for the call it is made from; it must not deadlock."""
    plugins: list[Plugin] = []
    outcome: list[object] = []

    def entered() -> None:
        if plugins:
            plugins[0].close()

    host.provide("entered", entered)
    plugins.append(
        host.load(
            SUPERVISED_WAT.encode(),
            allow_unsigned=True,
            manifest=Manifest(name="supervised", host_interfaces=("entered",)),
        )
    )
    plugin = plugins[0]

    def run() -> None:
        try:
            outcome.append(plugin.call("add", 20, 22))
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "close() from a host function deadlocked"
    assert outcome == [42], "the call in progress completes"
    assert plugin.closed
    assert plugin.metrics().instances == 0, "its instance was freed when the call returned"
    with pytest.raises(PluginClosedError):
        plugin.call("add", 1, 1)


def test_waiting_callers_get_attributed_errors(host: PluginHost) -> None:
    """A call waiting for the only instance fails with .plugin and .export set when
    the plugin is quarantined meanwhile."""
    started, release = threading.Event(), threading.Event()

    def entered() -> None:
        started.set()
        release.wait(timeout=10)
        raise RuntimeError("fault while another caller waits")

    host.provide("entered", entered)
    plugin = host.load(
        SUPERVISED_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="supervised", host_interfaces=("entered",)),
        restart_policy=RestartPolicy(max_faults=1),
    )
    errors: list[BaseException] = []

    def call(export: str, *args: int) -> None:
        try:
            plugin.call(export, *args)
        except BaseException as e:
            errors.append(e)

    first = threading.Thread(target=call, args=("boom",))
    first.start()
    assert started.wait(timeout=10)
    second = threading.Thread(target=call, args=("divide", 4, 2))
    second.start()
    wait_until_blocked(second)  # the second caller waits for the only instance
    release.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert len(errors) == 2
    by_export = {e.export: e for e in errors if isinstance(e, PluginError)}
    assert isinstance(by_export["boom"], HostFunctionError)
    assert isinstance(by_export["divide"], PluginQuarantinedError)
    assert by_export["divide"].plugin == "supervised"


def test_host_close_closes_plugins(tmp_path: Path) -> None:
    host = PluginHost(cache_dir=tmp_path / "cache")
    first, second = load(host), load(host)
    assert set(host.plugins) == {first, second}
    host.close()
    assert host.closed
    assert first.closed
    assert second.closed
    for plugin in (first, second):
        with pytest.raises(PluginClosedError) as info:
            plugin.call("add", 1, 1)
        assert info.value.plugin == "supervised"
    with pytest.raises(PluginClosedError):
        load(host)
    host.close()  # idempotent

"""Crash isolation: every kind of guest fault becomes a typed PluginFault, and the
plugin keeps working on a fresh instance afterwards.

Every test that loads a plugin runs in both isolation tiers (the ``isolation``
fixture): in-process, and in worker processes (``isolation="process"``), where
the same faults must surface as the same exceptions.

The components are tiny WAT texts, so each test compiles in milliseconds. The
trap messages are wasmtime 50's own; they are pinned here and in the
``classify`` unit tests so that a wasmtime upgrade that rewords one fails loudly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wasmtime import WasmtimeError

from wasmplug import (
    CapabilityError,
    FuelExhausted,
    HostFunctionError,
    InstantiationError,
    Limits,
    Manifest,
    Plugin,
    PluginError,
    PluginFault,
    PluginHost,
    PluginInterrupted,
    PluginTimeout,
    PluginTrapped,
    ReentrantCallError,
    ResourceLimitExceeded,
    WitTypeError,
    WitValueError,
)
from wasmplug._runtime.faults import DEADLINE_TRAP, INTERRUPT_TRAP, classify, split_backtrace
from wasmplug._runtime.process import backend as process_backend

PAGE = 65536

# One core module behind a handful of lifted exports; "cb" is a host function
# (a world-level import) the guest calls from `call-cb`.
FAULTY_WAT = r"""
(component
  (import "cb" (func $cb (param "x" u32) (result u32)))
  (core module $m
    (import "host" "cb" (func $cb (param i32) (result i32)))
    (memory (export "mem") 1)
    (table 1 funcref)
    (data (i32.const 16) "\ff\fe")
    (func (export "add") (param i32 i32) (result i32)
      local.get 0 local.get 1 i32.add)
    (func (export "boom") unreachable)
    (func (export "oob") (result i32) i32.const -1 i32.load)
    (func $rec (export "rec") (param i32) (result i32)
      local.get 0 i32.const 1 i32.add call $rec)
    (func (export "spin") (loop $l br $l))
    ;; grow one page at a time until memory.grow fails, report memory.size (pages)
    ;; to the host through cb, then give up
    (func (export "bomb")
      (loop $l
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
          (then (drop (call $cb (memory.size))) unreachable))
        br $l))
    ;; grow until memory.grow fails; return the final size in pages
    (func (export "grow-max") (result i32)
      (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
      memory.size)
    (func (export "table-grow") (param i32) (result i32)
      (table.grow (ref.null func) (local.get 0)))
    (func (export "call-cb") (param i32) (result i32) local.get 0 call $cb)
    ;; a string (ptr=16, len=2) whose bytes are not UTF-8
    (func (export "bad-string") (result i32)
      (i32.store (i32.const 100) (i32.const 16))
      (i32.store (i32.const 104) (i32.const 2))
      i32.const 100)
  )
  (core func $cb_lowered (canon lower (func $cb)))
  (core instance $host (export "cb" (func $cb_lowered)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add")))
  (func (export "boom") (canon lift (core func $i "boom")))
  (func (export "oob") (result u32) (canon lift (core func $i "oob")))
  (func (export "rec") (param "n" u32) (result u32) (canon lift (core func $i "rec")))
  (func (export "spin") (canon lift (core func $i "spin")))
  (func (export "bomb") (canon lift (core func $i "bomb")))
  (func (export "grow-max") (result u32) (canon lift (core func $i "grow-max")))
  (func (export "table-grow") (param "n" u32) (result s32)
    (canon lift (core func $i "table-grow")))
  (func (export "call-cb") (param "x" u32) (result u32) (canon lift (core func $i "call-cb")))
  (func (export "bad-string") (result string)
    (canon lift (core func $i "bad-string") (memory (core memory $i "mem"))))
)
"""

# A component whose core memory needs 10 pages just to exist.
BIG_MEMORY_WAT = r"""
(component
  (core module $m (memory 10) (func (export "f")))
  (core instance $i (instantiate $m))
  (func (export "f") (canon lift (core func $i "f")))
)
"""

# The trap text wasmtime 50 reports for each fault (the innermost "Caused by" line).
UNREACHABLE = "wasm `unreachable` instruction executed"
OUT_OF_BOUNDS = "out of bounds memory access"
STACK_EXHAUSTED = "call stack exhausted"
INTERRUPT = "interrupt"
FUEL = "all fuel consumed by WebAssembly"
BAD_UTF8 = "invalid utf-8 sequence of 1 bytes from index 0"
MEMORY_MINIMUM = "memory minimum size of 10 pages exceeds memory limits"

# Full messages as str(WasmtimeError) gives them, captured from the traps below.
REAL_MESSAGES = {
    "unreachable": (
        "error while executing at wasm backtrace:\n"
        "    0:     0xda - m!<wasm function 2>\n\n"
        "Caused by:\n"
        f"    wasm trap: {UNREACHABLE}\n"
    ),
    "out-of-bounds": (
        "error while executing at wasm backtrace:\n"
        "    0:     0xe1 - m!<wasm function 3>\n\n"
        "Caused by:\n"
        "    0: memory fault at wasm address 0xffffffff in linear memory of size 0x10000\n"
        f"    1: wasm trap: {OUT_OF_BOUNDS}\n"
    ),
    "stack-overflow": (
        "error while executing at wasm backtrace:\n"
        "    0: m!rec\n"
        "    1:     0xec - m!rec\n"
        "    2:     0xec - m!rec\n\n"
        "Caused by:\n"
        f"    wasm trap: {STACK_EXHAUSTED}\n"
    ),
    "interrupt": (
        "error while executing at wasm backtrace:\n"
        "    0:     0xf1 - m!<wasm function 5>\n\n"
        "Caused by:\n"
        f"    wasm trap: {INTERRUPT}\n"
    ),
    "deadline": (
        "error while executing at wasm backtrace:\n"
        "    0:     0xf1 - m!<wasm function 5>\n\n"
        "Caused by:\n"
        f"    {DEADLINE_TRAP}\n"
    ),
    "interrupted": (
        "error while executing at wasm backtrace:\n"
        "    0:     0xf1 - m!<wasm function 5>\n\n"
        "Caused by:\n"
        f"    {INTERRUPT_TRAP}\n"
    ),
    "fuel": (
        "error while executing at wasm backtrace:\n"
        "    0:     0xf1 - m!<wasm function 5>\n\n"
        "Caused by:\n"
        f"    wasm trap: {FUEL}\n"
    ),
    "bad-utf8": BAD_UTF8,
    "memory-minimum": MEMORY_MINIMUM,
}


@pytest.fixture(params=["inprocess", "process"])
def isolation(request: pytest.FixtureRequest) -> str:
    """Each fault test runs in both isolation tiers."""
    return str(request.param)


@pytest.fixture
def host(tmp_path: Path, isolation: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginHost]:
    """A host of the test's isolation tier (no spare workers: tests start few).

    In the process tier the application kills a worker 50 ms past its deadline; on a
    loaded machine that can beat the worker's own epoch interrupt. The fault suite
    checks that the same faults surface the same way, so it waits longer; the kill
    itself is tested in test_process.py.
    """
    monkeypatch.setattr(process_backend, "KILL_GRACE_MS", 5000.0)
    with PluginHost(
        cache_dir=tmp_path / "cache",
        isolation=isolation,  # type: ignore[arg-type]
        spare_workers=0,
    ) as h:
        yield h


def manifest() -> Manifest:
    return Manifest(name="faulty", host_interfaces=("cb",))


def load(host: PluginHost, cb: Callable[[int], int] = lambda x: x + 1, **kwargs: Any) -> Plugin:
    host.provide("cb", cb)
    return host.load(FAULTY_WAT.encode(), allow_unsigned=True, manifest=manifest(), **kwargs)


def assert_healthy(plugin: Plugin) -> None:
    """The plugin answers correctly (on a fresh instance, after a fault)."""
    assert plugin.call("add", 40, 2) == 42
    assert plugin.call("call-cb", 1) == 2


def assert_attributed(exc: PluginError, export: str) -> None:
    assert exc.plugin == "faulty"
    assert exc.export == export
    assert str(exc).startswith(f"plugin 'faulty', export {export!r}: ")


# -- traps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("export", "args", "trap"),
    [
        ("boom", (), UNREACHABLE),
        ("oob", (), OUT_OF_BOUNDS),
        ("rec", (0,), STACK_EXHAUSTED),
    ],
    ids=["unreachable", "out-of-bounds-load", "stack-overflow"],
)
def test_trap_is_plugin_trapped_and_plugin_recovers(
    host: PluginHost, export: str, args: tuple[int, ...], trap: str
) -> None:
    plugin = load(host)
    assert_healthy(plugin)
    with pytest.raises(PluginTrapped) as info:
        plugin.call(export, *args)
    exc = info.value
    assert exc.trap == trap
    assert exc.fault == "trap"
    assert str(exc) == f"plugin 'faulty', export {export!r}: trapped: {trap}"
    assert exc.wasm_backtrace.strip(), "the guest backtrace is kept"
    assert isinstance(exc.__cause__, WasmtimeError)
    assert f"wasm trap: {trap}" in str(exc.__cause__)
    assert_attributed(exc, export)
    assert_healthy(plugin)
    metrics = plugin.metrics()
    assert metrics.faults == {"trap": 1}
    assert metrics.restarts == 1


def test_stack_overflow_backtrace_names_the_recursive_function(host: PluginHost) -> None:
    plugin = load(host)
    with pytest.raises(PluginTrapped, match=STACK_EXHAUSTED) as info:
        plugin.call("rec", 0)
    assert "m!rec" in info.value.wasm_backtrace
    assert_healthy(plugin)


def test_infinite_loop_times_out_quickly(host: PluginHost) -> None:
    plugin = load(host, limits=Limits(timeout_ms=50))
    start = time.perf_counter()
    with pytest.raises(PluginTimeout) as info:
        plugin.call("spin")
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"a 50 ms timeout took {elapsed:.3f} s"
    exc = info.value
    assert exc.fault == "timeout"
    assert isinstance(exc.__cause__, WasmtimeError)
    assert DEADLINE_TRAP in str(exc.__cause__)
    assert_attributed(exc, "spin")
    assert_healthy(plugin)


def test_fuel_exhaustion(tmp_path: Path, isolation: str) -> None:
    with PluginHost(
        cache_dir=tmp_path / "cache",
        consume_fuel=True,
        isolation=isolation,  # type: ignore[arg-type]
        spare_workers=0,
    ) as host:
        plugin = load(host, limits=Limits(fuel=10_000))
        assert_healthy(plugin)
        with pytest.raises(FuelExhausted) as info:
            plugin.call("spin")
        exc = info.value
        assert exc.fault == "fuel"
        assert isinstance(exc.__cause__, WasmtimeError)
        assert f"wasm trap: {FUEL}" in str(exc.__cause__)
        assert_attributed(exc, "spin")
        # Fuel is refilled per call: the budget of the failed call does not carry over.
        assert_healthy(plugin)
        assert_healthy(plugin)


# -- resource limits ---------------------------------------------------------------------


def test_fuel_limit_needs_a_fuel_host(host: PluginHost) -> None:
    with pytest.raises(CapabilityError, match="consume_fuel=True"):
        load(host, limits=Limits(fuel=10_000))


def test_memory_grow_fails_at_the_limit(host: PluginHost) -> None:
    plugin = load(host, limits=Limits(memory_bytes=4 * PAGE))
    assert plugin.call("grow-max") == 4, "memory.grow returns -1 exactly at the limit"
    assert_healthy(plugin)


def test_memory_bomb_is_a_fault_and_never_exceeds_the_limit(host: PluginHost) -> None:
    seen: list[int] = []  # memory.size of the bombing instance, reported just before its trap
    plugin = load(
        host, cb=lambda pages: seen.append(pages) or 0, limits=Limits(memory_bytes=4 * PAGE)
    )
    with pytest.raises(PluginFault) as info:
        plugin.call("bomb")
    assert seen == [4], "the bombing instance itself stopped at the limit (4 pages)"
    exc = info.value
    # A WAT guest prints nothing before giving up, so this is an ordinary trap
    # (componentize-py guests print MemoryError: see test_greeter_e2e's hog test).
    assert type(exc) is PluginTrapped
    assert exc.trap == UNREACHABLE
    assert_attributed(exc, "bomb")
    plugin.close()
    plugin = load(host, limits=Limits(memory_bytes=4 * PAGE))
    assert_healthy(plugin)
    assert plugin.call("grow-max") == 4


def test_table_growth_past_the_limit_returns_minus_one(host: PluginHost) -> None:
    plugin = load(host, limits=Limits(table_elements=100))
    assert plugin.call("table-grow", 1000) == -1
    assert plugin.call("table-grow", 10) == 1, "returns the old size on success"
    assert plugin.call("table-grow", 89) == 11
    assert plugin.call("table-grow", 1) == -1
    assert_healthy(plugin)
    assert plugin.metrics().total_faults == 0


def test_memory_limit_below_instantiation_needs(host: PluginHost) -> None:
    with pytest.raises(InstantiationError) as info:
        host.load(
            BIG_MEMORY_WAT.encode(),
            allow_unsigned=True,
            manifest=Manifest(name="big"),
            limits=Limits(memory_bytes=PAGE),
        )
    message = str(info.value)
    assert MEMORY_MINIMUM in message
    assert "Limits.memory_bytes=65536" in message
    assert isinstance(info.value.__cause__, WasmtimeError)
    # The same host still loads it when the limit allows it.
    plugin = host.load(
        BIG_MEMORY_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="big"),
        limits=Limits(memory_bytes=10 * PAGE),
    )
    assert plugin.call("f") is None


# -- host functions ----------------------------------------------------------------------


def test_host_function_value_error(host: PluginHost) -> None:
    calls: list[int] = []

    def cb(x: int) -> int:
        calls.append(x)
        if x == 13:
            raise ValueError("unlucky")
        return x + 1

    plugin = load(host, cb)
    with pytest.raises(HostFunctionError) as info:
        plugin.call("call-cb", 13)
    exc = info.value
    assert type(exc.__cause__) is ValueError
    assert str(exc.__cause__) == "unlucky"
    assert exc.fault == "host-function"
    assert "ValueError: unlucky" in str(exc)
    assert_attributed(exc, "call-cb")
    assert_healthy(plugin)
    assert calls == [13, 1]


# A world-level host function without a WIT result, called by "call-note".
NOTE_WAT = r"""
(component
  (import "note" (func $note (param "x" u32)))
  (core func $note_lowered (canon lower (func $note)))
  (core module $m
    (import "host" "note" (func $note (param i32)))
    (func (export "call-note") (param i32) local.get 0 call $note))
  (core instance $host (export "note" (func $note_lowered)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "call-note") (param "x" u32) (canon lift (core func $i "call-note")))
)
"""


def test_host_function_without_a_result_must_return_none(host: PluginHost) -> None:
    """One rule in both tiers: a host function whose WIT signature has no result
    returning a value is the application's bug, a HostFunctionError (TypeError)."""
    seen: list[int] = []

    def note(x: int) -> object:
        seen.append(x)
        return None if x else "stray"

    host.provide("note", note)
    plugin = host.load(
        NOTE_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="faulty", host_interfaces=("note",)),
    )
    assert plugin.call("call-note", 1) is None
    with pytest.raises(HostFunctionError) as info:
        plugin.call("call-note", 0)
    assert type(info.value.__cause__) is TypeError
    assert "note has no WIT result but returned str" in str(info.value.__cause__)
    assert_attributed(info.value, "call-note")
    assert plugin.call("call-note", 2) is None
    assert seen == [1, 0, 2]


def test_host_function_keyboard_interrupt_is_reraised(host: PluginHost) -> None:
    interrupt = {"on": True}

    def cb(x: int) -> int:
        if interrupt["on"]:
            raise KeyboardInterrupt
        return x + 1

    plugin = load(host, cb)
    with pytest.raises(KeyboardInterrupt):
        plugin.call("call-cb", 1)
    interrupt["on"] = False
    assert_healthy(plugin)
    assert plugin.metrics().faults == {"host-function": 1}


def test_host_function_system_exit_is_reraised(host: PluginHost) -> None:
    def cb(x: int) -> int:
        if x == 0:
            raise SystemExit(3)
        return x + 1

    plugin = load(host, cb)
    with pytest.raises(SystemExit) as info:
        plugin.call("call-cb", 0)
    assert info.value.code == 3
    assert_healthy(plugin)


@pytest.mark.parametrize(
    ("returned", "cause"),
    [("nope", WitTypeError), (None, WitTypeError), (-1, WitValueError), (2**32, WitValueError)],
    ids=["str", "none", "negative", "too-big"],
)
def test_host_function_bad_return_value(
    host: PluginHost, returned: object, cause: type[Exception]
) -> None:
    plugin = load(host, lambda x: returned)  # type: ignore[arg-type,return-value]
    with pytest.raises(HostFunctionError) as info:
        plugin.call("call-cb", 1)
    assert type(info.value.__cause__) is cause
    assert "u32" in str(info.value.__cause__)
    assert_attributed(info.value, "call-cb")
    assert plugin.call("add", 1, 1) == 2


@pytest.mark.parametrize("pool_size", [1, 2], ids=["pool-1", "pool-2"])
def test_reentrant_call_is_refused_without_deadlock(host: PluginHost, pool_size: int) -> None:
    plugins: list[Plugin] = []
    reentry = {"on": True}

    def cb(x: int) -> int:
        if reentry["on"]:
            return int(plugins[0].call("add", x, 1))
        return x + 1

    plugins.append(load(host, cb, pool_size=pool_size))
    plugin = plugins[0]
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            plugin.call("call-cb", 1)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "re-entering the plugin deadlocked"
    [exc] = outcome
    assert isinstance(exc, HostFunctionError)
    assert_attributed(exc, "call-cb")
    cause = exc.__cause__
    assert isinstance(cause, ReentrantCallError)
    assert cause.plugin == "faulty"
    assert cause.export == "add"
    reentry["on"] = False
    assert_healthy(plugin)


def test_indirect_reentry_through_another_plugin_is_refused(host: PluginHost) -> None:
    """a -> host -> b -> host -> a: refused like direct re-entry, never a deadlock."""
    plugins: dict[str, Plugin] = {}
    plugins["a"] = load(host, lambda x: int(plugins["b"].call("call-cb", x)))
    plugins["b"] = load(host, lambda x: int(plugins["a"].call("add", x, 1)))
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            plugins["a"].call("call-cb", 1)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "a -> b -> a deadlocked"
    [exc] = outcome
    assert isinstance(exc, HostFunctionError)
    inner = exc.__cause__
    assert isinstance(inner, HostFunctionError), "b's host function failed"
    assert isinstance(inner.__cause__, ReentrantCallError)
    assert inner.__cause__.export == "add"
    # b -> a alone is fine: only re-entry is refused.
    assert plugins["b"].call("call-cb", 1) == 2
    assert plugins["a"].call("add", 1, 1) == 2


# -- canonical ABI -----------------------------------------------------------------------


def test_invalid_utf8_string_from_guest(host: PluginHost) -> None:
    plugin = load(host)
    with pytest.raises(PluginTrapped) as info:
        plugin.call("bad-string")
    exc = info.value
    assert exc.trap == BAD_UTF8
    assert exc.wasm_backtrace == ""
    assert isinstance(exc.__cause__, WasmtimeError)
    assert_attributed(exc, "bad-string")
    assert_healthy(plugin)


# -- every fault leaves the host usable ---------------------------------------------------


def test_faults_do_not_affect_other_plugins(host: PluginHost) -> None:
    victim = load(host)
    bystander = host.load(FAULTY_WAT.encode(), allow_unsigned=True, manifest=manifest())
    for export, args in [("boom", ()), ("oob", ()), ("rec", (0,)), ("bad-string", ())]:
        with pytest.raises(PluginFault):
            victim.call(export, *args)
        assert_healthy(bystander)
    assert bystander.metrics().total_faults == 0
    assert victim.metrics().total_faults == 4


# -- classify, unit-tested on the real messages -------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected", "trap"),
    [
        (REAL_MESSAGES["unreachable"], PluginTrapped, UNREACHABLE),
        (REAL_MESSAGES["out-of-bounds"], PluginTrapped, OUT_OF_BOUNDS),
        (REAL_MESSAGES["stack-overflow"], PluginTrapped, STACK_EXHAUSTED),
        (REAL_MESSAGES["interrupt"], PluginTimeout, None),
        (REAL_MESSAGES["deadline"], PluginTimeout, None),
        (REAL_MESSAGES["interrupted"], PluginInterrupted, None),
        (REAL_MESSAGES["fuel"], FuelExhausted, None),
        (REAL_MESSAGES["bad-utf8"], PluginTrapped, BAD_UTF8),
        (REAL_MESSAGES["memory-minimum"], ResourceLimitExceeded, None),
        ("table minimum size of 1000 elements exceeds table limits", ResourceLimitExceeded, None),
    ],
    ids=[
        "unreachable",
        "out-of-bounds",
        "stack-overflow",
        "interrupt",
        "deadline",
        "interrupted",
        "fuel",
        "bad-utf8",
        "memory-limit",
        "table-limit",
    ],
)
def test_classify_real_messages(message: str, expected: type, trap: str | None) -> None:
    exc = classify(message)
    assert type(exc) is expected
    if trap is not None:
        assert exc.trap == trap  # type: ignore[attr-defined]
    if "wasm backtrace" in message:
        assert exc.wasm_backtrace.startswith("    0:")
    else:
        assert exc.wasm_backtrace == ""


@pytest.mark.parametrize(
    ("stderr", "memory_limited", "expected"),
    [
        ("MemoryError\n", True, ResourceLimitExceeded),
        ("memory allocation of 1048576 bytes failed\n", True, ResourceLimitExceeded),
        ("MemoryError\n", False, PluginTrapped),
        ("RuntimeError: oh no\n", True, PluginTrapped),
        ("", True, PluginTrapped),
    ],
    ids=["memory-error", "rust-oom", "not-limited", "other-error", "silent"],
)
def test_classify_out_of_memory_abort(
    stderr: str, memory_limited: bool, expected: type[PluginFault]
) -> None:
    exc = classify(REAL_MESSAGES["unreachable"], guest_stderr=stderr, memory_limited=memory_limited)
    assert type(exc) is expected
    assert UNREACHABLE in str(exc)


def test_split_backtrace_of_real_message() -> None:
    cause, backtrace = split_backtrace(REAL_MESSAGES["stack-overflow"])
    assert cause == STACK_EXHAUSTED
    assert backtrace.splitlines() == [
        "    0: m!rec",
        "    1:     0xec - m!rec",
        "    2:     0xec - m!rec",
    ]


def test_real_traps_match_the_pinned_messages(host: PluginHost) -> None:
    """The captured messages above are what wasmtime reports today (modulo offsets)."""
    plugin = load(host, limits=Limits(timeout_ms=50))
    for export, args, key in [
        ("boom", (), "unreachable"),
        ("oob", (), "out-of-bounds"),
        ("spin", (), "deadline"),
        ("bad-string", (), "bad-utf8"),
    ]:
        with pytest.raises(PluginFault) as info:
            plugin.call(export, *args)
        real = str(info.value.__cause__)
        assert split_backtrace(real)[0] == split_backtrace(REAL_MESSAGES[key])[0]
        assert type(classify(real)) is type(info.value)

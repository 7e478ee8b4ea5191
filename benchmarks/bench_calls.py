"""Per-call overhead of wasmplug vs stock wasmtime-py, a ctypes floor and Extism.

Usage: ``python benchmarks/bench_calls.py [--quick] [--json out.json]``. Each row is
timed in batches (GC off, variants of a group round-robin); it reports the median and
p90 over batches of wall time per call, and the median of this thread's CPU time per
call. In-process ratios are medians of per-batch ratios of CPU time (:func:`paired`):
the rows of a group run back to back in each batch, so a batch's ratio compares
them under the same machine state. The plugins are WAT below: nothing to build.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import multiprocessing
import os
import platform
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import extism
import wasmtime
from wasmtime import _bindings as wb  # private ctypes layer: only for the floor row
from wasmtime.component import Linker, Record

from wasmplug import Limits, PluginCrashed, PluginHost, PluginTrapped, RestartPolicy

NFIELDS = 64
WP_ADD, STOCK_ADD = "wasmplug plugin.call('add', 1, 2)", "stock Func.__call__(store, 1, 2)"
FLOOR_ADD = "ctypes floor: raw func_call, preallocated"
LEAN_FLOOR_ADD = "ctypes floor, lean prototype (addresses)"
BARE_FLOOR_ADD = "ctypes floor, no argtypes (prebuilt args)"
WP_ECHO, STOCK_ECHO = "wasmplug plugin.call('echo', s)", "stock Func.__call__(store, s)"
EXTISM_ECHO = "extism call('echo', b) [PDK-style copy]"
WP_REC, STOCK_REC = "wasmplug plugin.call('echo-record', r)", "stock Func.__call__(store, r)"
PROC_ADD, PROC_ECHO = "process plugin.call('add', 1, 2)", "process plugin.call('echo', s)"
LOCAL_TRAP, PROC_TRAP = "inprocess trap, then next call", "process trap, then next call"
PIPE_ADD = "multiprocessing pipe round trip, 16 B"
PIPE_ECHO = "multiprocessing pipe round trip, 1 KiB"
PROC_KILL = "process SIGKILL, next call served [warm spare]"
PROC_KILL_COLD = "process SIGKILL, next call served [no spare]"
LOCAL_BURN1, LOCAL_BURN2 = "inprocess burn, pool_size=1", "inprocess burn, pool_size=2"
PROC_BURN1, PROC_BURN2 = "process burn, pool_size=1", "process burn, pool_size=2"
SPEEDUP = "cpu-bound speed-up: process 2 workers vs 1"
CEILING = "cpu-bound speed-up: inprocess 2 vs 1"
OF_CEILING = "cpu-bound: process speed-up / inprocess"
_RECORD_TYPE = " ".join(f'(field "f{i}" u32)' for i in range(NFIELDS))
_LIFT_OPTS = '(memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))'

# A component with three exports. Per the canonical ABI, a string param is
# (ptr, len) written into guest memory through cabi_realloc, and a string result
# (2 flat values > MAX_FLAT_RESULTS = 1) is returned through a pointer to (ptr, len).
# The 64-field record is 64 flat values > MAX_FLAT_PARAMS = 16, so it arrives as one
# pointer to the record in memory, and is returned the same way: echo returns its
# argument. The bump heap is rewound at each call (the previous call's data is dead).
COMPONENT_WAT = f"""
(component
  (core module $m
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    (func (export "add") (param i32 i32) (result i32)
      (i32.add (local.get 0) (local.get 1)))
    (func (export "echo") (param $ptr i32) (param $len i32) (result i32)
      (global.set $heap (i32.const 1024))
      (i32.store (i32.const 16) (local.get $ptr))
      (i32.store (i32.const 20) (local.get $len))
      (i32.const 16))
    (func (export "echo-record") (param $ptr i32) (result i32)
      (global.set $heap (i32.const 1024))
      (local.get $ptr))
    (func (export "boom") unreachable)
    ;; CPU-bound work: n rounds of an LCG, no memory traffic
    (func (export "burn") (param $n i32) (result i32) (local $x i32)
      (local.set $x (i32.const 1))
      (block $done (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1103515245)) (i32.const 12345)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
      (local.get $x))
    (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32)
      (result i32)
      (local $p i32) (local $end i32)
      (local.set $p (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $p) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
        (then (if (i32.lt_s (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16))
                                                  (i32.const 1))) (i32.const 0))
          (then unreachable))))
      (global.set $heap (local.get $end))
      (local.get $p)))
  (core instance $i (instantiate $m))
  (type $big' (record {_RECORD_TYPE}))
  (export $big "big" (type $big'))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add")))
  (func (export "echo") (param "s" string) (result string)
    (canon lift (core func $i "echo") {_LIFT_OPTS}))
  (func (export "echo-record") (param "r" $big) (result $big)
    (canon lift (core func $i "echo-record") {_LIFT_OPTS}))
  (func (export "burn") (param "n" u32) (result u32) (canon lift (core func $i "burn")))
  (func (export "boom") (canon lift (core func $i "boom"))))
"""

# An Extism plugin against the kernel ABI ("extism:host/env"; pointers are i64 offsets
# into the kernel's own memory). "echo" does what a PDK's input()/output() do: copy the
# input into this module's memory (input_load_u64/u8), copy it into a fresh kernel
# block (alloc, store_u64/u8), and mark that block as the output (output_set).
# "echo_ref" points the output at the input block: the SDK's call cost without copies.
EXTISM_WAT = """
(module
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_offset" (func $input_offset (result i64)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 1)
  (func (export "echo") (result i32)
    (local $len i64) (local $i i64) (local $out i64)
    (local.set $len (call $input_length))
    (if (i64.gt_u (local.get $len) (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
      (then (if (i32.lt_s (memory.grow (i32.wrap_i64 (i64.add (i64.shr_u (local.get $len)
                                        (i64.const 16)) (i64.const 1)))) (i32.const 0))
        (then unreachable))))
    (block $done (loop $words
      (br_if $done (i64.gt_u (i64.add (local.get $i) (i64.const 8)) (local.get $len)))
      (i64.store (i32.wrap_i64 (local.get $i)) (call $input_load_u64 (local.get $i)))
      (br $words (local.set $i (i64.add (local.get $i) (i64.const 8))))))
    (block $done (loop $bytes
      (br_if $done (i64.ge_u (local.get $i) (local.get $len)))
      (i32.store8 (i32.wrap_i64 (local.get $i)) (call $input_load_u8 (local.get $i)))
      (br $bytes (local.set $i (i64.add (local.get $i) (i64.const 1))))))
    (local.set $out (call $alloc (local.get $len)))
    (local.set $i (i64.const 0))
    (block $done (loop $words
      (br_if $done (i64.gt_u (i64.add (local.get $i) (i64.const 8)) (local.get $len)))
      (call $store_u64 (i64.add (local.get $out) (local.get $i))
                       (i64.load (i32.wrap_i64 (local.get $i))))
      (br $words (local.set $i (i64.add (local.get $i) (i64.const 8))))))
    (block $done (loop $bytes
      (br_if $done (i64.ge_u (local.get $i) (local.get $len)))
      (call $store_u8 (i64.add (local.get $out) (local.get $i))
                      (i32.load8_u (i32.wrap_i64 (local.get $i))))
      (br $bytes (local.set $i (i64.add (local.get $i) (i64.const 1))))))
    (call $output_set (local.get $out) (local.get $len))
    (i32.const 0))
  (func (export "echo_ref") (result i32)
    (call $output_set (call $input_offset) (call $input_length))
    (i32.const 0)))
"""


Case = tuple[str, Callable[[], object]]


@dataclass
class Row:
    group: str
    name: str
    median_us: float | None  # wall clock (perf_counter_ns), per call
    p90_us: float | None
    cpu_us: float | None = None  # this thread's CPU time (thread_time_ns): immune to preemption
    batches: int = 0
    batch_size: int = 0
    note: str = ""
    # This thread's CPU time per call in each batch (µs), in batch order: the rows of
    # one measure() call ran in the same batches, so their samples pair up.
    cpu_samples: list[float] = field(default_factory=list)
    # Wall time per call in each batch (µs), in batch order (cpu-bound rows: each
    # round ran a batch of every row, so their samples pair up too).
    wall_samples: list[float] = field(default_factory=list)


@dataclass
class Paired:
    """Ratios of two rows' CPU time per call, batch by batch (see :func:`paired`)."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    batches: int

    def spread(self) -> str:
        return (
            f"median of {self.batches} per-batch ratios; IQR {self.q1:.2f}-{self.q3:.2f}x, "
            f"range {self.low:.2f}-{self.high:.2f}x"
        )


def check(ok: bool, what: str) -> None:
    if not ok:  # not `assert`: the checks must survive python -O
        raise AssertionError(f"wrong result: {what}")


def calibrate(fn: Callable[[], object], batch_s: float, max_size: int) -> int:
    """Warm ``fn`` up and return how many calls take about ``batch_s``."""
    start, n = time.perf_counter(), 0
    while n < 50 or time.perf_counter() - start < batch_s:
        fn()
        n += 1
    return max(5, min(max_size, int(n * batch_s / (time.perf_counter() - start))))


def measure(
    group: str, cases: list[Case], batches: int, batch_s: float, max_size: int
) -> list[Row]:
    """Time the cases' batches round-robin (load changes hit all alike), GC off.

    Each round runs every case once, in the listed order and then in reverse on the
    next round (A B C, C B A, ...), so neighbours in the list always run back to back
    and neither is always first."""
    sizes = [calibrate(fn, batch_s, max_size) for _, fn in cases]
    wall: list[list[float]] = [[] for _ in cases]
    cpu: list[list[float]] = [[] for _ in cases]
    forward = list(enumerate(cases))
    gc.collect()
    gc.disable()
    try:
        for b in range(batches):
            for k, (_, fn) in forward if b % 2 == 0 else forward[::-1]:
                loop = range(sizes[k])
                t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                for _ in loop:
                    fn()
                c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
                wall[k].append((t1 - t0) / sizes[k] / 1000.0)
                cpu[k].append((c1 - c0) / sizes[k] / 1000.0)
    finally:
        gc.enable()
    rows = []
    for (name, _), w, c, size in zip(cases, wall, cpu, sizes, strict=True):
        p90 = statistics.quantiles(w, n=10, method="inclusive")[8]
        rows.append(
            Row(group, name, statistics.median(w), p90, statistics.median(c), batches, size,
                cpu_samples=c, wall_samples=w)
        )  # fmt: skip
    return rows


def paired(
    rows: list[Row], group: str, name: str, base: str, samples: str = "cpu_samples"
) -> Paired | None:
    """Row ``name`` over row ``base`` of ``group`` (timed by one :func:`measure` call),
    batch by batch in thread CPU time (``samples="wall_samples"``: in wall time). The
    machine switches between fast and slow states (the same code runs at 3 or 6 µs);
    each batch ran both rows back to back, so a batch's ratio holds within one state
    where a ratio of medians may not."""
    by_name = {r.name: r for r in rows if r.group == group}
    a, b = by_name.get(name), by_name.get(base)
    if a is None or b is None:
        return None
    xs, ys = getattr(a, samples), getattr(b, samples)
    if not xs or len(xs) != len(ys):
        return None
    return _quartiles([x / y for x, y in zip(xs, ys, strict=True)])


def _quartiles(ratios: list[float]) -> Paired:
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return Paired(median, q1, q3, min(ratios), max(ratios), len(ratios))


def _add_values() -> tuple[Any, Any, Any, Any, Any]:
    """``add``'s two ``s32`` argument values and its result value, preallocated, and
    ``c_int32`` aliases of their payloads: ``(params, result, a, b, r)``."""
    val = wb.wasmtime_component_val_t
    params, result = (val * 2)(), val()
    payload = val.of.offset
    a, b = (ctypes.c_int32.from_address(ctypes.addressof(p) + payload) for p in params)
    r = ctypes.c_int32.from_address(ctypes.addressof(result) + payload)
    params[0].kind = params[1].kind = wasmtime._ffi.WASMTIME_COMPONENT_S32.value
    return params, result, a, b, r


def make_floor(func: Any, store: wasmtime.Store) -> Callable[[], int]:
    """``add(1, 2)`` through ``wasmtime_component_func_call`` with preallocated vals."""
    params, result, a, b, r = _add_values()
    call, fref, ctx = wb._wasmtime_component_func_call, ctypes.byref(func._func), store._context()
    rref = ctypes.byref(result)

    def floor() -> int:
        a.value = 1
        b.value = 2
        if call(fref, ctx, params, 2, rref, 1):
            raise RuntimeError("wasmtime_component_func_call failed")
        return r.value

    return floor


def make_lean_floor(func: Any, store: wasmtime.Store) -> Callable[[], int]:
    """:func:`make_floor` through the leanest ctypes prototype of the same C function:
    plain addresses (``c_void_p``/``c_size_t`` arguments, a ``void*`` result), which
    skips the bindings' typed-pointer checks and result object (about 0.7 µs). This
    is how wasmplug calls it; ``make_floor`` is the floor through wasmtime-py's bindings."""
    params, result, a, b, r = _add_values()
    vp, size = ctypes.c_void_p, ctypes.c_size_t
    address = ctypes.cast(wb._wasmtime_component_func_call, vp).value
    call = ctypes.CFUNCTYPE(vp, vp, vp, vp, size, vp, size)(address)
    fn, ctx = ctypes.addressof(func._func), ctypes.cast(store._context(), vp).value
    params_at, result_at = ctypes.addressof(params), ctypes.addressof(result)
    keep = (func, store, params, result)  # what the addresses point into

    def floor() -> int:
        a.value = 1
        b.value = 2
        if call(fn, ctx, params_at, 2, result_at, 1):
            raise RuntimeError("wasmtime_component_func_call failed", keep)
        return r.value

    return floor


def make_bare_floor(func: Any, store: wasmtime.Store) -> Callable[[], int]:
    """:func:`make_floor` through a prototype with no argument types, called with its
    six arguments built once (``byref`` objects for the pointers, ``c_size_t`` for the
    counts): ctypes passes each as it is, with no per-argument conversion call. This
    is how wasmplug calls it (``_bridge.ffi.func_call_args``)."""
    params, result, a, b, r = _add_values()
    vp, size = ctypes.c_void_p, ctypes.c_size_t
    call = ctypes.CFUNCTYPE(vp)(ctypes.cast(wb._wasmtime_component_func_call, vp).value)
    ctx = ctypes.cast(store._context(), vp).value or 0
    args = (ctypes.byref(func._func), ctypes.byref(ctypes.c_char.from_address(ctx)),
            ctypes.byref(params), size(2), ctypes.byref(result), size(1))  # fmt: skip
    keep = (func, store)  # what the arguments point into (args keeps params and result)

    def floor() -> int:
        a.value = 1
        b.value = 2
        if call(*args):
            raise RuntimeError("wasmtime_component_func_call failed", keep)
        return r.value

    return floor


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    models = [
        ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")
    ]
    return {
        "nproc": os.cpu_count(),
        "cpu": models[0] if models else platform.machine(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "wasmtime": version("wasmtime"),
        "wasmplug": version("wasmplug"),
        "extism": version("extism"),
        "extism_runtime": extism.extism_version(),
    }


def run(quick: bool) -> list[Row]:
    batches, batch_s, max_size = (5, 0.01, 500) if quick else (20, 0.05, 2000)
    host = PluginHost(cache_dir=False)
    plugin = host.load(COMPONENT_WAT.encode(), allow_unsigned=True)
    # Stock wasmtime-py: the same compiled component, in a Store of the same engine.
    engine = host._engine
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(2**62)  # the engine has epoch interruption on
    inst = Linker(engine).instantiate(store, plugin._component)
    stock = {name: inst.get_func(store, name) for name in ("add", "echo", "echo-record")}
    floor = make_floor(stock["add"], store)
    lean_floor = make_lean_floor(stock["add"], store)
    bare_floor = make_bare_floor(stock["add"], store)

    text = "wasmplug" * 128  # 1 KiB (ASCII, so 1 KiB of UTF-8 too)
    rec = Record()
    for i in range(NFIELDS):
        setattr(rec, f"f{i}", i * 7919)
    # Check every path computes the right answer before timing it.
    check(plugin.call("add", 1, 2) == plugin.exports.add(1, 2) == 3, "wasmplug add")
    check(stock["add"](store, 1, 2) == floor() == lean_floor() == bare_floor() == 3, "floors")
    check(plugin.call("echo", text) == stock["echo"](store, text) == text, "echo")
    got = plugin.call("echo-record", rec)
    check(all(getattr(got, f"f{i}") == i * 7919 for i in range(NFIELDS)), "wasmplug record")
    check(stock["echo-record"](store, rec) == rec, "stock record")

    extism_cases: list[Case] = []
    compiled: Any = None
    extism_failure = ""
    try:
        wasm = bytes(wasmtime.wat2wasm(EXTISM_WAT))
        xp = extism.Plugin(wasm, wasi=False)
        for n in (0, 1, 7, 8, 13, 1024, 70_001):  # word loop, byte tail, memory.grow
            blob = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
            check(xp.call("echo", blob) == blob, f"extism echo of {n} bytes")
            check(xp.call("echo_ref", blob) == blob, f"extism echo_ref of {n} bytes")
        compiled = extism.extism.CompiledPlugin(wasm, wasi=False)  # not re-exported by extism
        data = text.encode()
        extism_cases = [
            (EXTISM_ECHO, functools.partial(xp.call, "echo", data)),
            ("extism call('echo_ref', b) [no copy]", functools.partial(xp.call, "echo_ref", data)),
        ]
    except Exception as e:  # report why, never fake a number
        extism_failure = f"{type(e).__name__}: {str(e).splitlines()[0]}"

    def fresh_wasmplug() -> object:
        plugin.reset()  # discards the idle instance; the call instantiates a new one
        return plugin.call("add", 1, 2)

    def fresh_extism() -> object:
        return extism.Plugin(compiled).call("echo_ref", b"x")

    p = functools.partial
    groups: dict[str, list[Case]] = {
        # plugin.call next to the floors, so that each batch pairs them (paired()).
        "add": [
            (WP_ADD, p(plugin.call, "add", 1, 2)),
            (FLOOR_ADD, floor),
            (LEAN_FLOOR_ADD, lean_floor),
            (BARE_FLOOR_ADD, bare_floor),
            ("wasmplug plugin.exports.add(1, 2) [bound once]", p(plugin.exports.add, 1, 2)),
            (STOCK_ADD, p(stock["add"], store, 1, 2)),
        ],
        "echo 1KiB": [
            (WP_ECHO, p(plugin.call, "echo", text)),
            (STOCK_ECHO, p(stock["echo"], store, text)),
            *extism_cases,
        ],
        "record64": [
            (WP_REC, p(plugin.call, "echo-record", rec)),
            (STOCK_REC, p(stock["echo-record"], store, rec)),
        ],
        "instantiate": [
            ("wasmplug reset() + first call", fresh_wasmplug),
            *([("extism Plugin(compiled) + first call", fresh_extism)] if compiled else []),
        ],
    }
    rows: list[Row] = []
    for group, cases in groups.items():
        # The add ratios are the goal's (issue 11): more, shorter batches for a
        # tighter median of per-batch ratios.
        n = batches * (5 if quick else 2) if group == "add" else batches
        rows += measure(group, cases, n, batch_s, max_size)
        if extism_failure and group in ("echo 1KiB", "instantiate"):
            rows.append(Row(group, "extism", None, None, note=f"n/a: {extism_failure}"))
    host.close()
    return rows


def _spread(group: str, name: str, samples_us: list[float], note: str = "") -> Row:
    p90 = statistics.quantiles(samples_us, n=10, method="inclusive")[8]
    return Row(
        group, name, statistics.median(samples_us), p90, None, len(samples_us), 1, note,
        wall_samples=samples_us,
    )  # fmt: skip


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _recover_after_kill(plugin: Any, spares: int) -> float:
    """SIGKILL the idle worker; seconds until a call is served again."""
    backend = plugin._backend
    _wait(lambda: len(backend.worker_pids()) == 1 + spares, "the spare worker")
    [pid] = [w.pid for w in backend.pool.live()]
    start = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            check(plugin.call("add", 1, 2) == 3, "add after recovery")
            return time.perf_counter() - start
        except PluginCrashed:
            pass  # the kill was noticed by this call; the next one is served


def _recover_after_trap(plugin: Any) -> float:
    start = time.perf_counter()
    try:
        plugin.call("boom")
    except PluginTrapped:
        pass
    check(plugin.call("add", 1, 2) == 3, "add after a trap")
    return time.perf_counter() - start


def cpu_bound(lhost: PluginHost, phost: PluginHost, local: Any, quick: bool) -> list[Row]:
    """Throughput of a CPU-bound export from 2 threads, ``pool_size=2`` against ``1``, in
    both tiers: the in-process speed-up is the machine's own ceiling in this run.

    One ``burn(n)`` call takes ~50 ms in-process (the fastest of three timings, so
    that a preempted sample does not shrink ``n``). Each round times one batch of
    every row, the two batches of a tier back to back (which goes first alternates,
    and so does the tier), so a round's speed-up (its ``pool_size=1`` batch's time
    over its ``pool_size=2`` batch's) holds within one state of the machine: the
    summary reports the median of those per-round ratios, with their spread. During
    each ``pool_size=2`` batch of the process tier, the workers' CPU time (every
    thread, from ``/proc``: the Wasm, and each worker's epoch ticker) and the time they
    were runnable but waiting for a CPU are taken as shares of 2 CPUs for the batch.
    """
    wat = COMPONENT_WAT.encode()
    no_timeout = Limits(timeout_ms=None)
    n = 1 << 16
    while min(_burn_time(local, n) for _ in range(3)) < 0.05:
        n *= 2
    rounds, calls = (20, 8) if quick else (30, 16)
    tiers = [
        (LOCAL_BURN1, LOCAL_BURN2, lhost),
        (PROC_BURN1, PROC_BURN2, phost),
    ]
    plugins = {}
    for one, two, host in tiers:
        plugins[one] = host.load(wat, allow_unsigned=True, limits=no_timeout)
        plugins[two] = host.load(wat, allow_unsigned=True, limits=no_timeout, pool_size=2)
    for plugin in plugins.values():
        _throughput(plugin, n, 4)  # warm up: both workers / instances exist
    samples: dict[str, list[float]] = {name: [] for name in plugins}
    busy: list[float] = []
    waiting: list[float] = []
    workers = plugins[PROC_BURN2]._backend.pool
    for r in range(rounds):
        for one, two, _ in tiers if r % 2 == 0 else tiers[::-1]:
            for name in (one, two) if r // 2 % 2 == 0 else (two, one):
                pids = [w.pid for w in workers.live()] if name == PROC_BURN2 else []
                before = _schedstat(pids)
                took = _throughput(plugins[name], n, calls)
                samples[name].append(took * 1e6)
                if pids:
                    run, wait = (b - a for a, b in zip(before, _schedstat(pids), strict=True))
                    wall_ns = took * (calls // 2 * 2) * 1e9
                    busy.append(run / (2 * wall_ns))
                    waiting.append(wait / (2 * wall_ns))
    note = f"burn({n}), 2 threads, {calls} calls a batch"
    rows = [_spread("cpu-bound", name, values, note) for name, values in samples.items()]
    for row in rows:
        if row.name == PROC_BURN2:
            row.note += (
                f"; workers on CPU {statistics.median(busy):.0%} of 2 CPUs, "
                f"runnable but waiting {statistics.median(waiting):.0%} (medians)"
            )
    return rows


def _schedstat(pids: list[int]) -> tuple[int, int]:
    """``(ns on a CPU, ns runnable but waiting for one)`` of every thread of ``pids``
    (``/proc/PID/task/TID/schedstat``); a thread gone meanwhile is left out."""
    run = wait = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                    fields = fh.read().split()
            except OSError:
                continue
            run += int(fields[0])
            wait += int(fields[1])
    return run, wait


def _throughput(plugin: Any, n: int, calls: int) -> float:
    """Seconds per call of ``burn(n)`` with two threads calling at once."""

    def work() -> None:
        for _ in range(calls // 2):
            plugin.call("burn", n)

    threads = [threading.Thread(target=work) for _ in range(2)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.perf_counter() - start) / (calls // 2 * 2)


def _echo_child(conn: Any) -> None:
    """The other end of the pipe baseline: send back each message until EOF."""
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except EOFError:
        pass


def run_process(quick: bool) -> list[Row]:
    """The process isolation tier, each row next to its in-process counterpart and to
    the floor any worker process has: a ``multiprocessing`` pipe round trip."""
    batches, batch_s, max_size = (5, 0.02, 200) if quick else (15, 0.1, 1000)
    kills, cold_kills = (3, 1) if quick else (15, 3)
    text = "wasmplug" * 128
    wat = COMPONENT_WAT.encode()
    forever = RestartPolicy(max_faults=10**9)
    rows: list[Row] = []
    with (
        PluginHost(cache_dir=False) as lhost,
        PluginHost(cache_dir=False, isolation="process", spare_workers=1) as phost,
    ):
        local = lhost.load(wat, allow_unsigned=True, restart_policy=forever)
        remote = phost.load(wat, allow_unsigned=True, restart_policy=forever)
        check(remote.call("add", 1, 2) == 3 and remote.call("echo", text) == text, "process")
        p = functools.partial
        ours, theirs = multiprocessing.get_context("spawn").Pipe()
        child = multiprocessing.get_context("spawn").Process(target=_echo_child, args=(theirs,))
        child.start()
        theirs.close()

        def pipe_round_trip(payload: bytes) -> None:
            ours.send_bytes(payload)
            ours.recv_bytes()

        pipe_round_trip(b"ready")  # the child has started (calibration must not time that)
        try:
            rows += measure(
                "proc add",
                [
                    (WP_ADD, p(local.call, "add", 1, 2)),
                    (PROC_ADD, p(remote.call, "add", 1, 2)),
                    (PIPE_ADD, p(pipe_round_trip, b"x" * 16)),
                ],
                batches,
                batch_s,
                max_size,
            )
            rows += measure(
                "proc echo",
                [
                    (WP_ECHO, p(local.call, "echo", text)),
                    (PROC_ECHO, p(remote.call, "echo", text)),
                    (PIPE_ECHO, p(pipe_round_trip, text.encode())),
                ],
                batches,
                batch_s,
                max_size,
            )
        finally:
            ours.close()
            child.join(10)
        trap_local = [_recover_after_trap(local) * 1e6 for _ in range(kills * 4)]
        trap_proc = [_recover_after_trap(remote) * 1e6 for _ in range(kills * 4)]
        warm = [_recover_after_kill(remote, 1) * 1e6 for _ in range(kills)]
        rows += [
            _spread("recovery", LOCAL_TRAP, trap_local),
            _spread("recovery", PROC_TRAP, trap_proc),
            _spread("recovery", PROC_KILL, warm),
        ]
        with PluginHost(cache_dir=False, isolation="process", spare_workers=0) as cold_host:
            cold = cold_host.load(wat, allow_unsigned=True, restart_policy=forever)
            cold_s = [_recover_after_kill(cold, 0) * 1e6 for _ in range(max(cold_kills, 2))]
        rows.append(_spread("recovery", PROC_KILL_COLD, cold_s, "python start-up + load"))
        rows += cpu_bound(lhost, phost, local, quick)
    return rows


def _burn_time(plugin: Any, n: int) -> float:
    start = time.perf_counter()
    plugin.call("burn", n)
    return time.perf_counter() - start


PAIRED = {
    # summary line: (group, row, base, samples), as the median of per-batch ratios
    # (paired()) of thread CPU time or of wall time
    "add: wasmplug / floor": ("add", WP_ADD, FLOOR_ADD, "cpu_samples"),
    "add: wasmplug / lean-prototype floor": ("add", WP_ADD, LEAN_FLOOR_ADD, "cpu_samples"),
    "add: wasmplug / no-argtypes floor": ("add", WP_ADD, BARE_FLOOR_ADD, "cpu_samples"),
    # time per call with 1 worker over with 2, round by round (cpu_bound())
    SPEEDUP: ("cpu-bound", PROC_BURN1, PROC_BURN2, "wall_samples"),
    CEILING: ("cpu-bound", LOCAL_BURN1, LOCAL_BURN2, "wall_samples"),
}


def paired_summary(rows: list[Row]) -> dict[str, Paired]:
    out = {}
    for key, (group, name, base, samples) in PAIRED.items():
        ratio = paired(rows, group, name, base, samples)
        if ratio is not None:
            out[key] = ratio
    # The process tier's speed-up against the machine's own in the same round.
    by_name = {r.name: r.wall_samples for r in rows if r.group == "cpu-bound"}
    if all(by_name.get(n) for n in (PROC_BURN1, PROC_BURN2, LOCAL_BURN1, LOCAL_BURN2)):
        out[OF_CEILING] = _quartiles(
            [
                (p1 / p2) / (l1 / l2)
                for p1, p2, l1, l2 in zip(
                    by_name[PROC_BURN1], by_name[PROC_BURN2],
                    by_name[LOCAL_BURN1], by_name[LOCAL_BURN2], strict=True,
                )
            ]
        )  # fmt: skip
    return out


def summarize(rows: list[Row]) -> dict[str, float]:
    """Ratios of two rows. In-process rows: this thread's CPU time (the Wasm runs on
    it, and CPU time leaves out preemption), :data:`PAIRED`'s as medians of per-batch
    ratios, the others as ratios of medians. Process rows: wall-time medians (a
    worker's CPU time is not this thread's)."""
    inprocess = {"add", "echo 1KiB", "record64", "instantiate"}
    cpu = {r.name: r.cpu_us for r in rows if r.group in inprocess and r.cpu_us is not None}
    wall = {r.name: r.median_us for r in rows if r.median_us is not None}
    cpu_pairs = {
        "add: stock / wasmplug": (STOCK_ADD, WP_ADD),
        "echo: wasmplug echo / wasmplug add": (WP_ECHO, WP_ADD),
        "echo: stock / wasmplug": (STOCK_ECHO, WP_ECHO),
        "echo: extism (PDK copy) / wasmplug": (EXTISM_ECHO, WP_ECHO),
        "record: stock / wasmplug": (STOCK_REC, WP_REC),
    }
    wall_pairs = {
        "process add / inprocess add": (PROC_ADD, WP_ADD),
        "process add / pipe round trip": (PROC_ADD, PIPE_ADD),
        "process echo / inprocess echo": (PROC_ECHO, WP_ECHO),
        "process echo / pipe round trip 1 KiB": (PROC_ECHO, PIPE_ECHO),
        "process trap recovery / inprocess": (PROC_TRAP, LOCAL_TRAP),
        "process kill recovery (spare) / inprocess trap": (PROC_KILL, LOCAL_TRAP),
    }
    out = {key: ratio.median for key, ratio in paired_summary(rows).items()}
    for pairs, med in ((cpu_pairs, cpu), (wall_pairs, wall)):
        out.update((k, med[a] / med[b]) for k, (a, b) in pairs.items() if a in med and b in med)
    return out


def print_table(rows: list[Row], summary: dict[str, float], info: dict[str, Any]) -> None:
    print(
        f"machine: {info['nproc']} CPU ({info['cpu']}), load {info['loadavg']}, "
        f"Python {info['python']}, wasmtime-py {info['wasmtime']}, "
        f"extism {info['extism']} (runtime {info['extism_runtime']})"
    )
    print("note: shared VM, noisy: compare ratios within one run, not numbers across runs")
    header = (
        f"{'group':<12} {'variant':<48} {'median µs':>10} {'p90 µs':>9} {'cpu µs':>8} "
        f"{'x ref':>7}  batches"
    )
    print(header)
    print("-" * len(header))
    base: dict[str, float] = {}
    for r in rows:
        if r.median_us is None or r.p90_us is None:
            print(f"{r.group:<12} {r.name:<48} {'n/a':>10}  {r.note}")
            continue
        ref = base.setdefault(r.group, r.median_us)  # a group's first row is its reference
        print(
            f"{r.group:<12} {r.name:<48} {r.median_us:>10.2f} {r.p90_us:>9.2f} "
            f"{r.cpu_us or 0:>8.2f} {r.median_us / ref:>6.2f}x  {r.batches}x{r.batch_size}"
        )
    print()
    spreads = paired_summary(rows)
    for key, value in summary.items():
        spread = spreads.get(key)
        kind = "wall" if key in (SPEEDUP, CEILING, OF_CEILING) else "CPU"
        note = f"  ({kind}, {spread.spread()})" if spread else ""
        print(f"{key:<40} {value:6.2f}x{note}")
    goal = spreads.get("add: wasmplug / floor")
    if goal is not None:
        verdict = "met" if goal.median <= 1.3 else "NOT met"
        print(f"target: add via plugin.call <= 1.3x the floor (issue 11): {goal.median:.2f}x, "
              f"{verdict}; {goal.q3:.2f}x in the slowest quarter of batches")  # fmt: skip
    med = {r.name: r.median_us for r in rows if r.median_us is not None}
    goals = [
        (PROC_ADD, 60.0, "process add"),
        (PROC_ECHO, 80.0, "process echo 1 KiB"),
        (PROC_KILL, 50_000.0, "recovery after a kill, warm spare"),
    ]
    for name, goal, what in goals:
        if name in med:
            got = med[name] or 0.0
            print(
                f"target: {what} <= {goal:g} µs median: {got:.1f} µs, "
                f"{'met' if got <= goal else 'NOT met'}"
            )
    speedup, ceiling = spreads.get(SPEEDUP), spreads.get(CEILING)
    if speedup is not None and ceiling is not None:
        print(
            f"target: cpu-bound 2 workers vs 1 >= 1.8x: {speedup.median:.2f}x, "
            f"{'met' if speedup.median >= 1.8 else 'NOT met'} (IQR {speedup.q1:.2f}-"
            f"{speedup.q3:.2f}x; the machine's own in-process 2 vs 1: {ceiling.median:.2f}x; "
            f"load {os.getloadavg()[0]:.1f})"
        )
        busy = [r.note for r in rows if r.name == PROC_BURN2 and "workers on CPU" in r.note]
        if busy:
            print(f"  {PROC_BURN2}: {busy[0].split('; ', 1)[1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 short batches per row")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--group", choices=["all", "calls", "process"], default="all")
    args = parser.parse_args(argv)
    info = machine()
    rows = run(args.quick) if args.group in ("all", "calls") else []
    if args.group in ("all", "process"):
        rows += run_process(args.quick)
    summary = summarize(rows)
    print_table(rows, summary, info)
    if args.json:
        with open(args.json, "w") as fh:
            out = {"machine": info, "rows": [asdict(r) for r in rows], "summary": summary}
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-call overhead of wasmplug against stock wasmtime-py, a ctypes floor and Extism.

Usage: ``python benchmarks/bench_calls.py [--quick] [--json out.json]``

Every row is timed in batches (``time.perf_counter_ns`` around a loop of calls,
GC off); a row's numbers are the median and 90th percentile over its batches of
batch time / batch size. Compare ratios within one run: absolute numbers move
with machine load. The components are written below in WAT, so the script
needs nothing but wasmplug, wasmtime-py and the Extism Python SDK.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any

import extism
import wasmtime
from wasmtime import _bindings as wb  # private ctypes layer: only for the floor row
from wasmtime.component import Linker, Record

from wasmplug import PluginHost

NFIELDS = 64
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
    (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32)
      (result i32)
      (local $p i32) (local $end i32)
      (local.set $p (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $p) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
        (then (if (i32.eq (i32.const -1) (memory.grow (i32.shr_u
            (i32.add (i32.sub (local.get $end) (i32.shl (memory.size) (i32.const 16)))
                     (i32.const 65535))
            (i32.const 16))))
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
    (canon lift (core func $i "echo-record") {_LIFT_OPTS})))
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
    (local $len i64) (local $i i64) (local $out i64) (local $need i64)
    (local.set $len (call $input_length))
    (local.set $need (i64.sub (local.get $len)
      (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16))))
    (if (i64.gt_s (local.get $need) (i64.const 0))
      (then (if (i32.eq (i32.const -1) (memory.grow (i32.wrap_i64
          (i64.shr_u (i64.add (local.get $need) (i64.const 65535)) (i64.const 16)))))
        (then unreachable))))
    (block $done (loop $words
      (br_if $done (i64.gt_u (i64.add (local.get $i) (i64.const 8)) (local.get $len)))
      (i64.store (i32.wrap_i64 (local.get $i)) (call $input_load_u64 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 8)))
      (br $words)))
    (block $done (loop $bytes
      (br_if $done (i64.ge_u (local.get $i) (local.get $len)))
      (i32.store8 (i32.wrap_i64 (local.get $i)) (call $input_load_u8 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $bytes)))
    (local.set $out (call $alloc (local.get $len)))
    (local.set $i (i64.const 0))
    (block $done (loop $words
      (br_if $done (i64.gt_u (i64.add (local.get $i) (i64.const 8)) (local.get $len)))
      (call $store_u64 (i64.add (local.get $out) (local.get $i))
                       (i64.load (i32.wrap_i64 (local.get $i))))
      (local.set $i (i64.add (local.get $i) (i64.const 8)))
      (br $words)))
    (block $done (loop $bytes
      (br_if $done (i64.ge_u (local.get $i) (local.get $len)))
      (call $store_u8 (i64.add (local.get $out) (local.get $i))
                      (i32.load8_u (i32.wrap_i64 (local.get $i))))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $bytes)))
    (call $output_set (local.get $out) (local.get $len))
    (i32.const 0))
  (func (export "echo_ref") (result i32)
    (call $output_set (call $input_offset) (call $input_length))
    (i32.const 0)))
"""


@dataclass
class Row:
    group: str
    name: str
    median_us: float | None
    p90_us: float | None
    batches: int = 0
    batch_size: int = 0
    note: str = ""


def bench(fn: Callable[[], object], batches: int, batch_s: float, max_size: int) -> Row:
    """Warm up, pick a batch size that takes about ``batch_s``, and time ``batches`` batches."""
    start, n = time.perf_counter(), 0
    while n < 50 or time.perf_counter() - start < batch_s:  # warm-up doubles as calibration
        fn()
        n += 1
    size = max(5, min(max_size, int(n * batch_s / (time.perf_counter() - start))))
    loop = range(size)
    per_call: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(batches):
            t0 = time.perf_counter_ns()
            for _ in loop:
                fn()
            per_call.append((time.perf_counter_ns() - t0) / size / 1000.0)
    finally:
        gc.enable()
    p90 = statistics.quantiles(per_call, n=10, method="inclusive")[8]
    return Row("", "", statistics.median(per_call), p90, batches, size)


def make_floor(func: Any, store: wasmtime.Store) -> Callable[[], int]:
    """``add(1, 2)`` through ``wasmtime_component_func_call`` with preallocated vals."""
    val = wb.wasmtime_component_val_t
    params, result = (val * 2)(), val()
    s32 = wasmtime._ffi.WASMTIME_COMPONENT_S32.value
    payload = val.of.offset
    a, b = (ctypes.c_int32.from_address(ctypes.addressof(p) + payload) for p in params)
    r = ctypes.c_int32.from_address(ctypes.addressof(result) + payload)
    params[0].kind = params[1].kind = s32
    call, fref, ctx = wb._wasmtime_component_func_call, ctypes.byref(func._func), store._context()
    rref = ctypes.byref(result)

    def floor() -> int:
        a.value = 1
        b.value = 2
        if call(fref, ctx, params, 2, rref, 1):
            raise RuntimeError("wasmtime_component_func_call failed")
        return r.value

    return floor


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "wasmtime": version("wasmtime"),
        "wasmplug": version("wasmplug"),
        "extism": version("extism"),
        "extism_runtime": extism.extism_version(),
    }


def run(quick: bool) -> tuple[list[Row], dict[str, float]]:
    batches, batch_s, max_size = (5, 0.01, 500) if quick else (20, 0.05, 2000)
    rows: list[Row] = []

    def add(group: str, name: str, fn: Callable[[], object], note: str = "") -> float:
        row = bench(fn, batches, batch_s, max_size)
        row.group, row.name, row.note = group, name, note
        rows.append(row)
        print(f"  {group:<12} {name:<48} {row.median_us:>9.2f} µs", file=sys.stderr)
        return row.median_us or 0.0

    host = PluginHost(cache_dir=False)
    plugin = host.load(COMPONENT_WAT.encode(), allow_unsigned=True)
    # Stock wasmtime-py: the same compiled component, in a Store of the same engine.
    engine = host._engine
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(2**62)  # the engine has epoch interruption on
    inst = Linker(engine).instantiate(store, plugin._component)
    stock = {name: inst.get_func(store, name) for name in ("add", "echo", "echo-record")}
    floor = make_floor(stock["add"], store)

    text = "wasmplug" * 128  # 1 KiB (ASCII, so 1 KiB of UTF-8 too)
    rec = Record()
    for i in range(NFIELDS):
        setattr(rec, f"f{i}", i * 7919)
    # Check every path computes the right answer before timing it.
    assert plugin.call("add", 1, 2) == plugin.exports.add(1, 2) == 3
    assert stock["add"](store, 1, 2) == floor() == 3
    assert plugin.call("echo", text) == stock["echo"](store, text) == text
    got = plugin.call("echo-record", rec)
    assert all(getattr(got, f"f{i}") == i * 7919 for i in range(NFIELDS))
    assert stock["echo-record"](store, rec) == rec

    p = functools.partial
    wp_add = add("add", "wasmplug plugin.call('add', 1, 2)", p(plugin.call, "add", 1, 2))
    add("add", "wasmplug plugin.exports.add(1, 2) [bound once]", p(plugin.exports.add, 1, 2))
    st_add = add("add", "stock Func.__call__(store, 1, 2)", p(stock["add"], store, 1, 2))
    fl_add = add("add", "ctypes floor: raw func_call, preallocated", floor)
    wp_echo = add("echo 1KiB", "wasmplug plugin.call('echo', s)", p(plugin.call, "echo", text))
    st_echo = add("echo 1KiB", "stock Func.__call__(store, s)", p(stock["echo"], store, text))
    wp_rec = add(
        "record64", "wasmplug plugin.call('echo-record', r)", p(plugin.call, "echo-record", rec)
    )
    st_rec = add("record64", "stock Func.__call__(store, r)", p(stock["echo-record"], store, rec))
    summary = {
        "add: stock / wasmplug": st_add / wp_add,
        "add: wasmplug / floor": wp_add / fl_add,
        "echo: stock / wasmplug": st_echo / wp_echo,
        "record: stock / wasmplug": st_rec / wp_rec,
    }

    data = text.encode()
    try:
        wasm = bytes(wasmtime.wat2wasm(EXTISM_WAT))
        xp = extism.Plugin(wasm, wasi=False)
        for n in (0, 1, 7, 8, 13, 1024, 70_001):  # word loop, byte tail, memory.grow
            blob = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
            assert xp.call("echo", blob) == blob, f"extism echo broken at {n} bytes"
            assert xp.call("echo_ref", blob) == blob, f"extism echo_ref broken at {n} bytes"
        compiled = extism.extism.CompiledPlugin(wasm, wasi=False)  # not re-exported by extism
        x_echo = add(
            "echo 1KiB", "extism call('echo', b) [PDK-style copy]", p(xp.call, "echo", data)
        )
        summary["echo: extism (PDK copy) / wasmplug"] = x_echo / wp_echo
        add("echo 1KiB", "extism call('echo_ref', b) [no copy]", p(xp.call, "echo_ref", data))
    except Exception as e:  # report, never fake a number
        reason = f"{type(e).__name__}: {e}"
        rows.append(Row("echo 1KiB", "extism call('echo', b)", None, None, note=reason))
        compiled = None

    def fresh_wasmplug() -> object:
        plugin.reset()  # discards the idle instance; the call instantiates a new one
        return plugin.call("add", 1, 2)

    add("instantiate", "wasmplug reset() + first call", fresh_wasmplug)
    if compiled is not None:
        fresh = p(lambda c: extism.Plugin(c).call("echo_ref", b"x"), compiled)
        add("instantiate", "extism Plugin(compiled) + first call", fresh)
    else:
        rows.append(Row("instantiate", "extism Plugin(compiled)", None, None, note="see above"))
    host.close()
    return rows, summary


def print_table(rows: list[Row], summary: dict[str, float], info: dict[str, Any]) -> None:
    print(
        f"machine: {info['nproc']} CPU ({info['cpu']}), load {info['loadavg']}, "
        f"Python {info['python']}, wasmtime-py {info['wasmtime']}, "
        f"extism {info['extism']} (runtime {info['extism_runtime']})"
    )
    print("note: shared VM, noisy; compare ratios within a run, not absolute numbers across runs")
    base: dict[str, float] = {}
    order = {g: i for i, g in reversed(list(enumerate(r.group for r in rows)))}
    header = f"{'group':<12} {'variant':<48} {'median µs':>10} {'p90 µs':>9} {'x ref':>7}  batches"
    print(header)
    print("-" * len(header))
    for r in sorted(rows, key=lambda r: order[r.group]):
        if r.median_us is None or r.p90_us is None:
            print(f"{r.group:<12} {r.name:<48} {'n/a':>10} {'n/a':>9} {'':>7}  {r.note}")
            continue
        ref = base.setdefault(r.group, r.median_us)  # the group's first row is its reference
        print(
            f"{r.group:<12} {r.name:<48} {r.median_us:>10.2f} {r.p90_us:>9.2f} "
            f"{r.median_us / ref:>6.2f}x  {r.batches}x{r.batch_size}"
        )
    print()
    for key, value in summary.items():
        print(f"{key:<40} {value:6.2f}x")
    target = rows[0].median_us or 0.0
    verdict = "met" if target <= 8.0 else "NOT met"
    print(f"target: add via plugin.call ≤ 8 µs median: {target:.2f} µs, {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 short batches per row")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    info = machine()
    rows, summary = run(args.quick)
    print_table(rows, summary, info)
    if args.json:
        with open(args.json, "w") as fh:
            out = {"machine": info, "rows": [asdict(r) for r in rows], "summary": summary}
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

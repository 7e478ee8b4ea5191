"""The bridge's data paths against their floors (issue 11's speed table), in one run.

Usage: ``python benchmarks/bench_bridge.py [--quick] [--json out.json]``.

Every row is measured against a named baseline of the same run (the machine is a
shared, noisy 2-core VM, so only ratios within a run mean anything); timing uses
``bench_calls.measure`` (batches round-robin, GC off, median of wall time and of
this thread's CPU time per call). The component is ``bench_calls.COMPONENT_WAT``
plus list exports; nothing needs building.

Fresh instances and live-plugin density are measured by ``bench_instances.py``.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import statistics
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import wasmtime
from bench_calls import (
    COMPONENT_WAT,
    NFIELDS,
    Case,
    Row,
    check,
    machine,
    make_bare_floor,
    make_floor,
    make_lean_floor,
    measure,
    paired,
)
from wasmtime.component import Linker, Record

from wasmplug import Limits, PluginHost, WitTypeError
from wasmplug._bridge import ffi as wf
from wasmplug._runtime.plugin import find_export

MIB = 1 << 20
_LIFT_OPTS = '(memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))'
# A list is (ptr, len) like a string, so the string echo's core function serves them all.
LISTS = "".join(
    f'\n  (func (export "echo-{name}") (param "a" (list {t})) (result (list {t}))'
    f'\n    (canon lift (core func $i "echo") {_LIFT_OPTS}))'
    for name, t in (("bytes", "u8"), ("f64s", "f64"), ("s64s", "s64"))
)
WAT = COMPONENT_WAT.rstrip().removesuffix(")") + LISTS + ")\n"
ADD = "plugin.call('add', 1, 2)"
ADD_BOUND = "plugin.exports.add(1, 2) [bound once]"
FLOOR = "floor: raw func_call, preallocated"
LEAN_FLOOR = "floor: lean prototype (addresses)"
BARE_FLOOR = "floor: no argtypes (prebuilt args)"
ECHO = "plugin.call('echo', s), 1 KiB"
REC = "plugin.call('echo-record', r)"
REC_FLOOR = "floor: raw func_call, record prebuilt"
COPY = "baseline: bytes(memoryview) of 1 MiB"
BYTES = "echo-bytes(bytes)"
F64S = "echo-f64s(list[float])"
F64A = "echo-f64s(array('d'))"
S64S = "echo-s64s(list[int])"
LIST_FLOOR = "floor: raw func_call, list<u8> prebuilt"


def raw_call(plugin: Any, stock: Any, store: Any, export: str, arg: Any) -> Callable[[], object]:
    """``export(arg)`` through ``wasmtime_component_func_call`` on a stock instance,
    with the argument lowered once by wasmplug's converter: wasmtime's own cost
    (C-API values in, guest call, values out, deleting the result), which no
    Python binding of that API can go under."""
    params, result = (wf.Val * 1)(), wf.Val()
    find_export(plugin, export).lowers[0](arg, params[0], None)  # type: ignore[union-attr]
    func = stock.get_func(store, export)
    call, fn, ctx = wf.func_call, ctypes.byref(func._func), store._context()
    rref = ctypes.byref(result)

    def floor() -> object:
        if call(fn, ctx, params, 1, rref, 1):
            raise RuntimeError("wasmtime_component_func_call failed")
        kind = result.kind
        wf.val_delete(rref)
        result.kind = wf.BOOL
        return kind

    return floor


def measure_slow(group: str, cases: list[Case], rounds: int) -> list[Row]:
    """Median over ``rounds`` of one timed call per case (round-robin, GC off)."""
    wall: list[list[float]] = [[] for _ in cases]
    cpu: list[list[float]] = [[] for _ in cases]
    for _, fn in cases:
        fn()  # warm up
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for k, (_, fn) in enumerate(cases):
                t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                fn()
                c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
                wall[k].append((t1 - t0) / 1000.0)
                cpu[k].append((c1 - c0) / 1000.0)
    finally:
        gc.enable()
    return [
        Row(group, name, statistics.median(w), max(w), statistics.median(c), rounds, 1)
        for (name, _), w, c in zip(cases, wall, cpu, strict=True)
    ]


def run(quick: bool) -> list[Row]:
    batches, batch_s, max_size = (5, 0.01, 500) if quick else (15, 0.05, 2000)
    host = PluginHost(cache_dir=False, limits=Limits(timeout_ms=60_000))
    plugin = host.load(WAT.encode(), allow_unsigned=True)
    engine = host._engine
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(2**62)
    stock_inst = Linker(engine).instantiate(store, plugin._component)
    floor = make_floor(stock_inst.get_func(store, "add"), store)
    lean_floor = make_lean_floor(stock_inst.get_func(store, "add"), store)
    bare_floor = make_bare_floor(stock_inst.get_func(store, "add"), store)

    text = "wasmplug" * 128
    rec = Record()
    for i in range(NFIELDS):
        setattr(rec, f"f{i}", i * 7919)
    blob = bytes(range(256)) * (MIB // 256)
    floats = [i * 0.5 for i in range(MIB // 8)]
    floats_array = array("d", floats)
    ints = [i * 7919 - 2**40 for i in range(MIB // 8)]
    check(plugin.call("add", 1, 2) == floor() == lean_floor() == bare_floor() == 3, "add")
    check(plugin.call("echo", text) == text, "echo")
    got = plugin.call("echo-record", rec)
    check(all(getattr(got, f"f{i}") == i * 7919 for i in range(NFIELDS)), "record")
    check(plugin.call("echo-bytes", blob) == blob, "echo-bytes")
    check(plugin.call("echo-f64s", floats) == floats, "echo-f64s")
    try:  # older wasmplug versions take only list/tuple (to compare with them)
        arrays = plugin.call("echo-f64s", floats_array) == floats
    except WitTypeError:
        arrays = False
    check(plugin.call("echo-s64s", ints) == ints, "echo-s64s")
    rec_floor = raw_call(plugin, stock_inst, store, "echo-record", rec)
    list_floor = raw_call(plugin, stock_inst, store, "echo-bytes", blob)
    check((rec_floor(), list_floor()) == (wf.RECORD, wf.LIST), "floors")
    view = memoryview(blob)

    p = functools.partial
    groups: dict[str, list[Case]] = {
        # plugin.call next to the floors: each batch runs them back to back (paired()).
        "add": [(ADD, p(plugin.call, "add", 1, 2)), (FLOOR, floor), (LEAN_FLOOR, lean_floor),
                (BARE_FLOOR, bare_floor), (ADD_BOUND, p(plugin.exports.add, 1, 2))],
        "echo": [(ADD, p(plugin.call, "add", 1, 2)), (ECHO, p(plugin.call, "echo", text))],
        "record64": [(REC, p(plugin.call, "echo-record", rec)), (REC_FLOOR, rec_floor)],
    }  # fmt: skip
    rows: list[Row] = []
    for group, cases in groups.items():
        # More batches where a goal is a ratio of two rows of the group (paired()).
        n = batches * (5 if quick else 2) if group in ("add", "echo") else batches
        rows += measure(group, cases, n, batch_s, max_size)
    # A 1 MiB list takes about a second through wasmtime's C API (about 1 µs per
    # element, see LIST_FLOOR), too slow for measure()'s 50-call calibration:
    # each case runs once per round, rounds alternate, the median is kept.
    slow = [(COPY, p(bytes, view)), (BYTES, p(plugin.call, "echo-bytes", blob)),
            (F64S, p(plugin.call, "echo-f64s", floats)),
            *([(F64A, p(plugin.call, "echo-f64s", floats_array))] if arrays else []),
            (S64S, p(plugin.call, "echo-s64s", ints)), (LIST_FLOOR, list_floor)]  # fmt: skip
    rows += measure_slow("lists 1MiB", slow, rounds=3 if quick else 7)
    host.close()
    return rows


GOALS: dict[str, tuple[str, str, float]] = {
    # key: (row, baseline row, goal ratio); "" baseline: an absolute goal in µs / KiB
    "add / floor": (ADD, FLOOR, 1.3),
    "add / lean-prototype floor": (ADD, LEAN_FLOOR, 0.0),
    "add / no-argtypes floor": (ADD, BARE_FLOOR, 0.0),
    "echo 1 KiB / add": (ECHO, ADD, 1.5),
    "record64 echo (µs)": (REC, "", 60.0),
    "record64 / its floor": (REC, REC_FLOOR, 0.0),
    "list<u8> / memoryview copy": (BYTES, COPY, 2.0),
    "list<f64> / memoryview copy": (F64S, COPY, 2.0),
    "list<f64> from array / memoryview copy": (F64A, COPY, 0.0),
    "list<s64> / memoryview copy": (S64S, COPY, 2.0),
    "list<u8> floor / memoryview copy": (LIST_FLOOR, COPY, 0.0),
}


def summarize(rows: list[Row]) -> dict[str, tuple[float, float]]:
    """``key: (value, goal)`` for :data:`GOALS`. CPU time of the calling thread (wasmtime
    runs on it): unlike wall time, it leaves out the time the thread was preempted on
    this shared machine. A row and its baseline timed in the same batches give the
    median of the per-batch ratios (``bench_calls.paired``), others a ratio of medians."""
    med: dict[tuple[str, str], float] = {}
    for r in rows:
        if r.cpu_us is not None:
            med[(r.group, r.name)] = r.cpu_us
    by_name: dict[str, list[tuple[str, float]]] = {}
    for (group, name), value in med.items():
        by_name.setdefault(name, []).append((group, value))
    out: dict[str, tuple[float, float]] = {}
    for key, (row, base, goal) in GOALS.items():
        for group, value in by_name.get(row, []):
            if not base:
                out[key] = (value, goal)
            elif (group, base) in med:
                ratio = paired(rows, group, row, base)
                out[key] = (value / med[(group, base)] if ratio is None else ratio.median, goal)
    return out


def spreads(rows: list[Row]) -> dict[str, str]:
    """How the per-batch ratios behind :func:`summarize`'s paired figures spread."""
    out = {}
    for key, (row, base, _) in GOALS.items():
        for group in {r.group for r in rows if r.name == row}:
            ratio = paired(rows, group, row, base) if base else None
            if ratio is not None:
                out[key] = f"(CPU, {ratio.spread()})"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 short batches per row")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    info = machine()
    rows = run(args.quick)
    print(f"machine: {info['nproc']} CPU ({info['cpu']}), load {info['loadavg']}, "
          f"Python {info['python']}, wasmtime-py {info['wasmtime']}")  # fmt: skip
    header = f"{'group':<12} {'variant':<44} {'median µs':>10} {'p90 µs':>10} {'cpu µs':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.group:<12} {r.name:<44} {r.median_us:>10.2f} {r.p90_us:>10.2f} "
              f"{r.cpu_us or 0:>9.2f}")  # fmt: skip
    print()
    report(summarize(rows), rows, info, args.json, width=42, notes=spreads(rows))
    return 0


def report(
    summary: dict[str, tuple[float, float]],
    rows: list[Row],
    info: dict[str, Any],
    json_path: str | None,
    *,
    width: int,
    notes: dict[str, str] | None = None,
) -> None:
    """Print each summary figure against its goal (0: no goal) and its note, and
    write the JSON."""
    for key, (value, goal) in summary.items():
        verdict = "" if not goal else ("  met" if value <= goal else "  NOT met")
        target = f"goal <= {goal:g}" if goal else ""
        note = (notes or {}).get(key, "")
        print(f"{key:<{width}} {value:10.2f}  {target}{verdict}  {note}".rstrip())
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"machine": info, "rows": [asdict(r) for r in rows],
                       "summary": summary}, fh, indent=2)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

"""Fresh instances and live-plugin density (issue 11), each against a named baseline.

Usage: ``python benchmarks/bench_instances.py [--quick] [--density N] [--json out.json]``.

**instantiate.** A fresh instance plus its first call, ``plugin.reset()`` then
``plugin.call("add", 1, 2)``, with the default allocator and with
``PluginHost(instance_slots=16)`` (wasmtime's pooling allocator), against two
baselines on the same engine: stock wasmtime-py (``Store`` + ``Linker.instantiate``,
dropped, no call) and the C-API floor (``wasmtime_store_new``, the store limiter and
the deadline callback, ``wasmtime_component_linker_instantiate``,
``wasmtime_component_instance_get_func``, one ``wasmtime_component_func_call``,
``wasmtime_store_delete``: what wasmplug asks of wasmtime, through ctypes with
everything prepared once). Timing is ``bench_calls.measure`` (batches round-robin,
GC off); the ratios use the median CPU time of the calling thread per iteration.

**density.** ``N`` tiny plugins (one ``add`` export, no manifest) loaded by one host
and kept alive, each with its one instance: the growth of the process's resident set
(VmRSS) over ``N``, after a warm-up plugin so the compiled component and the host are
already counted. Baseline: the same ``N`` instances made with wasmtime's C API alone
(a store with the limiter and deadline callback, and the instance), kept alive.
Then wasmplug's Python share per plugin (``tracemalloc``, top allocation sites).
Each density figure runs in a fresh process.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime
from bench_bridge import report
from bench_calls import Case, Row, check, machine, measure
from wasmtime.component import Component, Linker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.tiny_wat import TINY_WAT
from wasmplug import Limits, PluginHost
from wasmplug._bridge import ffi as wf
from wasmplug._runtime import deadline

MIB = 1 << 20

FRESH = "reset() + first add"
FRESH_POOLED = "reset() + first add, instance_slots=16"
STOCK = "stock: Store + Linker.instantiate + drop"
STOCK_POOLED = "stock, pooling engine"
FLOOR = "floor: C API store+instantiate+call+delete"
FLOOR_POOLED = "floor, pooling engine"


def c_api_fresh(engine: wasmtime.Engine, component: Component) -> Callable[[], int]:
    """One fresh instance and its first ``add(1, 2)`` through wasmtime's C API alone."""
    linker = Linker(engine)
    engine_ptr, linker_ptr, component_ptr = engine.ptr(), linker.ptr(), component.ptr()
    index = component.get_export_index("add")
    assert index is not None
    index_ptr = index.ptr()
    params, result = (wf.Val * 2)(), wf.Val()
    params[0].kind = params[1].kind = wf.S32
    params[0].of.s32, params[1].of.s32 = 1, 2
    rref = ctypes.byref(result)
    limits = Limits()
    limiter = (limits.per_memory_bytes, limits.table_elements, limits.instances)
    limiter += (limits.tables, limits.memories)

    keep = (linker, index)  # what the raw pointers point into

    def fresh(_keep: object = keep) -> int:
        store = wf.RawStore(engine, engine_ptr)
        try:
            deadline.install(store.ptr)
            wf.store_limiter(store.ptr, *limiter)
            wf.set_epoch_deadline(store.context, 2**40)
            inst = store.instantiate_raw(linker_ptr, component_ptr)
            func = wf.export_func(ctypes.byref(inst), store.context, index_ptr)
            err = wf.func_call(func, store.context, params, 2, rref, 1)
            assert not err
            return int(result.of.s32)
        finally:
            store.close()

    return fresh


def stock_fresh(engine: wasmtime.Engine, component: Component) -> Callable[[], object]:
    def fresh() -> object:
        store = wasmtime.Store(engine)
        store.set_epoch_deadline(2**62)
        return Linker(engine).instantiate(store, component)

    return fresh


def run_instantiate(quick: bool) -> list[Row]:
    batches, batch_s, max_size = (5, 0.02, 500) if quick else (15, 0.05, 2000)
    wasm = bytes(wasmtime.wat2wasm(TINY_WAT))
    limits = Limits(timeout_ms=60_000)
    rows: list[Row] = []
    variants = [(None, (FRESH, STOCK, FLOOR)), (16, (FRESH_POOLED, STOCK_POOLED, FLOOR_POOLED))]
    for slots, names in variants:
        with PluginHost(cache_dir=False, limits=limits, instance_slots=slots) as host:
            plugin = host.load(wasm, allow_unsigned=True)
            engine, component = host._engine, plugin._component

            def fresh(plugin: Any = plugin) -> object:
                plugin.reset()
                return plugin.call("add", 1, 2)

            floor = c_api_fresh(engine, component)
            check(fresh() == floor() == 3, "fresh add")
            cases: list[Case] = [
                (names[0], fresh),
                (names[1], stock_fresh(engine, component)),
                (names[2], floor),
            ]
            rows += measure("instantiate", cases, batches, batch_s, max_size)
    return rows


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _density_wasmplug(n: int) -> dict[str, Any]:
    """RSS per live tiny plugin (run in a fresh process)."""
    wasm = bytes(wasmtime.wat2wasm(TINY_WAT))
    with PluginHost(cache_dir=False) as host:
        keep = [host.load(wasm, allow_unsigned=True)]  # compiles; counted before
        keep[0].call("add", 1, 2)
        gc.collect()
        before = rss_bytes()
        keep += [host.load(wasm, allow_unsigned=True) for _ in range(n)]
        check(keep[-1].call("add", 2, 3) == 5, "density plugin")
        gc.collect()
        return {"per_plugin": (rss_bytes() - before) / n}


def _density_c_api(n: int) -> dict[str, Any]:
    """RSS per live instance made with wasmtime's C API alone (a fresh process)."""
    engine = wasmtime.Engine(wasmtime.Config())
    component = Component(engine, TINY_WAT)
    linker = Linker(engine)
    lp, cp = linker.ptr(), component.ptr()
    limits = Limits()
    limiter = (limits.per_memory_bytes, limits.table_elements, limits.instances)
    limiter += (limits.tables, limits.memories)

    def one() -> tuple[Any, Any]:
        store = wf.RawStore(engine)
        deadline.install(store.ptr)
        wf.store_limiter(store.ptr, *limiter)
        return store, store.instantiate_raw(lp, cp)

    keep = [one()]
    gc.collect()
    before = rss_bytes()
    keep += [one() for _ in range(n)]
    gc.collect()
    return {"per_plugin": (rss_bytes() - before) / n}


def _density_python(n: int) -> dict[str, Any]:
    """wasmplug's Python allocations per live tiny plugin, and where (a fresh process)."""
    wasm = bytes(wasmtime.wat2wasm(TINY_WAT))
    with PluginHost(cache_dir=False) as host:
        keep = [host.load(wasm, allow_unsigned=True) for _ in range(10)]
        gc.collect()
        tracemalloc.start(1)
        first = tracemalloc.take_snapshot()
        keep += [host.load(wasm, allow_unsigned=True) for _ in range(n)]
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(first, "lineno")
        tracemalloc.stop()
        total = sum(s.size_diff for s in stats) / n
        src = str(Path(__file__).resolve().parent.parent / "src") + "/"
        top = [
            (str(s.traceback[0]).replace(src, ""), s.size_diff / n)
            for s in stats[:12]
            if s.size_diff / n >= 32
        ]
        return {"per_plugin": total, "top": top}


_DENSITY = {"wasmplug": _density_wasmplug, "c-api": _density_c_api, "python": _density_python}


def run_density(n: int) -> tuple[list[Row], list[tuple[str, float]]]:
    """The density rows, each measured in a fresh Python process."""
    out: dict[str, dict[str, Any]] = {}
    for kind, count in (("wasmplug", n), ("c-api", n), ("python", max(n // 5, 1000))):
        proc = subprocess.run(
            [sys.executable, __file__, "--_density", kind, str(count)],
            check=True,
            capture_output=True,
            text=True,
        )
        out[kind] = json.loads(proc.stdout)
    per, floor = out["wasmplug"]["per_plugin"], out["c-api"]["per_plugin"]
    python = out["python"]["per_plugin"]
    rows = [
        Row("density", f"{n} live tiny plugins: RSS per plugin (KiB)", per / 1024, per / 1024,
            note=f"{per * 10_000 / MIB:.1f} MiB per 10,000"),
        Row("density", "C API alone: RSS per store+instance (KiB)", floor / 1024, floor / 1024,
            note=f"{floor * 10_000 / MIB:.1f} MiB per 10,000"),
        Row("density", "wasmplug's Python objects per plugin (KiB)", python / 1024,
            python / 1024, note="tracemalloc"),
    ]  # fmt: skip
    return rows, [(site, size) for site, size in out["python"]["top"]]


def summarize(rows: list[Row]) -> dict[str, tuple[float, float]]:
    cpu = {r.name: r.cpu_us for r in rows if r.group == "instantiate" and r.cpu_us}
    out: dict[str, tuple[float, float]] = {}
    for row, stock, floor in ((FRESH, STOCK, FLOOR), (FRESH_POOLED, STOCK_POOLED, FLOOR_POOLED)):
        if row in cpu:
            out[f"{row} (µs CPU)"] = (cpu[row], 50.0)
            out[f"{row} / stock"] = (cpu[row] / cpu[stock], 0.0)
            out[f"{row} / C-API floor"] = (cpu[row] / cpu[floor], 0.0)
    dens = {r.name: r.median_us for r in rows if r.group == "density" and r.median_us}
    per = next((v for k, v in dens.items() if k.endswith("RSS per plugin (KiB)")), None)
    floor_kib = next((v for k, v in dens.items() if k.startswith("C API alone")), None)
    if per is not None:
        out["10,000 tiny plugins (MiB)"] = (per * 10_000 / 1024, 100.0)
        if floor_kib:
            out["RSS per plugin / C API alone"] = (per / floor_kib, 0.0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 short batches per row")
    parser.add_argument("--density", type=int, default=10_000, metavar="N",
                        help="tiny plugins for the density rows (0: skip)")  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--_density", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._density:  # a density figure, in this fresh process
        kind, n = args._density
        print(json.dumps(_DENSITY[kind](int(n))))
        return 0
    info = machine()
    rows = run_instantiate(args.quick)
    top: list[tuple[str, float]] = []
    if args.density:
        dens, top = run_density(args.density)
        rows += dens
    print(f"machine: {info['nproc']} CPU ({info['cpu']}), load {info['loadavg']}, "
          f"Python {info['python']}, wasmtime-py {info['wasmtime']}")  # fmt: skip
    header = f"{'group':<12} {'variant':<46} {'median µs':>10} {'p90 µs':>9} {'cpu µs':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if r.group == "density":
            print(f"{r.group:<12} {r.name:<46} {r.median_us:>10.2f} KiB  ({r.note})")
            continue
        print(f"{r.group:<12} {r.name:<46} {r.median_us:>10.2f} {r.p90_us:>9.2f} "
              f"{r.cpu_us or 0:>8.2f}")  # fmt: skip
    if top:
        print("\nwasmplug's Python allocations per plugin, by site (bytes):")
        for site, size in top:
            print(f"  {size:7.0f}  {site}")
    print()
    report(summarize(rows), rows, info, args.json, width=52)
    return 0


if __name__ == "__main__":
    sys.exit(main())

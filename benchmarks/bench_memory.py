"""What ``PluginHost(memory_accounting=True)`` costs a fresh instance, against the default.

Usage: ``python benchmarks/bench_memory.py [--quick] [--no-python] [--json out.json]``.

Each group loads one component into two hosts, a default one (wasmtime's own
allocator, copy-on-write memory images) and one with ``memory_accounting=True``
(wasmplug's memory creator, data segments copied at instantiation), and times
``plugin.reset()`` followed by the first call, in batches that alternate between
the two (GC off). Rows report the median wall time per fresh instance and its
ratio to the group's default row, and the median CPU time of the process (user +
system, all threads: a componentize-py plugin starts on its own call thread, and page
faults and ``munmap`` are system time). ``RSS/inst`` is the resident memory (VmRSS,
Linux) each of five more live plugins adds after its first call: copy-on-write leaves
the data pages an instance never writes shared with the image, a copy makes them
private.

Groups:

- ``tiny``: a WAT component, one 64 KiB memory, no data to speak of;
- ``data 4MiB``: the same with 4 MiB of data segments (copy-on-write maps them,
  accounting copies them);
- ``componentize-py``: the ``greeter`` test plugin (about 12 MiB of linear memory
  at start-up, much of it data). Built and compiled on first use (the compile of
  the accounting engine's variant is cached on disk too); ``--no-python`` skips it.

Calls on an instance that already exists cost the same on both hosts: the creator
runs only when a memory is created, grows or is freed.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wasmplug import Limits, Manifest, Plugin, PluginHost

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def tiny_wat(data_bytes: int = 0) -> str:
    """A component whose memory holds ``data_bytes`` of data segments (1 MiB each)."""
    pages = 1 + -(-data_bytes // 65536)
    chunk = "w" * MIB
    segments = "\n".join(
        f'    (data (i32.const {i * MIB}) "{chunk[: min(MIB, data_bytes - i * MIB)]}")'
        for i in range(-(-data_bytes // MIB))
    )
    return f"""
(component
  (core module $m
    (memory (export "mem") {pages})
{segments}
    (func (export "size") (result i32) (memory.size)))
  (core instance $i (instantiate $m))
  (func (export "size") (result u32) (canon lift (core func $i "size")))
)
"""


# A group makes a loader: host -> (a loaded plugin, its first call).
Loader = Callable[[PluginHost], tuple[Plugin, Callable[[Plugin], Any]]]


def _wat(data_bytes: int) -> Loader:
    def load(host: PluginHost) -> tuple[Plugin, Callable[[Plugin], Any]]:
        plugin = host.load(
            tiny_wat(data_bytes).encode(),
            allow_unsigned=True,
            manifest=Manifest(name="mem"),
            limits=Limits(memory_bytes=64 * MIB),
        )
        return plugin, lambda p: p.call("size")

    return load


def _greeter(host: PluginHost) -> tuple[Plugin, Callable[[Plugin], Any]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from support.plugins import GREETER_HOST_INTERFACE, build_greeter

    if not host.plugins:
        host.provide(
            GREETER_HOST_INTERFACE, {"log": lambda msg: None, "get-config": lambda key: None}
        )
    plugin = host.load(
        build_greeter(),
        allow_unsigned=True,
        manifest=Manifest(
            name="greeter", version="0.1.0", host_interfaces=(GREETER_HOST_INTERFACE,)
        ),
    )
    assert plugin.call("greet", "x") == "Hello, x!", "greeter answers"
    return plugin, lambda p: p.call("greet", "x")


def _fresh_instance(loaded: tuple[Plugin, Callable[[Plugin], Any]]) -> Callable[[], Any]:
    plugin, call = loaded

    def run() -> Any:
        plugin.reset()
        return call(plugin)

    return run


def _resident_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _resident_per_instance(host: PluginHost, load: Loader, n: int) -> float:
    """Resident memory (MiB) each of ``n`` more live plugins adds, after its first call."""
    gc.collect()
    before = _resident_kib()
    for _ in range(n):
        plugin, call = load(host)
        call(plugin)
    return (_resident_kib() - before) / n / 1024


def _measure(
    variants: dict[str, Callable[[], Any]], batches: int, target_s: float
) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and CPU seconds per operation, one entry per batch, variants alternating."""
    sizes = {}
    for name, op in variants.items():
        op()  # warm up, and size a batch to about target_s
        t0 = time.perf_counter()
        op()
        sizes[name] = max(1, int(target_s / max(time.perf_counter() - t0, 1e-6)))
    out: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in variants}
    gc.disable()
    try:
        for _ in range(batches):
            for name, op in variants.items():
                n = sizes[name]
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(n):
                    op()
                c1, t1 = time.process_time(), time.perf_counter()
                out[name][0].append((t1 - t0) / n)
                out[name][1].append((c1 - c0) / n)
    finally:
        gc.enable()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-python", action="store_true", help="skip the componentize-py group")
    parser.add_argument("--json", help="write the rows to this file")
    opts = parser.parse_args()
    batches, target_s = (7, 0.03) if opts.quick else (21, 0.1)
    groups: list[tuple[str, Loader]] = [("tiny", _wat(0)), ("data 4MiB", _wat(4 * MIB))]
    if not opts.no_python:
        groups.append(("componentize-py", _greeter))
    rows = []
    print(
        f"{'group':<16} {'variant':<24} {'median µs':>10} {'cpu µs':>9} {'x ref':>7} "
        f"{'RSS/inst':>9}"
    )
    for group, load in groups:
        with PluginHost() as default, PluginHost(memory_accounting=True) as accounted:
            hosts = {"default": default, "memory_accounting=True": accounted}
            variants = {name: _fresh_instance(load(h)) for name, h in hosts.items()}
            times = _measure(variants, batches, target_s)
            resident = {name: _resident_per_instance(h, load, 5) for name, h in hosts.items()}
            stats = accounted.stats()
            assert all(s.linear_memory_bytes for s in stats), "the gauge read each plugin"
        ref = statistics.median(times["default"][0])
        for name, (wall, cpu) in times.items():
            med = statistics.median(wall)
            row = {
                "group": group,
                "variant": name,
                "median_us": med * 1e6,
                "cpu_us": statistics.median(cpu) * 1e6,
                "x_ref": med / ref,
                "batches": len(wall),
                "resident_mib_per_instance": resident[name],
            }
            rows.append(row)
            print(
                f"{group:<16} {name:<24} {row['median_us']:10.1f} {row['cpu_us']:9.1f} "
                f"{row['x_ref']:6.2f}x {resident[name]:6.2f} MiB"
            )
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

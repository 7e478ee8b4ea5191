"""Guest output through a pipe (the default on Linux) vs wasmtime's callback stream.

Usage: ``python benchmarks/bench_stdio.py [--quick]``. One host loads the WAT writer of
``tests/support/stdout_wat.py`` twice: once wired through pipes, once through the
``stdout_custom`` callback (the baseline, what wasmplug did before and still does off
Linux). Each row times batches of calls, variants round-robin, GC off, and reports the
median wall time per call and the ratio pipe / callback. Output is discarded
(``stdio = "discard"``): this measures the transport, not the logging handlers.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.stdout_wat import STDOUT_WAT
from wasmplug import Manifest, Plugin, PluginHost
from wasmplug._sandbox import stdiopipe

ROWS: list[tuple[str, tuple[Any, ...], int]] = [
    ("no output: status()", ("status",), 200),
    ("one 200-byte write", ("write-once", 1, 200), 100),
    ("20,000 bytes (check-write loop)", ("write-all", 1, 20_000, 2**31), 50),
    ("1 MB (check-write loop)", ("write-all", 1, 1_000_000, 2**31), 5),
]


def _load(host: PluginHost, *, pipes: bool) -> Plugin:
    saved = stdiopipe._SUPPORTED
    stdiopipe._SUPPORTED = pipes and saved
    try:
        return host.load(
            STDOUT_WAT.encode(),
            allow_unsigned=True,
            manifest=Manifest(name=f"writer-{'pipe' if pipes else 'callback'}", stdio="discard"),
        )
    finally:
        stdiopipe._SUPPORTED = saved


def _per_call_us(plugin: Plugin, call: tuple[Any, ...], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        plugin.call(*call)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 batches instead of 30")
    args = parser.parse_args()
    if not stdiopipe.pipes_supported():
        sys.exit("pipes are used on Linux only: nothing to compare here")
    batches = 5 if args.quick else 30
    with PluginHost(cache_dir=False) as host:
        variants = {"pipe": _load(host, pipes=True), "callback": _load(host, pipes=False)}
        print(f"{'row':34} {'pipe us':>10} {'callback us':>12} {'pipe/callback':>14}")
        for name, call, n in ROWS:
            times: dict[str, list[float]] = {k: [] for k in variants}
            for plugin in variants.values():  # warm-up
                _per_call_us(plugin, call, max(1, n // 10))
            gc.disable()
            try:
                for _ in range(batches):
                    for key, plugin in variants.items():
                        times[key].append(_per_call_us(plugin, call, n))
            finally:
                gc.enable()
            pipe, cb = statistics.median(times["pipe"]), statistics.median(times["callback"])
            print(f"{name:34} {pipe:10.1f} {cb:12.1f} {pipe / cb:14.2f}")


if __name__ == "__main__":
    main()

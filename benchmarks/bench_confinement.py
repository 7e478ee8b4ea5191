"""What confining a worker process costs: ``worker_confinement="auto"`` against ``"off"``.

Usage: ``python benchmarks/bench_confinement.py [--quick]``. Three figures, each with
``"off"`` as the baseline in the same run, the two taking turns round by round:

* ``confine()``: the seccomp filter, the capabilities and the Landlock ruleset applied
  in a fresh interpreter that has imported what a worker imports (one per sample:
  confinement cannot be undone);
* ``process add``: ``plugin.call("add", 1, 2)`` through a worker (every system call of a
  confined worker goes through the filter), in batches of 2,000;
* recovery after a ``SIGKILL`` with a warm spare (the spare was confined when it
  started), and without one (a worker's whole start-up, confinement included).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wasmplug import PluginCrashed, PluginHost, RestartPolicy

ADD_WAT = """(component
  (core module $m (func (export "add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add))
  (core instance $i (instantiate $m))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add"))))"""

CONFINE = """
import sys, tempfile, time
from wasmplug._runtime.process import worker  # what a worker has imported
from wasmplug._runtime.cache import wasmtime_version
from wasmplug._runtime.process.jail import confine
from wasmplug._sandbox.grants import EffectiveSandbox
entry = tempfile.NamedTemporaryFile()
wasmtime_version()  # a worker reads it at start-up anyway (the compile cache's key)
start = time.perf_counter()
confine(sys.argv[1], entry.name, EffectiveSandbox())
print((time.perf_counter() - start) * 1e6)
"""
SRC = str(Path(__file__).resolve().parents[1] / "src")
MODES = ("off", "auto")
CONFINE_ROW = "confine() in a fresh worker, µs"
ADD_ROW = "process add, µs per call"
WARM_ROW = "SIGKILL, next call served [warm spare], ms"
COLD_ROW = "SIGKILL, next call served [no spare], ms"


def confine_us(mode: str) -> float:
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run(
        [sys.executable, "-c", CONFINE, mode], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout)


def add_us(plugin: Any, calls: int = 2000) -> float:
    for _ in range(200):
        plugin.call("add", 1, 2)
    start = time.perf_counter()
    for _ in range(calls):
        plugin.call("add", 1, 2)
    return (time.perf_counter() - start) / calls * 1e6


def recovery_ms(plugin: Any, spares: int) -> float:
    """SIGKILL the idle worker once its spares are ready; ms until a call is served."""
    backend = plugin._backend
    deadline = time.monotonic() + 120
    while len(backend.worker_pids()) != 1 + spares:
        if time.monotonic() > deadline:
            raise RuntimeError("the spare worker did not start")
        time.sleep(0.01)
    [pid] = [w.pid for w in backend.pool.live()]
    start = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            plugin.call("add", 1, 2)
            return (time.perf_counter() - start) * 1e3
        except PluginCrashed:
            pass  # this call noticed the kill; the next one is served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    rounds = 5 if parser.parse_args().quick else 15
    samples: dict[tuple[str, str], list[float]] = {}
    forever = RestartPolicy(max_faults=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        hosts = {
            (mode, spares): PluginHost(
                cache_dir=Path(tmp) / "cache",
                isolation="process",
                spare_workers=spares,
                worker_confinement=mode,  # type: ignore[arg-type]
            )
            for mode in MODES
            for spares in (0, 1)
        }
        try:
            plugins = {
                key: h.load(ADD_WAT.encode(), allow_unsigned=True, restart_policy=forever)
                for key, h in hosts.items()
            }
            for _ in range(rounds):
                for mode in MODES if _ % 2 else reversed(MODES):
                    warm, cold = plugins[mode, 1], plugins[mode, 0]
                    for name, value in (
                        (CONFINE_ROW, confine_us(mode)),
                        (ADD_ROW, add_us(warm)),
                        (WARM_ROW, recovery_ms(warm, 1)),
                        (COLD_ROW, recovery_ms(cold, 0)),
                    ):
                        samples.setdefault((name, mode), []).append(value)
        finally:
            for h in hosts.values():
                h.close()
    print(f"{rounds} rounds, 'auto' and 'off' alternating; load {os.getloadavg()[0]:.1f}")
    print(f"{'':48} {'off':>10} {'auto':>10} {'auto/off':>9}")
    for name in dict.fromkeys(n for n, _ in samples):
        off, auto = (statistics.median(samples[name, m]) for m in MODES)
        print(f"{name:48} {off:10.1f} {auto:10.1f} {auto / off:8.2f}x")


if __name__ == "__main__":
    main()

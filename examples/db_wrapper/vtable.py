"""The apsw virtual-table module ``wasm``: SQLite tables served by Wasm FDW plugins.

SQL syntax::

    CREATE VIRTUAL TABLE penguins USING wasm(plugin='csv-source', file='penguins.csv');

``plugin`` names an installed plugin (loaded from the module's registry with its
grants and limits); ``isolation='process'`` runs it in a worker process (killed
if a scan hangs past its time limit, or crashes, without taking SQLite down;
default ``'inprocess'``); every other ``key=value`` argument is passed to the
plugin as an option. Values may be bare, 'single-' or "double-quoted". The plugin's
``init`` describes the columns.

Planning (``BestIndexObject``) pushes usable ``=``, ``<>``, ``<``, ``<=``, ``>``
and ``>=`` constraints with the default (BINARY) collation and, when SQLite
offers it and there is no ORDER BY, the LIMIT (plus OFFSET) down to the
plugin; it never sets ``omit``, so SQLite re-checks every row and a plugin that
ignores them is still correct. What was pushed is encoded in ``idxStr`` as
JSON. A scan is ``begin-scan`` (columns the statement uses, quals, limit), then
``iter-scan`` batches of up to ``batch_size`` rows (the component boundary is
crossed once per batch, not once per cell), then ``end-scan``. A batch is
columnar (one typed list per column, see ``wit/fdw.wit``); each is turned into
SQLite values once (:func:`~examples.db_wrapper.fdw.column_to_sql`) and the
batch into row tuples with one ``zip``, so ``Column`` is one tuple index. A
scan that uses no column (``count(*)``) gets only row counts, and its rows are
one shared tuple of NULLs.

A plugin that returns ``err(fdw-error)`` or faults (trap, timeout, memory
limit) fails that one statement with :class:`~examples.db_wrapper.fdw.FdwError`
(an ``apsw.SQLError``); wasmplug discards a faulty instance and the next
statement gets a fresh one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import repeat
from time import perf_counter_ns
from typing import Any, Final

import apsw

from wasmplug import (
    Grants,
    Limits,
    Plugin,
    PluginError,
    PluginFault,
    PluginHost,
    Registry,
    WasmplugError,
)

from .bindings import PluginExports
from .fdw import (
    SOURCE_INTERFACE,
    FdwError,
    HostServices,
    Qual,
    ScanContext,
    ScanRecord,
    column_to_sql,
    log,
    parse_option,
    sql_to_cell,
)

__all__ = ["WasmCursor", "WasmModule", "WasmTable"]

BATCH_SIZE: Final = 1024
_OPS: Final = {
    apsw.SQLITE_INDEX_CONSTRAINT_EQ: ("eq", 0.1),
    apsw.SQLITE_INDEX_CONSTRAINT_NE: ("ne", 0.9),
    apsw.SQLITE_INDEX_CONSTRAINT_LT: ("lt", 0.33),
    apsw.SQLITE_INDEX_CONSTRAINT_LE: ("le", 0.33),
    apsw.SQLITE_INDEX_CONSTRAINT_GT: ("gt", 0.33),
    apsw.SQLITE_INDEX_CONSTRAINT_GE: ("ge", 0.33),
}
_AFFINITY: Final = {"integer": "INTEGER", "real": "REAL", "text": "TEXT", "blob": "BLOB", "": ""}
_FULL_SCAN: Final = 1e6  # the planner's idea of one scan's cost: every plugin scan reads it all


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class WasmModule:
    """The ``wasm`` module: one per application, registered on any number of connections.

    Args:
        host: Loads the plugins. The ``wasmplug-demo:fdw/host`` interface is
            provided to it here.
        registry: Where the plugins are installed.
        grants: Plugin name → what it may access. A plugin not named here gets
            what ``host.policy`` decides (by default: nothing).
        limits: Limits for every plugin, or plugin name → limits (default: the host's).
        batch_size: Rows asked for per ``iter-scan`` call.

    Attributes:
        scans: Every scan made, oldest first (see :meth:`take_scans`).
    """

    def __init__(
        self,
        host: PluginHost,
        registry: Registry,
        grants: Mapping[str, Grants] | None = None,
        limits: Limits | Mapping[str, Limits] | None = None,
        *,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.host = host
        self.registry = registry
        self.grants = dict(grants or {})
        self.limits = limits
        self.batch_size = batch_size
        self.scans: list[ScanRecord] = []
        self.tables: dict[str, WasmTable] = {}
        self._last: dict[str, ScanRecord] = {}
        HostServices.install(host)

    def register(self, connection: apsw.Connection, name: str = "wasm") -> None:
        """Make ``CREATE VIRTUAL TABLE ... USING wasm(...)`` available on ``connection``."""
        connection.create_module(name, self, use_bestindex_object=True)  # type: ignore[arg-type]

    def last_scan(self, table: str) -> ScanRecord:
        """The latest scan of ``table``: the :class:`ScanContext` sent and the plugin's stats.

        Raises:
            KeyError: the table has not been scanned.
        """
        return self._last[table.lower()]

    def take_scans(self) -> list[ScanRecord]:
        """Return the scans made since the last call, and forget them."""
        scans, self.scans = self.scans, []
        return scans

    def _record(self, record: ScanRecord) -> None:
        self.scans.append(record)
        self._last[record.table.lower()] = record

    def _limits_for(self, plugin: str) -> Limits | None:
        if self.limits is None or isinstance(self.limits, Limits):
            return self.limits
        return self.limits.get(plugin)

    # -- apsw VTModule ------------------------------------------------------------------------

    def Create(  # noqa: N802 - apsw's method names
        self,
        connection: apsw.Connection,
        modulename: str,
        databasename: str,
        tablename: str,
        *args: Any,
    ) -> tuple[str, WasmTable]:
        try:
            options = [parse_option(str(a)) for a in args]
        except ValueError as e:
            raise apsw.SQLError(f"wasm table {tablename!r}: {e}") from None
        names = [v for k, v in options if k == "plugin"]
        if len(names) != 1:
            raise apsw.SQLError(
                f"wasm table {tablename!r}: give exactly one plugin='name' option "
                "(the installed plugin that serves the table)"
            )
        isolation = [v for k, v in options if k == "isolation"] or ["inprocess"]
        if len(isolation) != 1 or isolation[0] not in ("inprocess", "process"):
            raise apsw.SQLError(
                f"wasm table {tablename!r}: isolation must be 'inprocess' or 'process'"
            )
        options = [(k, v) for k, v in options if k not in ("plugin", "isolation")]
        try:
            plugin = self.host.load_installed(
                names[0],
                registry=self.registry,
                grants=self.grants.get(names[0]),
                limits=self._limits_for(names[0]),
                isolation=isolation[0],  # type: ignore[arg-type]
            )
        except WasmplugError as e:
            raise apsw.SQLError(
                f"wasm table {tablename!r}: cannot load plugin {names[0]!r}: "
                f"{type(e).__name__}: {e}"
            ) from e
        table = WasmTable(self, tablename, plugin, options)
        try:
            schema = table.init()
        except BaseException:
            plugin.close()
            raise
        self.tables[tablename.lower()] = table
        return schema, table

    Connect = Create


class WasmTable:
    """One virtual table: its plugin, options and columns (apsw ``VTTable``)."""

    def __init__(
        self,
        module: WasmModule,
        name: str,
        plugin: Plugin,
        options: Sequence[tuple[str, str]],
    ) -> None:
        self.module = module
        self.name = name
        self.plugin = plugin
        # Typed exports from the generated bindings. begin-scan and iter-scan go through
        # plugin.call: the scan context is fdw.ScanContext, and a batch's typed lists
        # stay the bridge's plain lists (no per-value conversion on the hot path).
        self.source = PluginExports(plugin).source
        self.options = tuple(options)
        self.columns: list[tuple[str, str]] = []  # (name, affinity)
        # Bumped on every fault: the instance holding earlier scans is gone.
        self.generation = 0

    @contextmanager
    def calling(self, func: str, record: ScanRecord | None) -> Iterator[None]:
        """Around a call of ``source.<func>``: an ``err`` or a fault becomes :class:`FdwError`."""
        with HostServices.calling(self.plugin.name, record):
            try:
                yield
            except PluginError as e:
                if isinstance(e, PluginFault):
                    self.generation += 1
                raise FdwError.from_plugin_error(self.name, self.plugin.name, func, e) from e

    def call(self, func: str, record: ScanRecord | None, *args: Any) -> Any:
        """Call ``source.<func>`` untyped (see :meth:`calling`)."""
        with self.calling(func, record):
            return self.plugin.call(f"{SOURCE_INTERFACE}#{func}", *args)

    def init(self) -> str:
        """Ask the plugin for the columns; return the ``CREATE TABLE`` for SQLite."""
        with self.calling("init", None):
            columns = self.source.init(list(self.options))
        problems = []
        for col in columns:
            if col.type_name not in _AFFINITY:
                problems.append(f"column {col.name!r} has unknown type {col.type_name!r}")
            self.columns.append((col.name, col.type_name if col.type_name in _AFFINITY else ""))
        if not self.columns:
            problems.append("no columns")
        if problems:
            raise FdwError(self.name, self.plugin.name, "init", "schema", "; ".join(problems))
        decl = ", ".join(f"{_quote(n)} {_AFFINITY[t]}".rstrip() for n, t in self.columns)
        return f"CREATE TABLE x({decl})"

    # -- apsw VTTable ----------------------------------------------------------------------

    def BestIndexObject(self, info: apsw.IndexInfo) -> bool:  # noqa: N802
        args: list[list[Any]] = []
        rows = _FULL_SCAN
        limit = offset = None
        for i in range(info.nConstraint):
            if not info.get_aConstraint_usable(i):
                continue
            op = info.get_aConstraint_op(i)
            if op == apsw.SQLITE_INDEX_CONSTRAINT_LIMIT:
                limit = i
            elif op == apsw.SQLITE_INDEX_CONSTRAINT_OFFSET:
                offset = i
            elif op in _OPS and (col := info.get_aConstraint_iColumn(i)) >= 0:
                # A plugin compares bytes; with NOCASE etc. it could drop rows SQLite wants.
                if info.get_aConstraint_collation(i).upper() != "BINARY":
                    continue
                name, selectivity = _OPS[op]
                args.append([col, name])
                info.set_aConstraintUsage_argvIndex(i, len(args))
                rows *= selectivity
        # Rows come unordered, so a LIMIT is only pushed when nothing is sorted first.
        if limit is not None and info.nOrderBy == 0:
            args.append(["limit"])
            info.set_aConstraintUsage_argvIndex(limit, len(args))
            rhs = info.get_aConstraint_rhs(limit)
            if isinstance(rhs, int) and rhs >= 0:
                rows = min(rows, rhs)
            if offset is not None:
                args.append(["offset"])
                info.set_aConstraintUsage_argvIndex(offset, len(args))
        used = info.colUsed
        ncols = len(self.columns)
        if any(c >= 63 for c in used):  # bit 63 stands for "63 and above"
            used = used | set(range(63, ncols))
        columns = sorted(c for c in used if 0 <= c < ncols)
        info.idxStr = json.dumps({"columns": columns, "args": args}, separators=(",", ":"))
        info.estimatedRows = max(1, int(rows))
        info.estimatedCost = _FULL_SCAN + rows
        return True

    def Open(self) -> WasmCursor:  # noqa: N802
        return WasmCursor(self)

    def Disconnect(self) -> None:  # noqa: N802
        self.plugin.close()
        if self.module.tables.get(self.name.lower()) is self:
            del self.module.tables[self.name.lower()]

    Destroy = Disconnect


class WasmCursor:
    """One scan at a time over a :class:`WasmTable` (apsw ``VTCursor``)."""

    def __init__(self, table: WasmTable) -> None:
        self.table = table
        self.batch_size = table.module.batch_size
        self.scan_id: int | None = None
        self.generation = table.generation
        self.context: ScanContext | None = None
        self.record: ScanRecord | None = None
        self.wanted: list[int] = []  # the table columns requested, in the scan's order
        self.rows: Iterator[tuple[Any, ...]] = iter(())
        self.row: tuple[Any, ...] = ()  # the current row: one value per table column
        self.no_columns = (None,) * len(table.columns)  # every row when no column is used
        self.rowid = 0
        self.eof = True

    def _context(self, idxstr: str | None, args: Sequence[Any]) -> ScanContext:
        table = self.table
        plan = json.loads(idxstr) if idxstr else {}
        columns = plan.get("columns", list(range(len(table.columns))))
        quals: list[Qual] = []
        limit: int | None = None
        offset: int | None = 0
        for spec, value in zip(plan.get("args", ()), args, strict=False):
            if spec[0] == "limit":
                limit = value if isinstance(value, int) and value >= 0 else None
            elif spec[0] == "offset":
                offset = max(value, 0) if isinstance(value, int) else None
            else:
                name, affinity = table.columns[spec[0]]
                cell = sql_to_cell(value, affinity)
                if cell is not None:
                    quals.append(Qual(name, spec[1], cell))
        self.wanted = columns
        return ScanContext(
            options=table.options,
            columns=tuple(table.columns[c][0] for c in columns),
            quals=tuple(quals),
            limit=None if limit is None or offset is None else limit + offset,
        )

    def Filter(self, indexnum: int, indexname: str | None, constraintargs: Any) -> None:  # noqa: N802
        table = self.table
        context = self._context(indexname, constraintargs or ())
        alive = self.scan_id is not None and self.generation == table.generation
        record = ScanRecord(table.name, table.plugin.name, context)
        table.module._record(record)
        self.record, self.rows, self.row, self.rowid, self.eof = record, iter(()), (), 0, False
        if alive and context == self.context:
            record.rescan = True
            assert self.scan_id is not None
            with table.calling("re-scan", record):
                table.source.re_scan(self.scan_id)
        else:
            self._end()
            self.generation = table.generation
            self.scan_id = table.call("begin-scan", record, context)
            self.context = context
        self._fill()

    def _fill(self) -> None:
        record, context, table = self.record, self.context, self.table
        assert record is not None
        assert context is not None
        want = self.batch_size
        if context.limit is not None:
            want = min(want, context.limit - record.rows)
        if want <= 0:
            self.eof = True
            return
        batch = table.call("iter-scan", record, self.scan_id, want)
        start = perf_counter_ns()
        record.batches += 1
        n = batch.rows
        try:
            if len(batch.columns) != len(context.columns):
                raise ValueError(
                    f"a batch has {len(batch.columns)} columns, "
                    f"but {len(context.columns)} were requested"
                )
            if n > want:
                raise ValueError(f"a batch has {n} rows, but at most {want} were asked for")
            if self.wanted:
                # One list per table column; the columns the statement does not use
                # share one list of None (zip iterates each argument on its own).
                columns: list[list[Any]] = [[None] * n] * len(table.columns)
                for col, data in zip(self.wanted, batch.columns, strict=True):
                    columns[col] = column_to_sql(data, n, table.columns[col][1])
                self.rows = zip(*columns, strict=True)
            else:
                # No column used (count(*)): only the row count crossed, and every
                # row is one shared tuple of NULLs, not n new ones.
                self.rows = repeat(self.no_columns, n)
        except ValueError as e:
            raise FdwError(table.name, table.plugin.name, "iter-scan", "protocol", str(e)) from None
        record.rows += n
        record.convert_ns += perf_counter_ns() - start
        self.row = next(self.rows, ())
        self.eof = not n

    def Eof(self) -> bool:  # noqa: N802
        return self.eof

    def Next(self) -> None:  # noqa: N802
        self.rowid += 1
        row = next(self.rows, None)
        if row is None:
            self._fill()
        else:
            self.row = row

    def Column(self, number: int) -> Any:  # noqa: N802
        if number < 0:
            return self.rowid
        return self.row[number]

    def Rowid(self) -> int:  # noqa: N802
        return self.rowid

    def _end(self) -> None:
        scan_id, self.scan_id = self.scan_id, None
        if scan_id is None or self.generation != self.table.generation:
            return  # never started, or it lived in an instance that has been discarded
        try:
            with self.table.calling("end-scan", self.record):
                self.table.source.end_scan(scan_id)
        except apsw.Error as e:
            log.warning("%s", e)

    def Close(self) -> None:  # noqa: N802
        self._end()

"""The host side of the ``wasmplug-demo:fdw`` WIT: values, conversions and host services.

Everything here is independent of SQLite's virtual-table protocol (that is
``vtable.py``): the records the host sends (:class:`ScanContext`, :class:`Qual`),
what it remembers about each scan (:class:`ScanRecord`), the conversions
between WIT ``cell`` values and columnar ``column-data`` and SQLite values
(:func:`column_to_sql`), the ``host`` interface the
plugins import (:class:`HostServices`), and :class:`FdwError`, the SQL error a
failing plugin turns into.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import apsw
import attrs

from wasmplug import PluginError, PluginFault, PluginHost, Variant

from .bindings import HostImports, Level, provide_host, provide_types

__all__ = [
    "HOST_INTERFACE",
    "SOURCE_INTERFACE",
    "TYPES_INTERFACE",
    "FdwError",
    "HostServices",
    "Qual",
    "ScanContext",
    "ScanRecord",
    "cell_to_sql",
    "column_to_sql",
    "parse_option",
    "sql_to_cell",
]

SOURCE_INTERFACE: Final = "wasmplug-demo:fdw/source@0.2.0"
"""The interface every data-source plugin exports."""
HOST_INTERFACE: Final = "wasmplug-demo:fdw/host@0.2.0"
"""The interface every data-source plugin imports (implemented by :class:`HostServices`)."""
TYPES_INTERFACE: Final = "wasmplug-demo:fdw/types@0.2.0"
"""Types only (no functions), but imported by every plugin, so it is provided too."""
WIT_DIR: Final = Path(__file__).parent / "wit"
"""The WIT package of the interfaces: plugins reach exactly the host functions it defines."""

log = logging.getLogger("examples.db_wrapper")
plugin_log = logging.getLogger("examples.db_wrapper.plugin")

# -- records sent to plugins -------------------------------------------------------------


@attrs.frozen
class Qual:
    """A pushed-down WHERE condition, ``column op value`` (WIT ``qual``).

    ``value`` is the WIT ``cell`` sent to the plugin, e.g. ``Variant("s64", 3)``.
    """

    column: str
    op: str
    value: Variant

    def __str__(self) -> str:
        sym = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[self.op]
        return f"{self.column} {sym} {apsw.format_sql_value(cell_to_sql(self.value))}"


@attrs.frozen
class ScanContext:
    """Everything a plugin gets for one scan (WIT ``scan-context``)."""

    options: tuple[tuple[str, str], ...]
    columns: tuple[str, ...]
    quals: tuple[Qual, ...] = ()
    limit: int | None = None


@attrs.define
class ScanRecord:
    """What the host knows about one scan: what it sent and what came back.

    Attributes:
        table: The virtual table's name.
        plugin: The plugin's name.
        context: The :class:`ScanContext` sent with ``begin-scan``.
        stats: The latest value of each counter the plugin reported with
            ``host.stat`` (``rows-read``, ``rows-returned``...).
        rows: Rows the host received.
        batches: ``iter-scan`` calls made.
        rescan: The scan was restarted with ``re-scan`` instead of a new ``begin-scan``.
        convert_ns: Nanoseconds the host spent turning the batches' columns into
            SQLite values (:func:`column_to_sql`); ``benchmarks/bench_fdw.py``
            reports it in its breakdown.
    """

    table: str
    plugin: str
    context: ScanContext
    stats: dict[str, int] = attrs.field(factory=dict)
    rows: int = 0
    batches: int = 0
    rescan: bool = False
    convert_ns: int = 0

    def describe(self) -> str:
        """One line for humans: what was pushed down and how many rows were read/returned."""
        quals = " AND ".join(str(q) for q in self.context.quals) or "none"
        limit = "none" if self.context.limit is None else str(self.context.limit)
        read = self.stats.get("rows-read", "?")
        returned = self.stats.get("rows-returned", self.rows)
        return (
            f"{self.table} ({self.plugin}): quals: {quals}; limit: {limit}; "
            f"columns: {', '.join(self.context.columns) or '(none)'}; "
            f"rows read {read}, returned {returned}"
        )


# -- cells <-> SQLite values -----------------------------------------------------------------

_EPOCH: Final = dt.datetime(1970, 1, 1)
_EPOCH_DATE: Final = _EPOCH.date()
SQLValue = int | float | str | bytes | None


def _date(days: int) -> str:
    return (_EPOCH_DATE + dt.timedelta(days=days)).isoformat()


def _timestamp(micros: int) -> str:
    # UTC, in SQLite's own datetime format (date and time functions understand it).
    return (_EPOCH + dt.timedelta(microseconds=micros)).isoformat(sep=" ")


_CONVERT: Final[dict[str, Callable[[Any], SQLValue]]] = {
    "null": lambda _: None,
    "bool": int,
    "date": _date,
    "timestamp": _timestamp,
}
_PLAIN: Final = frozenset({"s64", "f64", "string", "json"})


def cell_to_sql(cell: Variant) -> SQLValue:
    """A WIT ``cell`` as an SQLite value (date → ``'YYYY-MM-DD'``, timestamp →
    ``'YYYY-MM-DD HH:MM:SS[.ffffff]'`` in UTC, json → text, bool → 0/1)."""
    case = cell.case
    if case in _PLAIN:
        return cell.value  # type: ignore[no-any-return]
    return _CONVERT[case](cell.value)


_COLUMN_CONVERT: Final[dict[str, Callable[[Any], SQLValue]]] = {
    "bool": int,
    "date": _date,
    "timestamp": _timestamp,
    "mixed": cell_to_sql,
}


SEPARATOR: Final = "\x1e"
"""What joins the values of a ``text`` column (U+001E, the record separator)."""
_INTEGER: Final = re.compile(r"\s*[+-]?[0-9]+\s*")
_REAL: Final = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")
# A whole text column of plain decimal integers (or empty texts, the NULLs): read in C.
_INTEGERS: Final = re.compile(r"(?:-?[0-9]{1,18})?(?:\x1e(?:-?[0-9]{1,18})?)*")
_S64: Final = (-(2**63), 2**63 - 1)


def _integer_or_text(text: str) -> int | float | str:
    if _INTEGER.fullmatch(text):
        value = int(text)
        if _S64[0] <= value <= _S64[1]:
            return value
    return _real_or_text(text)


def _real_or_text(text: str) -> float | str:
    return float(text) if _REAL.fullmatch(text) else text


def _from_text(joined: str, rows: int, affinity: str, nulls: Any) -> list[SQLValue]:
    """Split a ``text`` column and read it by ``affinity``. The common case, a column of
    plain numbers, is read in C: one regular-expression match over the whole string, then
    ``map(int, ...)`` or ``map(float, ...)``; otherwise each value is read on its own."""
    values: list[Any] = joined.split(SEPARATOR) if rows else []
    if len(values) != rows:
        raise ValueError(f"a text column has {len(values)} values, not {rows}")
    if affinity not in ("integer", "real"):
        return values
    texts = values.copy() if nulls else values
    for k in nulls:
        values[k] = "0"  # any number: the NULLs are set afterwards
    try:
        if affinity == "integer" and _INTEGERS.fullmatch(joined):
            return list(map(int, values))  # at most 18 digits: always an s64
        # float() also reads "nan", "inf", "1_0" and non-ASCII digits; SQLite does not.
        if affinity == "real" and joined.isascii() and not _NOT_SQL_REAL.search(joined):
            return list(map(float, values))
    except ValueError:
        pass  # an empty text that is not a NULL, a word...
    read = _integer_or_text if affinity == "integer" else _real_or_text
    return list(map(read, texts))


_NOT_SQL_REAL: Final = re.compile(r"[nN_]")


def column_to_sql(column: Any, rows: int, affinity: str = "") -> list[SQLValue]:
    """A WIT ``column-data`` (as the bridge lifts it: ``.values``, a :class:`~wasmplug.Variant`
    whose value is a list or, for ``text``, a string, and ``.nulls``) as ``rows`` SQLite
    values, converted like :func:`cell_to_sql`.

    ``s64``, ``f64``, ``string`` and ``json`` lists are used as they are (the lifted
    list is the result: no copy). A ``text`` column is split and read by the column's
    ``affinity`` (``"integer"``, ``"real"``, anything else: text), as SQLite reads text
    stored in a column of that affinity. Then the NULL positions are set to ``None``.

    Raises:
        ValueError: the column breaks the protocol: another number of values than
            ``rows``, a NULL position past the end, or a value that has no SQLite
            form (a date out of range).
    """
    values = column.values
    case = values.case
    if case == "null":
        return [None] * rows
    try:
        if case == "text":
            out = _from_text(values.value, rows, affinity, column.nulls)
        else:
            out = values.value
            if len(out) != rows:
                raise ValueError(f"a {case} column has {len(out)} values, not {rows}")
            convert = _COLUMN_CONVERT.get(case)
            if convert is not None:
                out = list(map(convert, out))
        for k in column.nulls:
            out[k] = None
    except IndexError:
        raise ValueError(f"a NULL position is past the batch's {rows} rows") from None
    except OverflowError as e:
        raise ValueError(f"a {case} value has no SQLite form: {e}") from None
    return out


_NUMERIC: Final = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def sql_to_cell(value: SQLValue, affinity: str) -> Variant | None:
    """The ``cell`` to push down for ``column op value``, or ``None`` to not push it.

    SQLite converts the right-hand side to the column's affinity before
    comparing (``int_col = '3'`` matches 3), so the value is converted the same
    way. Where the plugin could not compare like SQLite (a number against a
    text column, a BLOB), nothing is pushed; SQLite still checks every row.
    """
    if isinstance(value, bool | bytes):
        return None
    if value is None:
        return Variant("null")
    if affinity in ("integer", "real"):
        if isinstance(value, str):
            if not _NUMERIC.fullmatch(value):
                return None
            try:
                value = int(value)
            except ValueError:
                value = float(value)
        if isinstance(value, int):
            if affinity == "real" and abs(value) <= 2**53:
                return Variant("f64", float(value))  # the column's own cell type
            return Variant("s64", value) if -(2**63) <= value < 2**63 else None
        return Variant("f64", value)
    if affinity == "text":
        return Variant("string", value) if isinstance(value, str) else None
    # No affinity: SQLite compares the values as they are.
    if isinstance(value, int):
        return Variant("s64", value)
    return Variant("f64", value) if isinstance(value, float) else Variant("string", value)


# -- CREATE VIRTUAL TABLE arguments -------------------------------------------------------------


def parse_option(arg: str) -> tuple[str, str]:
    """``"file = 'a b.csv'"`` → ``("file", "a b.csv")``.

    Values may be bare, 'single-quoted' or "double-quoted" (a doubled quote
    inside stands for one quote), as in SQL.

    Raises:
        ValueError: the argument is not ``key=value``.
    """
    key, sep, value = arg.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise ValueError(f"expected key=value, got {arg!r}")
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"":
        key = key[1:-1]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        q = value[0]
        value = value[1:-1].replace(q + q, q)
    return key.lower(), value


# -- errors -------------------------------------------------------------------------------------


class FdwError(apsw.SQLError):
    """A plugin failed one statement: it returned ``err(fdw-error)`` or it faulted.

    Raised from a virtual-table method, so apsw fails that statement with it;
    the connection and the other tables are unaffected.

    Attributes:
        table: The virtual table's name.
        plugin: The plugin's name.
        operation: The WIT function (``init``, ``begin-scan``, ``iter-scan``...).
        reason: The ``fdw-error`` case (``io``, ``http``...) or the fault's
            exception class name (``PluginTimeout``...).
        detail: The plugin's message, or the fault's.
    """

    def __init__(self, table: str, plugin: str, operation: str, reason: str, detail: str) -> None:
        self.table, self.plugin, self.operation = table, plugin, operation
        self.reason, self.detail = reason, detail
        super().__init__(
            f"wasm table {table!r} (plugin {plugin!r}): {operation} failed: {reason}: {detail}"
        )

    @classmethod
    def from_plugin_error(
        cls, table: str, plugin: str, operation: str, exc: PluginError
    ) -> FdwError:
        """Build one from an ``ErrorResult`` (its ``fdw-error``) or another ``PluginError``."""
        value = getattr(exc, "value", None)
        if isinstance(value, Variant):
            return cls(table, plugin, operation, value.case, str(value.value))
        kind = type(exc).__name__
        if isinstance(exc, PluginFault):
            kind += f" ({exc.fault}; the instance was discarded)"
        return cls(table, plugin, operation, kind, str(exc))


# -- the host interface the plugins import ------------------------------------------------------


class _Current(threading.local):
    record: ScanRecord | None = None
    plugin: str = "?"


_current = _Current()


class HostServices:
    """Implements ``wasmplug-demo:fdw/host``: ``log``, ``now-micros`` and ``stat``.

    It is the ``HostImports`` protocol of the generated ``bindings`` module
    (``wasmplug bindgen``), which provides it, converting the WIT values.

    One instance is provided to the :class:`~wasmplug.PluginHost`. Host
    functions run on the thread that called into the plugin, so
    :meth:`calling` (a thread-local) tells ``stat`` which scan it belongs to.
    """

    _LEVELS: Final = {
        "debug": logging.DEBUG,
        "info": logging.INFO,
        "warning": logging.WARNING,
        "error": logging.ERROR,
    }

    def log(self, level: Level, msg: str) -> None:
        plugin_log.log(self._LEVELS.get(level.value, logging.INFO), "%s: %s", _current.plugin, msg)

    def now_micros(self) -> int:
        return time.time_ns() // 1000

    def stat(self, scan: int, name: str, value: int) -> None:
        record = _current.record
        if record is not None:
            record.stats[name] = value

    @staticmethod
    @contextmanager
    def calling(plugin: str, record: ScanRecord | None) -> Iterator[None]:
        """Attribute host calls made on this thread to ``plugin`` and ``record``."""
        prev = _current.plugin, _current.record
        _current.plugin, _current.record = plugin, record
        try:
            yield
        finally:
            _current.plugin, _current.record = prev

    @classmethod
    def install(cls, host: PluginHost) -> HostServices:
        """Provide the interface to ``host`` (plugins loaded afterwards link to it)."""
        services = cls()
        impl: HostImports = services  # mypy checks it against the generated protocol
        provide_types(host, wit=WIT_DIR)
        provide_host(host, impl, wit=WIT_DIR)
        return services

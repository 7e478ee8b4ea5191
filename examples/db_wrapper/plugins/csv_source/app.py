"""csv-source: a foreign-data-wrapper plugin that serves CSV files from ``/data``.

World ``wasmplug-demo:fdw/file-source@0.2.0`` (``examples/db_wrapper/wit/fdw.wit``).
The only file access is the read-only directory the application grants as
``/data``; paths that try to leave it are refused with ``invalid-option``
before anything is opened (the sandbox would deny them anyway).

Options (CREATE VIRTUAL TABLE ... USING ...(key = value)):

- ``file`` (required): a path relative to ``/data``, or absolute under ``/data``.
- ``types``: ``"col:integer,col2:real,col3:text"``, overriding inferred types.
- ``delimiter``: one character, default ``","``.
- ``nulls``: comma-separated spellings of NULL, default ``"NA,"`` (``NA`` and
  the empty string).

The first line is the header. Column types are inferred from the first 200
rows: every non-null value an integer -> ``integer``; every one a number ->
``real``; otherwise ``text``. A value that does not parse as its column's type
is returned as text, never dropped. Unknown options are ignored (logged as a
warning), like Supabase Wrappers.

Batches are columnar (WIT ``batch``). CSV fields are text, so each column is
sent as its fields' text joined into one string (WIT ``text``), the NULLs'
positions aside, and the host reads it by the column's type, as SQLite's type
affinity does (and PostgreSQL's file_fdw): one string per column crosses the
boundary, not one value per row. A batch in which a field contains the
separator (U+001E) sends that column as a typed list instead: ``list<s64>``,
``list<f64>`` or ``list<string>``, or ``mixed`` cells where the fields do not
all parse as the column's type.

Records are read as ``csv.reader`` reads them, but a run of lines without a quote
character is split in C (each such line is one record), and a scan that needs no
column (``SELECT count(*)``) only counts them; lines with quotes go through
``csv.reader`` itself. Then only the row count crosses the boundary.

Stats (``host.stat``): ``rows-read``, ``rows-returned``, and ``read-us`` /
``encode-us``, the microseconds spent reading and parsing rows and building
columns (the guest's share of a scan, apart from the canonical ABI's).

Build: ``componentize-py -d ../../wit -w wasmplug-demo:fdw/file-source@0.2.0
componentize app`` (``examples/db_wrapper/build.py`` does this, cached).
"""

import contextlib
import csv
import functools
import itertools
import operator
import os
import posixpath
import re
import time

import wit_world
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Batch,
    Cell_Bool,
    Cell_F64,
    Cell_Null,
    Cell_S64,
    Cell_String,
    Column,
    ColumnData,
    FdwError_InvalidOption,
    FdwError_Io,
    FdwError_Other,
    FdwError_Parse,
    Op,
    Values_F64,
    Values_Mixed,
    Values_Null,
    Values_S64,
    Values_String,
    Values_Text,
)

DATA_DIR = "/data"
SAMPLE_ROWS = 200
KNOWN_OPTIONS = ("file", "types", "delimiter", "nulls")
TYPE_NAMES = ("integer", "real", "text")
MAX_SCANS = 1024
CELL_CACHE = 4096  # distinct raw strings remembered per column and scan
SEPARATOR = "\x1e"  # joins the values of a `text` column
S64_MIN, S64_MAX = -(2**63), 2**63 - 1

NULL = Cell_Null()
INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")
REAL_RE = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$")

OPS = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
}

_warned: set[str] = set()


def invalid(msg: str) -> Err:
    return Err(FdwError_InvalidOption(msg))


# -- options and schema ------------------------------------------------------------------


class Table:
    """A CSV file's resolved options and schema."""

    def __init__(self, path, delimiter, nulls, names, types, stamp):
        self.path = path
        self.delimiter = delimiter
        self.nulls = nulls  # frozenset, always including None (a missing field)
        self.names = names
        self.types = types
        self.index = {name: i for i, name in enumerate(names)}
        self.stamp = stamp


_tables: dict[tuple, Table] = {}


def resolve_path(value: str) -> str:
    if not value:
        raise invalid("option 'file' is empty")
    if "\0" in value:
        raise invalid("option 'file' contains a NUL byte")
    if ".." in value.replace("\\", "/").split("/"):
        raise invalid(f"file {value!r}: '..' is not allowed; files are read from {DATA_DIR} only")
    path = posixpath.normpath(posixpath.join(DATA_DIR, value))
    if path != DATA_DIR and not path.startswith(DATA_DIR + "/"):
        raise invalid(f"file {value!r} is outside {DATA_DIR}, the only directory readable")
    return path


def parse_options(options):
    opts = dict(options)
    for key in opts:
        if key not in KNOWN_OPTIONS and key not in _warned:
            _warned.add(key)
            host.log(host.Level.WARNING, f"csv-source: ignoring unknown option {key!r}")
    if "file" not in opts:
        raise invalid("option 'file' is required (a CSV file under /data)")
    path = resolve_path(opts["file"])
    delimiter = opts.get("delimiter", ",")
    if delimiter in ("\\t", "tab"):
        delimiter = "\t"
    if len(delimiter) != 1 or delimiter in '\r\n"':
        raise invalid(f"option 'delimiter' must be one character, got {delimiter!r}")
    nulls = frozenset(opts.get("nulls", "NA,").split(",")) | {None}
    overrides = {}
    for item in filter(None, (s.strip() for s in opts.get("types", "").split(","))):
        name, sep, type_name = item.rpartition(":")
        type_name = type_name.strip().lower()
        if not sep or not name.strip() or type_name not in TYPE_NAMES:
            raise invalid(
                f"option 'types': {item!r} is not 'column:type' with type one of "
                + ", ".join(TYPE_NAMES)
            )
        overrides[name.strip()] = type_name
    return path, delimiter, nulls, overrides


def open_file(path: str):
    try:
        # utf-8 (not utf-8-sig: that codec is not in componentize-py's stdlib); a
        # byte-order mark is stripped from the header instead.
        return open(path, newline="", encoding="utf-8")
    except FileNotFoundError:
        hint = "" if os.path.isdir(DATA_DIR) else f" ({DATA_DIR} is not granted to this plugin)"
        raise Err(FdwError_Io(f"{path}: no such file{hint}")) from None
    except IsADirectoryError:
        raise Err(FdwError_Io(f"{path} is a directory")) from None
    except OSError as e:
        raise Err(FdwError_Io(f"cannot open {path}: {e.strerror or e}")) from None


def infer_type(values) -> str:
    seen = False
    integer = True
    for v in values:
        seen = True
        if integer and INT_RE.match(v) and S64_MIN <= int(v) <= S64_MAX:
            continue
        integer = False
        if not REAL_RE.match(v):
            return "text"
    if not seen:
        return "text"
    return "integer" if integer else "real"


def load_table(options) -> Table:
    """Parse options, read the header and infer types (cached per options and file version)."""
    path, delimiter, nulls, overrides = parse_options(options)
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None  # open_file() below reports the problem
    key = (tuple(options), stamp)
    table = _tables.get(key)
    if table is not None:
        return table
    with open_file(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, None)
            if not header:
                raise Err(FdwError_Parse(f"{path}: empty file (the first line must be a header)"))
            sample = []
            for row in reader:
                if row:
                    sample.append(row)
                    if len(sample) >= SAMPLE_ROWS:
                        break
        except csv.Error as e:
            raise Err(FdwError_Parse(f"{path}, line {reader.line_num}: {e}")) from None
        except UnicodeDecodeError as e:
            raise Err(FdwError_Parse(f"{path}: not UTF-8 text ({e.reason})")) from None
    header[0] = header[0].removeprefix("\ufeff")
    names, used = [], set()
    for i, raw in enumerate(header):
        name = raw.strip() or f"column_{i + 1}"
        base, n = name, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        names.append(name)
    unknown = [c for c in overrides if c not in used]
    if unknown:
        raise invalid(
            f"option 'types' names unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the columns are {', '.join(names)}"
        )
    types = []
    for i, name in enumerate(names):
        if name in overrides:
            types.append(overrides[name])
        else:
            col = (row[i] for row in sample if i < len(row) and row[i] not in nulls)
            types.append(infer_type(col))
    if len(_tables) > 64:
        _tables.clear()
    table = _tables[key] = Table(path, delimiter, nulls, names, types, stamp)
    return table


# -- converters ------------------------------------------------------------------------


def text_or_number(s: str):
    """A value that did not parse as its column's type: a number if it is one, else text."""
    if INT_RE.match(s):
        v = int(s)
        if S64_MIN <= v <= S64_MAX:
            return Cell_S64(v)
    if REAL_RE.match(s):
        return Cell_F64(float(s))
    return Cell_String(s)


def converter(type_name: str, nulls):
    """A function raw CSV field (or None) -> cell, remembering up to CELL_CACHE fields."""
    cache = {}

    if type_name == "integer":

        def make(s):
            try:
                v = int(s)
            except ValueError:
                return text_or_number(s)
            return Cell_S64(v) if S64_MIN <= v <= S64_MAX else Cell_String(s)

    elif type_name == "real":

        def make(s):
            try:
                return Cell_F64(float(s))
            except ValueError:
                return Cell_String(s)

    else:
        make = Cell_String

    def convert(s):
        cell = cache.get(s)
        if cell is None:
            cell = NULL if s in nulls else make(s)
            if len(cache) < CELL_CACHE:
                cache[s] = cell
        return cell

    return convert


def cell_value(cell):
    """The comparable Python value of a cell: None, int, float or str."""
    t = type(cell)
    if t is Cell_Null:
        return None
    if t is Cell_Bool:
        return int(cell.value)
    return cell.value


def make_test(op, qv):
    """A predicate over a row's cell with SQL semantics (NULL never matches).

    Numbers compare numerically and text as text (BINARY collation). When the
    row's value and the qualifier's have different kinds, the row is kept:
    SQLite re-checks every row, so keeping is always correct.
    """
    fn = OPS[op]
    want_str = isinstance(qv, str)

    def test(cell):
        v = cell_value(cell)
        if v is None:
            return False
        if isinstance(v, str) != want_str:
            return True
        return fn(v, qv)

    return test


# -- scans ------------------------------------------------------------------------------


class Scan:
    def __init__(self, scan_id, table, ctx):
        self.id = scan_id
        self.table = table
        width = len(table.names)
        convs = [converter(t, table.nulls) for t in table.types]
        self.out = []
        for name in ctx.columns:
            i = table.index.get(name)
            if i is None:
                raise invalid(f"unknown column {name!r} (columns: {', '.join(table.names)})")
            self.out.append((i, table.types[i], convs[i]))
        self.quals = []
        for q in ctx.quals:
            i = table.index.get(q.column)
            if i is None:
                raise invalid(
                    f"qualifier on unknown column {q.column!r} (columns: {', '.join(table.names)})"
                )
            qv = cell_value(q.value)
            if qv is None:
                continue  # `col op NULL` is never true; leave such rows to SQLite
            self.quals.append((i, convs[i], make_test(q.op, qv)))
        self.limit = ctx.limit
        self.width = width
        self.rows_read = 0
        self.rows_returned = 0
        # Time spent reading and parsing rows, and building columns (stats "read-us"
        # and "encode-us", for the benchmark's breakdown), by the monotonic clock.
        self.read_ns = self.encode_ns = 0
        self.file = None
        self.reader = None
        self.quotechar = '"'
        self.delimiter = table.delimiter
        self.done = False
        self.matched = 0  # matching rows returned in the current pass
        self.open()

    def open(self):
        self.close()
        self.file = open_file(self.table.path)
        self.reader = csv.reader(self.file, delimiter=self.table.delimiter)
        self.quotechar = self.reader.dialect.quotechar
        self.done = False
        self.matched = 0
        try:
            next(self.reader, None)  # the header
        except (csv.Error, UnicodeDecodeError) as e:
            self.close()
            raise Err(FdwError_Parse(f"{self.table.path}: {e}")) from None

    def close(self):
        if self.file is not None:
            self.file.close()
        self.file = self.reader = None

    def next_batch(self, max_rows):
        start = time.perf_counter_ns()
        if self.out or self.quals:
            n, column = self.read_fields(max_rows)
        else:
            n, column = self.count_rows(max_rows), None
        read = time.perf_counter_ns()
        nulls = self.table.nulls
        columns = [encode(column(i), kind, conv, nulls) for i, kind, conv in self.out]
        self.read_ns += read - start
        self.encode_ns += time.perf_counter_ns() - read
        self.matched += n
        self.rows_returned += n
        if self.limit is not None and self.matched >= self.limit:
            self.done = True
        if self.done:
            self.close()
        host.stat(self.id, "rows-read", self.rows_read)
        host.stat(self.id, "rows-returned", self.rows_returned)
        host.stat(self.id, "read-us", self.read_ns // 1000)
        host.stat(self.id, "encode-us", self.encode_ns // 1000)
        return Batch(n, columns)

    def wanted(self, max_rows):
        """Rows to return in this batch: ``max_rows`` (at least 1), or fewer for the limit."""
        if self.done:
            return 0
        want = max(1, max_rows)
        if self.limit is not None:
            want = min(want, self.limit - self.matched)
        return want

    # Records are read a chunk of lines at a time, at most as many lines as rows are still
    # wanted (a record is at least one line, so a chunk never yields more than that). A
    # chunk in which no line has a quote character, a NUL or more characters than csv's
    # field size limit holds one record per line, or none for a blank line, exactly as
    # csv.reader reads it: such a chunk is split (or, for count(*), counted) in C. Any
    # other chunk goes through csv.reader, which takes the continuation lines of a quoted
    # field that goes on past the chunk from the file itself.

    def lines(self, n):
        """The next ``n`` lines at most: fewer at the end of the file, and none past it
        (the scan is then done)."""
        chunk = list(itertools.islice(self.file, n))
        if not chunk:
            self.done = True
        return chunk

    def plain(self, chunk, joined):
        """Whether each line of ``chunk`` (``joined``: its lines joined) is one record, or
        a blank line, for csv.reader."""
        return (
            self.quotechar not in joined
            and "\0" not in joined
            and max(map(len, chunk)) <= csv.field_size_limit()
        )

    def records(self, chunk):
        """The non-blank records of ``chunk`` (lines), read by csv.reader."""
        reader = csv.reader(itertools.chain(chunk, self.file), delimiter=self.delimiter)
        out = []
        for row in reader:
            if row:
                out.append(row)
            if reader.line_num >= len(chunk):
                break  # the chunk is used up (and any record that went on past it)
        return out

    def parse(self, chunk):
        """The records of ``chunk`` as lists of fields (csv.reader's)."""
        if not self.plain(chunk, "".join(chunk)):
            return self.records(chunk)
        if blank_lines(chunk):
            chunk = [line for line in chunk if line not in BLANK_LINES]
        ends = itertools.repeat("\r\n")
        return list(map(str.split, map(str.rstrip, chunk, ends), itertools.repeat(self.delimiter)))

    def flat(self, chunk):
        """Every field of ``chunk`` in one list, row after row, if each line is a plain
        record with as many fields as the header (the common case); else ``None``.
        Column ``i`` is then one slice, ``fields[i::width]``: no list per row."""
        width, delimiter = self.width, self.delimiter
        joined = "".join(chunk)
        if width < 2 or not self.plain(chunk, joined):
            return None
        if set(map(str.count, chunk, itertools.repeat(delimiter))) != {width - 1}:
            return None  # a blank line, or a record with fewer or more fields
        if "\r" in joined:
            joined = joined.replace("\r\n", "\n")
            if "\r" in joined:
                return None  # records ended by a lone CR
        fields = joined.replace("\n", delimiter).split(delimiter)
        del fields[len(chunk) * width :]  # the empty field after the last newline
        return fields

    def count_rows(self, max_rows):
        """How many records follow, up to ``max_rows`` and the limit, not split into fields
        (``SELECT count(*)``: no column and no qualifier)."""
        want = self.wanted(max_rows)
        counted = 0
        with self.reading():
            while counted < want and (chunk := self.lines(want - counted)):
                if self.plain(chunk, "".join(chunk)):
                    found = len(chunk) - blank_lines(chunk)
                else:
                    found = len(self.records(chunk))
                counted += found
                self.rows_read += found
        return counted

    def read_fields(self, max_rows):
        """The next matching records: how many, and a function of a field's index that
        returns that field of each (a new list; ``None`` where a record is too short)."""
        want = self.wanted(max_rows)
        width, quals = self.width, self.quals
        parts = []  # a function of the field index per chunk
        n = 0
        with self.reading():
            while n < want and (chunk := self.lines(want - n)):
                fields = None if quals else self.flat(chunk)
                if fields is not None:
                    self.rows_read += len(chunk)
                    n += len(chunk)
                    parts.append(functools.partial(every, fields, width))
                    continue
                rows = self.parse(chunk)
                self.rows_read += len(rows)
                if rows and min(map(len, rows)) < width:
                    rows = [r if len(r) >= width else r + [None] * (width - len(r)) for r in rows]
                for i, conv, test in quals:
                    rows = [r for r in rows if test(conv(r[i]))]
                n += len(rows)
                parts.append(functools.partial(field_of, rows))
        if len(parts) == 1:
            return n, parts[0]
        return n, lambda i: list(itertools.chain.from_iterable(part(i) for part in parts))

    @contextlib.contextmanager
    def reading(self):
        """Turn the errors of reading the file into ``fdw-error``s."""
        try:
            yield
        except csv.Error as e:
            raise Err(
                FdwError_Parse(f"{self.table.path}, after record {self.rows_read}: {e}")
            ) from None
        except UnicodeDecodeError as e:
            raise Err(FdwError_Parse(f"{self.table.path}: not UTF-8 text ({e.reason})")) from None
        except OSError as e:
            raise Err(FdwError_Io(f"reading {self.table.path}: {e}")) from None


BLANK_LINES = ("\n", "\r\n", "\r")


def every(fields, width, i):
    """Field ``i`` of each record in ``fields`` (records of ``width`` fields, in a row)."""
    return fields[i::width]


def field_of(rows, i):
    """Field ``i`` of each of ``rows``."""
    return list(map(operator.itemgetter(i), rows))


def blank_lines(chunk):
    """How many lines of ``chunk`` are blank (csv.reader reads no record from them)."""
    return sum(map(chunk.count, BLANK_LINES))


def encode(col, kind, conv, nulls):
    """A column's fields (``col``, a list this takes over) as a ``column-data``: their
    text, joined, NULLs aside.

    CSV fields are text already, so they are sent as they are (WIT ``text``: one
    string per column, read by the host by the column's type); the common case runs
    in C: the join, then a search of the joined text for each NULL spelling (no field
    contains the separator, so a field is ``s`` exactly where ``s`` stands between
    separators). Only a column with a value that contains the separator is sent as a
    typed list instead.
    """
    try:
        joined = SEPARATOR.join(col)
    except TypeError:
        pass  # a missing field (None): a NULL
    else:
        if (
            col
            and joined.count(SEPARATOR) == len(col) - 1
            and not any(has_field(joined, s) for s in nulls if s is not None)
        ):
            return ColumnData(Values_Text(joined), [])
    where = [k for k, v in enumerate(col) if v in nulls]
    if where and len(where) == len(col):
        return ColumnData(Values_Null(), [])
    for k in where:
        col[k] = ""
    joined = SEPARATOR.join(col)
    if not col or joined.count(SEPARATOR) == len(col) - 1:
        return ColumnData(Values_Text(joined), where)
    return typed(col, where, kind, conv)


def has_field(joined, s):
    """Whether one of the fields joined by SEPARATOR (none containing it) is ``s``."""
    return (
        joined == s
        or joined.startswith(s + SEPARATOR)
        or joined.endswith(SEPARATOR + s)
        or (SEPARATOR + s + SEPARATOR) in joined
    )


def typed(col, where, kind, conv):
    """A column as one typed list (``s64``, ``f64``, ``string``), NULLs (at ``where``)
    aside; a column whose values do not all parse as ``kind``, as ``mixed`` cells."""
    if kind == "text":
        return ColumnData(Values_String(col), where)
    for k in where:
        col[k] = "0"
    try:
        if kind == "integer":
            values = list(map(int, col))
            if values and (min(values) < S64_MIN or max(values) > S64_MAX):
                raise ValueError("out of the s64 range")
            return ColumnData(Values_S64(values), where)
        return ColumnData(Values_F64(list(map(float, col))), where)
    except ValueError:
        cells = [conv(v) for v in col]
        for k in where:
            cells[k] = NULL
        return ColumnData(Values_Mixed(cells), [])


_scans: dict[int, Scan] = {}
_next_id = 1


def get_scan(scan_id: int) -> Scan:
    scan = _scans.get(scan_id)
    if scan is None:
        raise Err(FdwError_Other(f"no open scan with id {scan_id}"))
    return scan


def guarded(method):
    """Turn an unexpected exception into err(other) instead of a trap (which would
    discard the instance and every open scan)."""

    def wrapper(self, *args):
        try:
            return method(self, *args)
        except Err:
            raise
        except Exception as e:
            msg = f"{method.__name__}: {type(e).__name__}: {e}"
            host.log(host.Level.ERROR, f"csv-source: {msg}")
            raise Err(FdwError_Other(msg)) from None

    return wrapper


class Source(exports.Source):
    @guarded
    def init(self, options):
        table = load_table(options)
        return [Column(n, t) for n, t in zip(table.names, table.types, strict=True)]

    @guarded
    def begin_scan(self, ctx):
        global _next_id
        if len(_scans) >= MAX_SCANS:
            raise Err(FdwError_Other(f"too many open scans ({MAX_SCANS}); call end-scan"))
        table = load_table(ctx.options)
        scan_id = _next_id
        _next_id = _next_id % 0xFFFFFFFF + 1
        _scans[scan_id] = Scan(scan_id, table, ctx)
        return scan_id

    @guarded
    def iter_scan(self, scan, max_rows):
        return get_scan(scan).next_batch(max_rows)

    @guarded
    def re_scan(self, scan):
        get_scan(scan).open()

    def end_scan(self, scan):
        s = _scans.pop(scan, None)
        if s is not None:
            s.close()


class WitWorld(wit_world.WitWorld):
    pass

"""json-http-source: a foreign-data-wrapper plugin that serves JSON arrays fetched over HTTP.

World ``wasmplug-demo:fdw/http-source@0.2.0`` (``examples/db_wrapper/wit/fdw.wit``).
Requests go through ``wasmplug:host/http@0.1.0``, so the host checks every URL
(and redirect) against the manifest's ``allowed-outbound-hosts`` and what the
application grants; there are no sockets in the sandbox.

Options:

- ``url`` (required): an absolute ``http(s)://`` URL returning JSON.
- ``records``: dotted path to the array inside the document (``data.items``;
  a numeric part indexes a list). Default: the document itself.
- ``page_param``: if set, fetch ``url?{page_param}=1``, ``2``, ... (``&`` when
  the URL already has a query) until a page has no records or ``max_pages``
  (default 50) pages were fetched.
- ``page_size_param`` + ``page_size``: added to the query (both or neither).
- ``types``: ``"col:integer,col2:real,col3:text"``: declared types that
  override inferred ones, coercing values; may name columns missing from the
  first page.

``init`` fetches the first page and returns the union of its objects' keys, in
order of appearance, typed from their values (bool and int -> ``integer``, a
float -> ``real``, a string, list, object or only nulls -> ``text``). Cells:
bool -> ``%bool``, int -> ``s64``, float -> ``f64``, str -> ``string``,
list/object -> ``json``, null or missing key -> ``null``. A batch sends each column
as one typed list when its cells share a kind (NULLs aside), else as ``mixed``.

Pages are fetched lazily, at most one per ``iter-scan`` call, and never once
the LIMIT is reached; a scan keeps the pages it fetched, so ``re-scan`` does not
fetch them again.
"""

import json
import operator
import re
from urllib.parse import quote, urldefrag

import wit_world
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, http
from wit_world.imports.types import (
    Batch,
    Cell_Bool,
    Cell_F64,
    Cell_Json,
    Cell_Null,
    Cell_S64,
    Cell_String,
    Column,
    ColumnData,
    FdwError_Http,
    FdwError_InvalidOption,
    FdwError_Other,
    FdwError_Parse,
    Op,
    Values_Bool,
    Values_F64,
    Values_Json,
    Values_Mixed,
    Values_Null,
    Values_S64,
    Values_String,
)

KNOWN_OPTIONS = (
    "url",
    "records",
    "page_param",
    "page_size_param",
    "page_size",
    "max_pages",
    "types",
)
TYPE_NAMES = ("integer", "real", "text")
DEFAULT_MAX_PAGES = 50
MAX_SCANS = 1024
S64_MIN, S64_MAX = -(2**63), 2**63 - 1
NULL = Cell_Null()
INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")

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


def to_json(v) -> str:
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


# -- options --------------------------------------------------------------------------


class Config:
    def __init__(self, options):
        opts = dict(options)
        for key in opts:
            if key not in KNOWN_OPTIONS and key not in _warned:
                _warned.add(key)
                host.log(host.Level.WARNING, f"json-http-source: ignoring unknown option {key!r}")
        url = opts.get("url", "").strip()
        if not url:
            raise invalid("option 'url' is required (an http:// or https:// URL returning JSON)")
        if not url.lower().startswith(("http://", "https://")):
            raise invalid(f"option 'url' must be an http:// or https:// URL, got {url!r}")
        self.url = urldefrag(url)[0]
        records = opts.get("records", "").strip()
        self.records = [p for p in records.split(".") if p] if records else []
        self.page_param = opts.get("page_param") or None
        size_param, size = opts.get("page_size_param"), opts.get("page_size")
        if bool(size_param) != bool(size):
            raise invalid("options 'page_size_param' and 'page_size' go together")
        self.extra = [(size_param, size)] if size_param else []
        self.max_pages = DEFAULT_MAX_PAGES
        if "max_pages" in opts:
            try:
                self.max_pages = int(opts["max_pages"])
            except ValueError:
                self.max_pages = 0
            if self.max_pages < 1:
                raise invalid(
                    f"option 'max_pages' must be a positive integer, got {opts['max_pages']!r}"
                )
        self.overrides = {}
        for item in filter(None, (s.strip() for s in opts.get("types", "").split(","))):
            name, sep, type_name = item.rpartition(":")
            type_name = type_name.strip().lower()
            if not sep or not name.strip() or type_name not in TYPE_NAMES:
                raise invalid(
                    f"option 'types': {item!r} is not 'column:type' with type one of "
                    + ", ".join(TYPE_NAMES)
                )
            self.overrides[name.strip()] = type_name

    def page_url(self, page: int) -> str:
        params = list(self.extra)
        if self.page_param:
            params.insert(0, (self.page_param, str(page)))
        if not params:
            return self.url
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
        if "?" not in self.url:
            sep = "?"
        elif self.url.endswith(("?", "&")):
            sep = ""
        else:
            sep = "&"
        return self.url + sep + query


# -- fetching ---------------------------------------------------------------------------


def describe_http_error(e) -> str:
    name = type(e).__name__.rpartition("_")[2]
    if name == "Denied":
        return f"denied by the host: {e.value}"
    if name == "InvalidUrl":
        return f"invalid URL: {e.value}"
    if name == "Timeout":
        return "timed out"
    if name == "TooLarge":
        return f"response larger than the host's limit of {e.value} bytes"
    if name == "Transport":
        return f"transport error: {e.value}"
    if name == "InvalidRequest":
        return f"invalid request: {e.value}"
    return str(getattr(e, "value", e))


def fetch_records(cfg: Config, page: int) -> list:
    url = cfg.page_url(page)
    req = http.Request(
        method="GET", url=url, headers=[("accept", "application/json")], body=None, timeout_ms=None
    )
    try:
        resp = http.send(req)
    except Err as e:
        raise Err(FdwError_Http(f"GET {url}: {describe_http_error(e.value)}")) from None
    if not 200 <= resp.status < 300:
        text = bytes(resp.body[:300]).decode("utf-8", "replace").strip()
        raise Err(FdwError_Http(f"GET {url}: HTTP {resp.status}" + (f": {text}" if text else "")))
    try:
        # Decoded here: json.loads(bytes) may pick a codec (utf-8-sig, utf-16...)
        # that componentize-py's trimmed stdlib lacks.
        doc = json.loads(bytes(resp.body).removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise Err(FdwError_Parse(f"GET {url}: the response is not JSON ({e})")) from None
    node = doc
    for depth, part in enumerate(cfg.records):
        where = ".".join(cfg.records[: depth + 1])
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif (
            isinstance(node, list)
            and part.lstrip("-").isdigit()
            and -len(node) <= int(part) < len(node)
        ):
            node = node[int(part)]
        else:
            raise Err(
                FdwError_Parse(f"GET {url}: records path {where!r} not found in the document")
            )
    if not isinstance(node, list):
        hint = ""
        if isinstance(node, dict):
            arrays = [k for k, v in node.items() if isinstance(v, list)]
            if arrays:
                prefix = ".".join(cfg.records) + "." if cfg.records else ""
                hint = "; set option 'records' to one of " + ", ".join(prefix + k for k in arrays)
        where = f"at {'.'.join(cfg.records)!r}" if cfg.records else "at the top level"
        raise Err(
            FdwError_Parse(
                f"GET {url}: expected a JSON array {where}, got {type(node).__name__}{hint}"
            )
        )
    for i, rec in enumerate(node):
        if not isinstance(rec, dict):
            raise Err(
                FdwError_Parse(f"GET {url}: record {i} is a {type(rec).__name__}, not an object")
            )
    return node


# -- schema and cells -------------------------------------------------------------------


def infer_type(values) -> str:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "text"
    if kinds <= {bool, int}:
        return "integer"
    if kinds <= {bool, int, float}:
        return "real"
    return "text"


def natural_cell(v):
    t = type(v)
    if t is str:
        return Cell_String(v)
    if t is int:
        return Cell_S64(v) if S64_MIN <= v <= S64_MAX else Cell_String(str(v))
    if t is float:
        return Cell_F64(v)
    if t is bool:
        return Cell_Bool(v)
    if v is None:
        return NULL
    return Cell_Json(to_json(v))


def integer_cell(v):
    t = type(v)
    if t is bool:
        return Cell_S64(int(v))
    if t is float and v.is_integer() and S64_MIN <= v <= S64_MAX:
        return Cell_S64(int(v))
    if t is str:
        if INT_RE.match(v) and S64_MIN <= int(v) <= S64_MAX:
            return Cell_S64(int(v))
        try:
            return Cell_F64(float(v))
        except ValueError:
            return Cell_String(v)
    return natural_cell(v)


def real_cell(v):
    t = type(v)
    if t is int or t is bool:
        return Cell_F64(float(v))
    if t is str:
        try:
            return Cell_F64(float(v))
        except ValueError:
            return Cell_String(v)
    return natural_cell(v)


def text_cell(v):
    if type(v) is str:
        return Cell_String(v)
    if v is None:
        return NULL
    return Cell_String(to_json(v))


CONVERTERS = {"integer": integer_cell, "real": real_cell, "text": text_cell}


TYPED = {
    Cell_Bool: (Values_Bool, False),
    Cell_S64: (Values_S64, 0),
    Cell_F64: (Values_F64, 0.0),
    Cell_String: (Values_String, ""),
    Cell_Json: (Values_Json, ""),
}


def pack(cells) -> ColumnData:
    """A column's cells as a ``column-data``: one typed list if they share a kind."""
    kinds = set(map(type, cells))
    kinds.discard(Cell_Null)
    if not kinds:
        return ColumnData(Values_Null(), [])
    if len(kinds) > 1:
        return ColumnData(Values_Mixed(cells), [])
    make, fill = TYPED[kinds.pop()]
    nulls = [k for k, c in enumerate(cells) if type(c) is Cell_Null]
    return ColumnData(make([fill if type(c) is Cell_Null else c.value for c in cells]), nulls)


def cell_value(cell):
    """The comparable Python value of a cell: None, int, float or str."""
    t = type(cell)
    if t is Cell_Null:
        return None
    if t is Cell_Bool:
        return int(cell.value)
    return cell.value


def make_test(op, qv):
    """A predicate over a cell with SQL semantics (NULL never matches); mixed kinds keep the row."""
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
    def __init__(self, scan_id, cfg: Config, ctx):
        self.id = scan_id
        self.cfg = cfg
        conv = {name: CONVERTERS[t] for name, t in cfg.overrides.items()}
        self.out = [(name, conv.get(name, natural_cell)) for name in ctx.columns]
        self.quals = []
        for q in ctx.quals:
            qv = cell_value(q.value)
            if qv is None:
                continue  # `col op NULL` is never true; leave such rows to SQLite
            self.quals.append((q.column, conv.get(q.column, natural_cell), make_test(q.op, qv)))
        self.limit = ctx.limit
        self.pages: list[list] = []  # fetched pages, kept for re-scan
        self.last_page = False  # no page after the ones in self.pages
        self.rows_read = 0
        self.rows_returned = 0
        self.pages_fetched = 0
        self.restart()

    def restart(self):
        self.page = 0
        self.pos = 0
        self.matched = 0
        self.done = False

    def fetch_next(self):
        number = len(self.pages) + 1
        records = fetch_records(self.cfg, number)
        self.pages_fetched += 1
        self.pages.append(records)
        if not self.cfg.page_param or not records or number >= self.cfg.max_pages:
            self.last_page = True

    def next_batch(self, max_rows):
        batch = []
        want = max(1, max_rows)
        if self.limit is not None:
            want = min(want, self.limit - self.matched)
        fetched = False
        out, quals = self.out, self.quals
        while not self.done and len(batch) < want:
            if self.page >= len(self.pages):
                if self.last_page:
                    self.done = True
                    break
                if fetched and batch:
                    break  # one fetch per call: return what we have
                self.fetch_next()
                fetched = True
                continue
            records = self.pages[self.page]
            start = self.pos
            i = start
            n = len(records)
            while i < n and len(batch) < want:
                rec = records[i]
                i += 1
                if quals:
                    for name, conv, test in quals:
                        if not test(conv(rec.get(name))):
                            break
                    else:
                        batch.append(rec)
                else:
                    batch.append(rec)
            self.rows_read += i - start
            if i >= n:
                self.page += 1
                self.pos = 0
            else:
                self.pos = i
        self.matched += len(batch)
        self.rows_returned += len(batch)
        if self.limit is not None and self.matched >= self.limit:
            self.done = True
        host.stat(self.id, "rows-read", self.rows_read)
        host.stat(self.id, "rows-returned", self.rows_returned)
        host.stat(self.id, "pages-fetched", self.pages_fetched)
        columns = [pack([conv(rec.get(name)) for rec in batch]) for name, conv in out]
        return Batch(len(batch), columns)


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
            host.log(host.Level.ERROR, f"json-http-source: {msg}")
            raise Err(FdwError_Other(msg)) from None

    return wrapper


class Source(exports.Source):
    @guarded
    def init(self, options):
        cfg = Config(options)
        records = fetch_records(cfg, 1)
        names: dict[str, None] = {}
        for rec in records:
            for key in rec:
                names.setdefault(key, None)
        for name in cfg.overrides:
            names.setdefault(name, None)
        columns = []
        for name in names:
            type_name = cfg.overrides.get(name) or infer_type(rec.get(name) for rec in records)
            columns.append(Column(name, type_name))
        if not columns:
            raise Err(
                FdwError_Parse(
                    f"GET {cfg.page_url(1)}: the first page has no records to infer columns "
                    "from; declare them with option 'types'"
                )
            )
        return columns

    @guarded
    def begin_scan(self, ctx):
        global _next_id
        if len(_scans) >= MAX_SCANS:
            raise Err(FdwError_Other(f"too many open scans ({MAX_SCANS}); call end-scan"))
        scan_id = _next_id
        _next_id = _next_id % 0xFFFFFFFF + 1
        _scans[scan_id] = Scan(scan_id, Config(ctx.options), ctx)
        return scan_id

    @guarded
    def iter_scan(self, scan, max_rows):
        return get_scan(scan).next_batch(max_rows)

    @guarded
    def re_scan(self, scan):
        get_scan(scan).restart()

    def end_scan(self, scan):
        _scans.pop(scan, None)


class WitWorld(wit_world.WitWorld):
    pass

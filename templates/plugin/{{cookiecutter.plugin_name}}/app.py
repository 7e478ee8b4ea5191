{% if cookiecutter.world == "minimal" -%}
"""Guest code of the {{ cookiecutter.plugin_name }} plugin, built with componentize-py.

componentize-py generates the `wit_world` package from `wit/world.wit` at build time:
`WitWorld` holds the world's own exports, `wit_world.imports.host` the host's
functions. Raising `Err(value)` returns the `err` case of a `result`; any other
uncaught exception traps (the host raises `PluginTrapped`).

Build with `wasmplug build`; test with `python -m pytest`.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import host


class WitWorld(wit_world.WitWorld):
    def greet(self, name: str) -> str:
        host.log(f"greeting {name}")
        return f"Hello, {name}!"

    def count_words(self, text: str) -> int:
        words = text.split()
        if not words:
            raise Err("no words")
        return len(words)
{%- elif cookiecutter.world == "db-source" -%}
"""Guest code of the {{ cookiecutter.plugin_name }} plugin: a data source for the db_wrapper demo.

It serves one computed table, `n` and `square` for n in 1..rows (option `rows`,
default 10), through the `wasmplug-demo:fdw/source` interface (see wit/world.wit and
examples/db_wrapper in the wasmplug repository). componentize-py generates the
`wit_world` package from the WIT at build time.

Build with `wasmplug build`; test with `python -m pytest`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Batch,
    Column,
    ColumnData,
    FdwError_InvalidOption,
    Values_Null,
    Values_S64,
)

COLUMNS = {"n": "integer", "square": "integer"}


class _Scan:
    def __init__(self, ctx):
        self.ctx = ctx
        self.rows = _option(ctx.options, "rows")
        self.next = 1


def _option(options, key, default="10"):
    value = dict(options).get(key, default)
    if not value.isdigit():
        raise Err(FdwError_InvalidOption(f"{key} must be a number, got {value!r}"))
    return int(value)


_scans = {}


class Source(exports.Source):
    def init(self, options):
        _option(options, "rows")
        return [Column(name, type_name) for name, type_name in COLUMNS.items()]

    def begin_scan(self, ctx):
        scan_id = len(_scans) + 1
        _scans[scan_id] = _Scan(ctx)
        host.log(host.Level.INFO, f"scan {scan_id} of {_scans[scan_id].rows} rows")
        return scan_id

    def iter_scan(self, scan, max_rows):
        # A batch is columnar: one typed list per requested column (see wit/world.wit).
        state = _scans[scan]
        last = state.rows
        if state.ctx.limit is not None:
            last = min(last, state.ctx.limit)
        ns = list(range(state.next, min(last + 1, state.next + max_rows)))
        state.next += len(ns)
        values = {"n": ns, "square": [n * n for n in ns]}
        columns = [_column(values.get(col)) for col in state.ctx.columns]
        host.stat(scan, "rows-returned", state.next - 1)
        return Batch(len(ns), columns)

    def re_scan(self, scan):
        _scans[scan].next = 1

    def end_scan(self, scan):
        _scans.pop(scan, None)


def _column(values):
    if values is None:
        return ColumnData(Values_Null(), [])
    return ColumnData(Values_S64(values), [])
{%- else -%}
"""Guest code of the {{ cookiecutter.plugin_name }} plugin: a pane for the zellij_like demo.

The host calls `load` once with the pane's configuration, `update` for each event
the plugin subscribed to, `render` to draw the pane and `pipe` for messages from
other plugins (see wit/world.wit and examples/zellij_like in the wasmplug
repository). `update` and `pipe` return True to ask for a re-render.
componentize-py generates the `wit_world` package from the WIT at build time.

Build with `wasmplug build`; test with `python -m pytest`.
"""

import wit_world
from wit_world.imports import host
from wit_world.imports.types import Event_Key, EventKind

state = {"title": "{{ cookiecutter.plugin_name }}", "keys": 0, "last": "-", "message": "-"}


class WitWorld(wit_world.WitWorld):
    def load(self, config):
        state["title"] = dict(config).get("title", state["title"])
        host.subscribe([EventKind.KEY])

    def update(self, ev):
        if isinstance(ev, Event_Key):
            state["keys"] += 1
            state["last"] = ev.value
            return True
        return False

    def render(self, rows, cols):
        lines = [
            state["title"],
            f"keys: {state['keys']} (last: {state['last']})",
            f"message: {state['message']}",
        ]
        return "\n".join(line[:cols] for line in lines[:rows])

    def pipe(self, msg):
        state["message"] = f"{msg.name}: {msg.payload} (from {msg.source})"
        return True
{%- endif %}

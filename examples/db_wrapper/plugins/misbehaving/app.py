"""misbehaving: a foreign-data-wrapper plugin that fails on purpose (crash-isolation demo).

World ``wasmplug-demo:fdw/file-source@0.2.0``; it asks for no files.

Option ``mode`` (default ``ok``), acted on by ``iter-scan``:

- ``ok``: one column ``n`` (integer) with rows 1, 2, 3.
- ``loop``: spins forever (the host's timeout interrupts it: PluginTimeout).
- ``bomb``: allocates memory in 1 MiB chunks until it runs out (the host's
  memory limit stops it: a trap).
- ``panic``: raises RuntimeError (uncaught: a trap).

``init`` always succeeds; an unknown mode is ``invalid-option`` at ``begin-scan``.
"""

import wit_world
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Batch,
    Column,
    ColumnData,
    FdwError_InvalidOption,
    FdwError_Other,
    Values_S64,
)

MODES = ("ok", "loop", "bomb", "panic")

_scans: dict[int, list] = {}  # scan id -> [mode, columns, next n, limit, returned]
_next_id = 1


def spin():
    n = 0
    while True:
        n += 1


def bomb():
    chunks = []
    while True:
        chunks.append(bytearray(1 << 20))
        if len(chunks) % 16 == 0:
            host.log(host.Level.DEBUG, f"misbehaving: holding {len(chunks)} MiB")


class Source(exports.Source):
    def init(self, options):
        return [Column("n", "integer")]

    def begin_scan(self, ctx):
        global _next_id
        mode = dict(ctx.options).get("mode", "ok")
        if mode not in MODES:
            raise Err(
                FdwError_InvalidOption(
                    f"option 'mode' must be one of {', '.join(MODES)}, got {mode!r}"
                )
            )
        for name in ctx.columns:
            if name != "n":
                raise Err(FdwError_InvalidOption(f"unknown column {name!r} (columns: n)"))
        scan_id = _next_id
        _next_id += 1
        _scans[scan_id] = [mode, list(ctx.columns), 1, ctx.limit, 0]
        return scan_id

    def iter_scan(self, scan, max_rows):
        state = _scans.get(scan)
        if state is None:
            raise Err(FdwError_Other(f"no open scan with id {scan}"))
        mode, columns, n, limit, returned = state
        if mode == "loop":
            spin()
        elif mode == "bomb":
            bomb()
        elif mode == "panic":
            raise RuntimeError("misbehaving: panic requested (mode = panic)")
        values = []
        while n <= 3 and len(values) < max(1, max_rows) and (limit is None or returned < limit):
            values.append(n)
            n += 1
            returned += 1
        state[2], state[4] = n, returned
        host.stat(scan, "rows-read", n - 1)
        host.stat(scan, "rows-returned", returned)
        return Batch(len(values), [ColumnData(Values_S64(values), []) for _ in columns])

    def re_scan(self, scan):
        state = _scans.get(scan)
        if state is None:
            raise Err(FdwError_Other(f"no open scan with id {scan}"))
        state[2] = 1
        state[4] = 0

    def end_scan(self, scan):
        _scans.pop(scan, None)


class WitWorld(wit_world.WitWorld):
    pass

"""One function per export for its process-tier calls, generated on the export's first call.

A process-tier call spends most of its time in Python on both ends of the
channel, and most of that in code that is cold by the time it runs: each end
sleeps in ``recv`` while the other works, and wakes with its caches and branch
predictors taken by the other process. So the cost of a call is roughly the
number of distinct Python frames, objects and attribute lookups it touches, not
the instructions of a tight loop. :meth:`ProcessBackend.invoke` handles every
kind of call (resource handles routed to their worker, host calls, telemetry,
faults); for the common case, :func:`bind` generates one function per export
that does the same work as that path, in the same order, with every constant
resolved once, as ``_runtime/fastcall.py`` does in-process:

1. admission: the plugin is open and not quarantined, the calling thread is
   not inside a plugin call (a nested call takes the general path, which checks
   re-entry), the arity is right, and each argument has the exact class its
   wire form needs (an ``int`` in the WIT type's range, a ``float`` for ``f64``, a
   ``bool``, an ASCII ``str``; other types go through their codec encoders);
2. the ``CALL`` frame, packed in one ``msgpack`` call, and a worker from the
   pool, as in-process (``fastcall.holding``: its slot and lock taken by ``with``
   statements, so that Ctrl-C cannot lose a slot or leave a lock held);
3. the deadline: the watchdog armed by one dict store and one comparison (see
   :mod:`.watchdog`), the call's frame current on this thread (``callctx.running``:
   host calls and re-entry checks find it there), the frame sent with one
   ``os.write`` (a frame that does not fit the pipe at once is finished by the
   channel, with the deadline);
4. one ``recv``, which the watchdog ends at the deadline by killing the worker
   (see :mod:`.wire`); a ``RESULT`` of a primitive type is checked inline, anything
   else (a host call, a log line, a fault) is served by the general path's own
   code (:meth:`ProcessBackend._outcome`) from that message on;
5. the counters, the worker back to the pool, the result.

Whatever the worker does wrong (a malformed or unexpected reply, EOF, the
deadline) and Ctrl-C while waiting go to :meth:`ProcessBackend._lost`, as on
the general path, so classification, the kill and the restart policy are
shared code. A worker that was gone before it got the frame is discarded and
the call made again by the general path.

The generated source depends only on the export's shape; every value is in the
function's globals, so exports of the same shape share one compiled code object
(``fastcall._function``: cached, registered in :mod:`linecache`).
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge.wit import contains_handles
from wasmplug._errors import PluginError, WitTypeError, WitValueError
from wasmplug._runtime.fastcall import _compile, admission, holding

from .codec import CHECK_NAMES, ProtocolError, sent_as_is, wire_check
from .handles import CallHandles
from .hostcalls import Frame
from .watchdog import WATCHDOG
from .wire import Op

if TYPE_CHECKING:
    from wasmplug._runtime.exports import ExportFunc

ProcessBackend = Any
"""A :class:`~.backend.ProcessBackend`; not imported, since ``backend`` imports this
module and the package's modules import without cycles."""

__all__ = ["Bound", "bind"]

Bound = Callable[[tuple[Any, ...]], Any]
"""``bound(args)``: one call of an export with its arguments as a tuple."""

_LEN = struct.Struct(">I")


def bind(backend: ProcessBackend, ex: ExportFunc, general: Bound) -> Bound:
    """The function that runs ``ex``'s calls: generated when the fast path applies
    (no resource handle in the plugin's exports), else ``general``."""
    for other in backend.port.exports:
        sig = other.sig
        if contains_handles([t for _, t in sig.params] + [sig.result]):
            return general  # handles are routed, lent and dropped per call
    return _generate(backend, ex, general)


def _generate(backend: ProcessBackend, ex: ExportFunc, general: Bound) -> Bound:
    codec = backend._exports[ex.index]
    timeout_ms = backend._timeout_ms
    kill_after = backend._kill_after
    pool = backend.pool
    g: dict[str, Any] = {
        "general": general,
        "plugin": backend.plugin,
        "sup": backend._supervisor,
        "ex": ex,
        "running": _callctx.running,
        "get_ident": threading.get_ident,
        "monotonic": time.monotonic,
        "pool": pool,
        "ready_solo": pool.ready_solo,
        "new": pool.new,
        "discard": pool.discard,
        "refresh": backend._refresh,
        "died_idle": backend._died_idle,
        "outcome": backend._outcome,
        "lost": backend._lost,
        "error": backend.port.error,
        "Frame": Frame,
        "CallHandles": CallHandles,
        "watchdog": WATCHDOG,
        "packb": msgpack.Packer(use_bin_type=True, autoreset=True).pack,
        "pack_len": _LEN.pack,
        "write": os.write,
        "PluginError": PluginError,
        "ProtocolError": ProtocolError,
        "ENCODE_ERRORS": (WitTypeError, WitValueError),
        "CALL": Op.CALL,
        "RESULT": Op.RESULT,
        "INDEX": ex.index,
        "CODEC": codec,
        "NO_DROPS": (),
        "TIMEOUT_S": None if timeout_ms is None else timeout_ms / 1000,
        "KILL_AFTER": kill_after,
        **CHECK_NAMES,  # what the codec's inlined wire checks call
    }
    g["slot"], g["give"] = pool.hot_path()
    n = ex.nparams
    names = [f"a{i}" for i in range(n)]
    # 1. Admission (fastcall's) and the arguments' wire forms.
    code = admission(n)
    add = code.append
    checks: list[str] = []
    encoded: list[int] = []
    for i, (_, t) in enumerate(ex.sig.params):
        check = sent_as_is(t, f"a{i}")
        if check is None:
            encoded.append(i)
        else:
            checks.append(check)
    if checks:
        add(f"    if {' or '.join(f'({c})' for c in checks)}:")
        add("        return general(args)")
    if encoded:  # the codec's encoders; what they refuse, the general path reports
        add("    encs = CODEC.encs")
        add("    try:")
        for i in encoded:
            add(f"        a{i} = encs[{i}](a{i}, None)")
        add("    except ENCODE_ERRORS:")
        add("        return general(args)")
    wire = f"({', '.join(names)},)" if n else "()"
    # 2. The frame, then a worker.
    add(f"    body = packb((CALL, INDEX, {wire}, NO_DROPS))")
    add("    data = pack_len(len(body)) + body")
    # 3. Deadline, frame, send; 4. the reply (its lines are indented below).
    timed = kill_after is not None
    body = [
        "        if not worker.fresh:",
        "            refresh(worker, ex)",
        "        frame = worker.call_frame",
        "        if frame is None:",
        "            frame = worker.call_frame = Frame(plugin, None, worker)",
    ]
    if timed:
        body += [
            "        now = monotonic()",
            "        frame.deadline_s = now + TIMEOUT_S",
            "        deadline = now + KILL_AFTER",
            "        if not watchdog.started:",
            "            watchdog.start()",
        ]
    else:
        body.append("        deadline = None")
    # The frame is current from before the try whose finally removes it (a signal
    # handler runs at a later bytecode, inside it); the watchdog is armed inside.
    body += [
        "        chan = worker.chan",
        "        running[ident] = frame",
        "        try:",
    ]
    if timed:
        body += [
            "            watchdog.armed[worker] = deadline",
            "            if deadline < watchdog.until:",
            "                watchdog.wake()",
        ]
    body += [
        "            try:",
        "                sent = write(chan.wfd, data)",
        "                if sent != len(data):",
        "                    chan.send_rest(data, sent, deadline)",
        "            except BlockingIOError:  # the pipe is full",
        "                chan.send_rest(data, 0, deadline)",
        "            except BrokenPipeError:",
        "                if worker.overdue:  # killed at its deadline while the frame went out",
        "                    raise",
        "                died_idle(worker)",
        "                gone = True",
        "            if not gone:",
        "                msg = chan.recv()  # until the reply, or EOF: the watchdog's kill",
        "                if msg[0] == RESULT and len(msg) == 2:",
        *[f"                {line}" for line in _result_lines(ex, g)],
        "                    worker.calls += 1",
        "                    if sup.consecutive:",
        "                        sup.record_success()",
        "                    return value",
        "                handles = CallHandles(worker)",
        "                ok, value = outcome(worker, ex, CODEC, frame, handles, deadline, msg)",
        "                if ok:",
        "                    return value",
        "        except BaseException as e:",
        "            raise lost(worker, ex, e)",
        "        finally:",
        "            del running[ident]",
    ]
    if timed:
        body.append("            watchdog.armed.pop(worker, None)")
    # 5. The worker back (holding); a worker that had exited before it got the call
    # (gone), or one discarded while this call waited for it: the general path, on another.
    inner = [
        "    gone = False",
        "    try:",
        *body,
        "    finally:",
        "        if pool.closed:",
        "            discard(worker)",
        "    if not gone:",
        "        raise value",
    ]
    code += holding("worker", pool.size == 1, inner)
    source = "\n".join(code) + "\n"
    exec(_compile(source), g)  # our own template: no outside input
    fn: Bound = g.pop("call")
    fn.__name__ = fn.__qualname__ = f"call_{ex.name}"
    return fn


def _result_lines(ex: ExportFunc, g: dict[str, Any]) -> list[str]:
    """Lines that set ``value`` from the ``RESULT`` message ``msg`` (checked: a
    malformed value is a :class:`ProtocolError`, which kills the worker)."""
    result = ex.sig.result
    if ex.returns_result or result is None:
        # ok payload / None: the codec's decoder (a value without a type is refused).
        g["DEC"] = dec = g["CODEC"].ok
        if dec is None:
            return [
                "    if msg[1] is not None:",
                "        raise ProtocolError('a value for a call without a result')",
                "    value = None",
            ]
        return ["    value = DEC(msg[1], None)"]
    check = wire_check(result, "value")
    if check is None:
        g["DEC"] = g["CODEC"].ok
        return ["    value = DEC(msg[1], None)"]
    return [
        "    value = msg[1]",
        f"    if {check}:",
        f"        raise ProtocolError('expected {result}, got ' + type(value).__name__)",
    ]

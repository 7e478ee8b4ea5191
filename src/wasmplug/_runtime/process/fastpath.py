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
   pool (its common case inline: ``InstancePool.hot_path``, or for a pool of one
   its worker's lock alone, ``InstancePool.solo``);
3. the deadline: the watchdog armed by one dict store (see :mod:`.watchdog`),
   the call's frame current on this thread (``callctx.running``: host calls
   and re-entry checks find it there), the frame sent with ``MSG_DONTWAIT``
   (a frame that does not fit the socket buffer at once is finished by the
   channel, with the deadline);
4. one ``recv`` with the deadline in the kernel (``SO_RCVTIMEO``, see
   :mod:`.wire`); a ``RESULT`` of a primitive type is checked inline, anything
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

import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge.wit import contains_handles
from wasmplug._errors import PluginError, WitTypeError, WitValueError
from wasmplug._runtime.fastcall import _compile, admission

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
        "checkout": pool.checkout,
        "resume": pool.resume,
        "checkin": pool.checkin,
        "Empty": queue.Empty,
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
        "DONTWAIT": socket.MSG_DONTWAIT,
        "GONE": (BrokenPipeError, ConnectionResetError),
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
    g["take"], g["give"] = pool.hot_path()
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
    # 2. The frame, then a worker (pool.hot_path: the idle, unlocked, alive case inline).
    add(f"    body = packb((CALL, INDEX, {wire}, NO_DROPS))")
    add("    data = pack_len(len(body)) + body")
    solo = pool.size == 1
    add("    try:")
    if solo:  # a pool of one: the worker's lock alone (InstancePool.solo)
        g["checkout_solo"] = pool.checkout_solo
        add("        worker = pool.solo")
        add("        if worker is None or not worker.lock.acquire(False):")
        add("            worker = checkout_solo()")
        add("        elif not worker.alive:")
        add("            worker.lock.release()")
        add("            worker = checkout_solo()")
    else:
        add("        try:")
        add("            worker = take()")
        add("        except Empty:")
        add("            worker = checkout()")
        add("        else:")
        add("            if worker is None or not worker.lock.acquire(False):")
        add("                worker = resume(worker)")
        add("            elif not worker.alive:")
        add("                worker.lock.release()")
        add("                worker = checkout()")
    add("    except PluginError as e:")
    add("        raise error(e, ex)")
    # 3. Deadline, frame, send; 4. the reply.
    add("    gone = False")
    add("    try:")
    add("        if not worker.fresh:")
    add("            refresh(worker, ex)")
    add("        frame = worker.call_frame")
    add("        if frame is None:")
    add("            frame = worker.call_frame = Frame(plugin, None, worker)")
    timed = kill_after is not None
    if timed:
        add("        now = monotonic()")
        add("        frame.deadline_s = now + TIMEOUT_S")
        add("        deadline = now + KILL_AFTER")
        add("        if not watchdog.started:")
        add("            watchdog.start()")
    else:
        add("        deadline = None")
    add("        chan = worker.chan")
    # Set before the try whose finally deletes it (a signal handler runs at a later
    # bytecode, inside it); the watchdog is armed inside, so it is always disarmed.
    add("        running[ident] = frame")
    add("        try:")
    if timed:
        add("            watchdog.armed[worker] = deadline")
    add("            try:")
    add("                sent = chan.sock.send(data, DONTWAIT)")
    add("                if sent != len(data):")
    add("                    chan.send_rest(data, sent, deadline)")
    add("            except BlockingIOError:  # the socket buffer is full")
    add("                chan.send_rest(data, 0, deadline)")
    add("            except GONE:")
    add("                died_idle(worker)")
    add("                gone = True")
    add("            if not gone:")
    add("                msg = chan.recv(deadline)")
    add("                if msg[0] == RESULT and len(msg) == 2:")
    code += [f"                {line}" for line in _result_lines(ex, g)]
    add("                    worker.calls += 1")
    add("                    if sup.consecutive:")
    add("                        sup.record_success()")
    add("                    return value")
    add("                handles = CallHandles(worker)")
    add("                ok, value = outcome(worker, ex, CODEC, frame, handles, deadline, msg)")
    add("                if ok:")
    add("                    return value")
    add("        except BaseException as e:")
    add("            raise lost(worker, ex, e)")
    add("        finally:")
    add("            del running[ident]")
    if timed:
        add("            watchdog.armed.pop(worker, None)")
    add("    finally:")
    if solo:
        g["checkin_solo"] = pool.checkin_solo
        add("        if pool.closed:")
        add("            checkin_solo(worker)")
        add("        else:")
        add("            worker.lock.release()")
    else:
        add("        if pool.closed:")
        add("            checkin(worker)")
        add("        else:")
        add("            worker.lock.release()")
        add("            if worker.alive:")
        add("                give(worker)")
    add("    if gone:  # it had exited before it got the call: made again on another")
    add("        return general(args)")
    add("    raise value")
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

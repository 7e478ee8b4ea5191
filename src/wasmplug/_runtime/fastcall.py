"""One function per export for its in-process calls, generated on the export's first call.

:meth:`CallPath._invoke` and :meth:`CallPath._run` handle every kind of call, so each
call walks their checks for resource handles, call threads, process backends,
telemetry, per-call C allocations and WASI output. For the common case (the
plugin runs in-process on the calling thread and the export takes no resource
handle and no argument that needs a C allocation per call), :func:`bind`
generates one function that does the same work as the general path, in the same
order, with everything this export cannot need left out and every constant
resolved once, as attrs generates ``__init__`` for a class:

1. admission: the plugin is open and not quarantined, the arity is right, the
   calling thread is not inside a plugin call (nested calls take the general path,
   which checks for re-entry), and each number argument has the exact class;
2. an instance from the pool (a pool of one: its instance's lock alone,
   ``InstancePool.solo``; a larger pool: a slot, then its instance's lock,
   ``InstancePool.hot_path``), each taken by a ``with`` statement so that Ctrl-C
   cannot lose a slot or leave a lock held (:func:`holding`), its pending
   guest destructors, its call buffers;
3. the arguments: numbers with one ``struct.pack_into`` of kind bytes and payloads
   (the kinds as constants), other types by their lowerers;
4. the epoch deadline (re-armed only when the epoch moved since it was armed: the
   deadline is absolute, so an unmoved epoch still grants the full slice), fuel,
   the stderr tail used to classify a fault;
5. the call, with the instance current on this thread (``callctx.running``, which
   the epoch ticker also reads to see that a call is in flight: one store, not a
   second registration), restored in ``finally``; a signal deferred in a
   callback; a fault;
6. the counters, then the result: a scalar read through its alias, or lifted.

Whatever is unusual leaves the fast path where it is detected, before any state
changes: a failed admission check goes to the general path, and an argument
that ``struct`` or a lowerer refuses is lowered again by :meth:`CallPath._run`
on the same instance, which raises the error that names the parameter. Faults,
interrupts (``BaseException``), lift limits and ``err`` results go to the same
``CallPath`` methods as on the general path, so classification, quarantine and
the restart policy are shared code.

The generated source depends only on the export's shape (arity, number codes,
which steps apply); every value, per plugin or per export, is in the function's
globals, so exports of the same shape share one compiled code object. The
source is registered in :mod:`linecache` so that tracebacks show its lines.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import linecache
import struct
import threading
from collections.abc import Callable
from typing import Any

from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge import ffi as f
from wasmplug._bridge import sigguard as _sigguard
from wasmplug._bridge.lift import too_large
from wasmplug._bridge.params import StringParam
from wasmplug._bridge.values import Err
from wasmplug._bridge.wit import Prim, contains_handles
from wasmplug._errors import ErrorResult, PluginError, PluginFault, WitTypeError, WitValueError

from .exports import ExportFunc

CallPath = Any
"""A :class:`~wasmplug._runtime.callpath.CallPath` (the plugin); not imported, since
``callpath`` imports this module and the package's modules import without cycles."""

__all__ = ["LINGER", "Bound", "admission", "bind", "holding"]

LINGER = 1 << 16
"""A string result of at most this many bytes is left in its call buffer's result
slot after a call (wasmtime frees it when it writes the next result there, or
``Buffers.free`` does); a longer one is deleted at once."""

Bound = Callable[[tuple[Any, ...]], Any]
"""``bound(args)``: one call of an export with its arguments as a tuple."""


def bind(plugin: CallPath, ex: ExportFunc) -> Bound:
    """The function that runs ``ex``'s calls: generated when the fast path applies,
    else the general path (``plugin._invoke``, with telemetry if it is wrapped)."""
    general: Bound = functools.partial(plugin._invoke, ex)
    if (
        plugin._backend is not None
        or plugin._threaded
        or plugin._tel is not None
        or ex.has_handles
        or ex.free_params
    ):
        return general
    return _generate(plugin, ex, general)


def _generate(plugin: CallPath, ex: ExportFunc, general: Bound) -> Bound:
    n = ex.nparams
    numbers = ex.numbers
    g: dict[str, Any] = {
        "general": general,
        "plugin": plugin,
        "ex": ex,
        "sup": plugin._supervisor,
        "running": _callctx.running,
        "get_ident": threading.get_ident,
        "pool": plugin._pool,
        "ready_solo": plugin._pool.ready_solo,
        "new": plugin._pool.new,
        "discard": plugin._pool.discard,
        "take_buffers": ex.take_buffers,
        "ticker": plugin._ticker,
        "arm": plugin._ticker.arm,
        "set_fuel": f.set_fuel_to,
        "func_call": f.func_call_args,
        "val_delete": f.val_delete,
        "deferred": _sigguard.deferred,
        "run_deferred": _sigguard.run_deferred,
        "run": plugin._run,
        "run_drops": plugin._run_drops,
        "fault": plugin._fault,
        "interrupted": plugin._interrupted,
        "lift_fault": plugin._lift_fault,
        "error": plugin._error,
        "PluginError": PluginError,
        "PluginFault": PluginFault,
        "ErrorResult": ErrorResult,
        "Err": Err,
        "LOWER_ERRORS": (WitTypeError, WitValueError, UnicodeEncodeError),
        "PACK_ERRORS": (struct.error, OverflowError),
        "INDEX": ex.index,
        "SLICE": plugin._slice_ticks,
        "TICKS": plugin._deadline_ticks,
        "FUEL": None if plugin._fuel is None else ctypes.c_uint64(plugin._fuel),
        "BOOL": f.BOOL,
    }
    g["slot"], g["give"] = plugin._pool.hot_path()
    # 1. Admission; anything unusual takes the general path, which raises or nests.
    code = admission(n)
    add = code.append
    text = [i for i, tpl in enumerate(ex.templates) if isinstance(tpl, StringParam)]
    if text:  # a str subclass, or not a str: the general path says which
        add(f"    if {' or '.join(f'a{i}.__class__ is not str' for i in text)}:")
        add("        return general(args)")
    if numbers is not None:
        packer, _, kinds = numbers
        checks = []
        for i, (_, t) in enumerate(ex.sig.params):
            if isinstance(t, Prim) and t.name in ("f32", "f64"):  # an int is accepted too
                checks.append(f"(a{i}.__class__ is not float and a{i}.__class__ is not int)")
            else:
                checks.append(f"a{i}.__class__ is not int")
        add(f"    if {' or '.join(checks)}:")
        add("        return general(args)")
        g["pack_into"] = packer.pack_into
        for i, kind in enumerate(kinds):
            g[f"K{i}"] = kind
    # 2. An instance (holding(), below, wraps the body: the pool's rules for Ctrl-C),
    # its pending destructors, its buffers; then steps 3 to 6.
    body: list[str] = []
    put = body.append
    if _may_hold_handles(plugin):
        put("        if inst.pending_drops:")
        put("            run_drops(inst)")
    put("        buf = inst.buffers[INDEX]")
    put("        if buf is None:")
    put("            buf = inst.buffers[INDEX] = take_buffers(inst)")
    # 3. The arguments.
    if numbers is not None:
        packed = ", ".join(f"K{i}, a{i}" for i in range(n))
        put("        try:")
        put(f"            pack_into(buf.raw, 0, {packed})")
        put("        except PACK_ERRORS:")
        put("            return run(inst, ex, args)")
    elif n:
        # A top-level string: encoded here and pointed at (StringParam); the rest
        # by their lowerers. What either refuses, run() lowers again and reports.
        strings = [isinstance(tpl, StringParam) for tpl in ex.templates]
        if not all(strings):
            put("        lowers = buf.lowers")
            put("        pvals = buf.pvals")
        if any(strings):
            put("        strings = buf.strings")
        put("        try:")
        for i in range(n):
            if strings[i]:
                put(f"            data, size = strings[{i}]")
                put(f"            raw = a{i}.encode()")
                put("            data.value = raw")
                put("            size.value = len(raw)")
            else:
                put(f"            lowers[{i}](a{i}, pvals[{i}], inst)")
        put("        except LOWER_ERRORS:")
        put("            return run(inst, ex, args)")
    # 4. Deadline, fuel, the stderr tail.
    put("        epoch = ticker.epoch")
    put("        if inst.deadline_epoch != epoch:")
    put("            arm(inst.context, SLICE)")
    put("            inst.deadline_epoch = epoch")
    put("        inst.deadline_at = epoch + TICKS")
    if plugin._fuel is not None:
        put("        set_fuel(inst.context, FUEL)")
    uses_wasi = plugin._uses_wasi
    if uses_wasi:
        put("        stderr = inst.stderr")
        put("        if stderr.tail:")
        put("            stderr.tail = ''")
    # 5. The call, with the instance current on this thread (which is also what the
    # epoch ticker reads to see that a call is in flight), removed in finally;
    # admission made sure the thread had no entry. The entry is made before the try,
    # so the finally never deletes a missing one: a signal handler (Ctrl-C) runs only
    # at a later bytecode, inside the try.
    put("        running[ident] = inst")
    put("        try:")
    put("            inst.caller = None")
    put("            err = func_call(*buf.args)")
    if uses_wasi:
        put("            if inst.output_poll is not None:")
        put("                inst.drain_output()")
    put("        finally:")
    put("            del running[ident]")
    put("        if deferred:")
    put("            run_deferred(inst)")
    put("        if err:")
    put("            fault(inst, ex, err)")
    # 6. Counters and the result.
    put("        inst.calls += 1")
    put("        if sup.consecutive:")
    put("            sup.record_success()")
    body += _result_lines(ex, g)
    inner = [
        "    try:",
        *body,
        "    except BaseException as e:",
        "        if not isinstance(e, Exception):",
        "            interrupted(inst, ex, e)",
        "        raise",
        "    finally:",
        "        if pool.closed:",
        "            discard(inst)",
    ]
    code += holding("inst", plugin._pool.size == 1, inner)
    source = "\n".join(code) + "\n"
    fn = _function(source, g)
    fn.__name__ = fn.__qualname__ = f"call_{ex.name}"
    return fn


def admission(n: int) -> list[str]:
    """The first lines of a generated ``call(args)`` (this module's, and the process
    tier's): a closed or quarantined plugin, a call already running on this thread
    (nested: re-entry is checked there) or a wrong arity goes to ``general(args)``;
    the ``n`` arguments are unpacked into ``a0``, ``a1``... Globals used: ``get_ident``,
    ``plugin``, ``sup``, ``running``, ``general``."""
    code = [
        "def call(args):",
        "    ident = get_ident()",
        "    if plugin._closed or sup.quarantined or ident in running:",
        "        return general(args)",
    ]
    if n:  # a wrong arity fails to unpack (no len() call on the way that succeeds)
        code += [
            "    try:",
            f"        {', '.join(f'a{i}' for i in range(n))}, = args",
            "    except ValueError:",
            "        return general(args)",
        ]
    else:
        code += ["    if args:", "        return general(args)"]
    return code


def holding(name: str, solo: bool, inner: list[str]) -> list[str]:
    """The lines of a generated ``call(args)`` (this module's, and the process tier's)
    that run ``inner`` (written at one level of indentation) with an instance of the
    pool as ``name``, its lock held, then ``return general(args)`` if it was
    discarded while the call waited for it.

    Every step is Ctrl-C-safe: Python checks for signals after each call and on
    loops, not between a ``with`` statement's ``__enter__`` and its body, so each
    step that takes something (the slot, the lock) is a ``with`` whose body gives
    it back. A pool of one: its instance's lock alone (``InstancePool.solo``; made
    first by ``ready_solo`` if there is none). A larger pool: a slot, then its
    instance's lock (``InstancePool.hot_path``). Globals used: ``pool``, ``ready_solo``
    or ``slot``, ``new`` and ``give``, ``error``, ``PluginError``, ``ex``, ``general``.
    """
    if solo:
        code = [
            "    try:",
            f"        {name} = pool.solo",
            f"        if {name} is None:",
            f"            {name} = ready_solo()",
            "    except PluginError as e:",
            "        raise error(e, ex)",
            f"    with {name}.lock:",
            f"        if {name}.alive:",
        ]
        indent = " " * 8
    else:
        code = [
            f"    with slot as {name}:",
            "        try:",
            f"            if {name} is None:",
            "                box = [None]",
            "                try:",
            f"                    {name} = new(box)",
            "                except PluginError as e:",
            "                    raise error(e, ex)",
            f"            with {name}.lock:",
            f"                if {name}.alive:",
        ]
        indent = " " * 16
    code += [indent + line for line in inner]
    if not solo:
        code += [
            "        finally:",
            f"            if {name} is None:",
            f"                {name} = box[0]  # made, but interrupted on its way here",
            f"            if {name} is None or {name}.alive:",
            f"                give({name})",
        ]
    code.append("    return general(args)  # discarded while this call waited for it")
    return code


def _result_lines(ex: ExportFunc, g: dict[str, Any]) -> list[str]:
    if ex.nresults == 0:
        return ["        return None"]
    scalar = ex.result_scalar
    if scalar is not None:
        post = scalar[3]
        if post is None:
            return ["        return buf.rslot.value"]
        g["POST"] = post
        return ["        return POST(buf.rslot.value)"]
    if ex.sig.result == Prim("string"):
        # Read in place (lift.string_slot). A string of at most LINGER bytes stays
        # in the result slot: wasmtime drops the slot's old value when it writes the
        # next result, so deleting it now would be a second C call per call.
        # The bytes are sliced off the slot's pointer and decoded (lift.string_slot):
        # no ctypes function call.
        g.update(too_large=too_large, LINGER=LINGER)
        return [
            "        size, chars = buf.rstring",
            "        n = size.value",
            "        if n > LINGER:",
            "            value = chars[:n].decode() if n <= inst.max_lift else None",
            "            val_delete(buf.rref)",
            "            buf.result.kind = BOOL",
            "            if value is None:",
            "                lift_fault(inst, ex, too_large(inst))",
            "            return value",
            "        if n > inst.max_lift:",
            "            lift_fault(inst, ex, too_large(inst))",
            "        return chars[:n].decode() if n else ''",
        ]
    lines = [
        "        inst.lift_left = inst.max_lift",
        "        inst.lift_deadline = 0.0",
        "        try:",
        "            value = buf.lift(buf.result, inst)",
        "        except PluginFault as e:",
        "            lift_fault(inst, ex, e)",
    ]
    if ex.free_result:
        lines += [
            "        finally:",
            "            val_delete(buf.rref)",
            "            buf.result.kind = BOOL",
        ]
    if ex.returns_result:
        lines += [
            "        if value.__class__ is Err:",
            "            raise error(ErrorResult(value.value), ex)",
            "        return value.value",
        ]
    else:
        lines.append("        return value")
    return lines


def _may_hold_handles(plugin: CallPath) -> bool:
    """Whether any export of ``plugin`` passes a resource handle (so guest destructors
    may be pending on an instance)."""
    for other in plugin._exports_list:
        sig = other.sig
        types = [t for _, t in sig.params] + ([sig.result] if sig.result is not None else [])
        if contains_handles(types):
            return True
    return False


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> Any:
    filename = f"<wasmplug call {hashlib.sha1(source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")


def _function(source: str, g: dict[str, Any]) -> Callable[..., Any]:
    exec(_compile(source), g)  # our own template: no outside input
    fn: Callable[..., Any] = g.pop("call")
    # Ctrl-C that lands in a finalizer while it is inside Wasm is deferred, as for
    # CallPath._run (its code object is the cached one: the registry stays small).
    return _sigguard.enters_wasm(fn)

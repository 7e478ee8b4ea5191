"""Per-call deadlines, checked in slices by wasmtime's epoch-deadline callback.

Every Store gets the same callback. A call's epoch deadline is set at most
:data:`SLICE_MS` ahead of the call's start (``Plugin._slice_ticks``); the
absolute end of its budget is kept on the instance (``deadline_at``, in
epoch ticks). When the store's deadline passes, wasmtime calls
:func:`_on_deadline` on the thread that runs the guest, which either grants the
next slice or ends the call with one of the errors in :mod:`.faults`:

- the budget is spent: ``DEADLINE_TRAP`` (a :class:`~wasmplug.PluginTimeout`);
- the instance was flagged ``interrupt`` (a caller stopped waiting for it), the
  ``acall`` task running it was cancelled (``aio.AsyncCall``), or
  Ctrl-C arrived and the application's SIGINT handler raised there:
  ``INTERRUPT_TRAP``; the raised exception is parked on ``signal_exc`` and
  re-raised by the caller once Wasm has unwound.

Slicing is what lets Ctrl-C reach a main-thread call that spins in Wasm: Python
runs signal handlers only between bytecodes, and the callback is the Python
code the main thread runs every slice (see :mod:`wasmplug._bridge.sigguard`).
Only the targeted store is ended: the engine's epoch is never advanced for it,
so calls on other threads keep their own deadlines.
"""

from __future__ import annotations

from typing import Any

from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge import ffi as f
from wasmplug._bridge import sigguard as _sigguard

from .faults import DEADLINE_TRAP, INTERRUPT_TRAP

__all__ = ["SLICE_MS", "install"]

SLICE_MS = 10.0
"""Longest stretch of guest code between two deadline checks, in ms (Ctrl-C latency)."""

_current = _callctx.current
_current_async = _callctx.current_async
_deferred = _sigguard.deferred
_new_error = f.new_error


@_sigguard.entry_point
def _on_deadline(_ctx: Any, _data: Any, delta: Any, kind: Any) -> int:
    # Everything after the entry is inside the try (see _sigguard).
    inst: Any = None
    try:
        inst = _current()
        if _deferred:
            _sigguard.run_deferred(inst)
        if inst is None:
            return _new_error(DEADLINE_TRAP)
        if inst.interrupt:
            return _new_error(INTERRUPT_TRAP)
        call = _current_async()
        if call is not None and call.cancelled:  # the acall task was cancelled
            return _new_error(INTERRUPT_TRAP)
        plugin = inst.plugin
        remaining = inst.deadline_at - plugin._ticker.epoch
        if remaining <= 0:
            return _new_error(DEADLINE_TRAP)
        delta[0] = min(remaining, plugin._slice_ticks)
        kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
        return 0
    except BaseException as e:
        if inst is not None and getattr(inst, "signal_exc", None) is None:
            inst.signal_exc = e
        return _new_error(INTERRUPT_TRAP)


_CALLBACK = f.EpochDeadlineCallback(_on_deadline)


def install(store_ptr: Any) -> None:
    """Give a store (its ``wasmtime_store_t*``) the slicing deadline callback (once,
    right after creating it)."""
    f.store_epoch_deadline_callback(store_ptr, _CALLBACK, None, f.NO_FINALIZER)

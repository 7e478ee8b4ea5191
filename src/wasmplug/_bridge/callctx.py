"""Which instance the current thread is running, for host functions to find their caller.

A host function is invoked by wasmtime on the thread that entered Wasm, so a
thread-local is enough to find the instance (and therefore the plugin, the
store and the per-call exception slot) without wasmtime-py's module-global
``LAST_EXCEPTION``, which two threads would overwrite.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = [
    "current",
    "current_async",
    "current_plugin",
    "host_call_runner",
    "set_async",
    "swap",
    "tls",
]

tls = threading.local()
"""This thread's call state: ``inst`` (the instance, or a process-tier call frame, whose
call is running here), ``aio`` (the ``acall`` it belongs to) and ``host_call_runner``.
The functions below read it; the runtime's call paths read and set ``tls.inst``
directly, where a function call per access would cost too much."""


def current() -> Any:
    """The instance whose Wasm code is running on this thread, or ``None``."""
    return getattr(tls, "inst", None)


def current_plugin() -> Any:
    """The :class:`~wasmplug.Plugin` whose call is running on this thread, or ``None``.

    Host functions use it to tell which plugin called them (for per-plugin
    state or permissions), the way :class:`~wasmplug.HttpCapability` finds the
    caller's allow-list.
    """
    inst = getattr(tls, "inst", None)
    return None if inst is None else inst.plugin


def host_call_runner() -> Any:
    """How a host function must run on this thread: ``None`` for "right here", or a
    function ``runner(fn, args)`` that runs ``fn(args)`` elsewhere and returns its
    result. A plugin call thread (``_runtime/callthread.py``) sets one, so that host
    functions run on the thread that called into the plugin, as on the direct path."""
    return getattr(tls, "host_call_runner", None)


def swap(inst: Any) -> Any:
    """Make ``inst`` current on this thread and return the previous one (to restore)."""
    prev = getattr(tls, "inst", None)
    tls.inst = inst
    return prev


def current_async() -> Any:
    """The ``acall`` this thread is running (``_runtime.aio.AsyncCall``), or ``None``."""
    return getattr(tls, "aio", None)


def set_async(call: Any) -> Any:
    """Make ``call`` this thread's current ``acall`` and return the previous one (to restore)."""
    prev = getattr(tls, "aio", None)
    tls.aio = call
    return prev


run_coroutine: Any = None
"""Runs a host function's coroutine for the guest call on this thread:
``run_coroutine(coro, instance, qualname) -> value``. Set by the runtime
(``wasmplug._runtime.aio``); the bridge only calls it."""

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
    "running",
    "set_async",
    "swap",
    "tls",
]

running: dict[int, Any] = {}
"""The instance (or process-tier call frame) whose call runs on each thread, by
``threading.get_ident()``; a thread outside any call has no entry (so an ident the
OS reuses starts clean, and ``bool(running)`` tells the epoch ticker whether any
call is in flight). A plain dict, not a ``threading.local``: an access costs a
dict operation (about 20 ns) instead of the local's per-thread lookup (about
110 ns), and the runtime's fastest call path reads it twice and writes it twice.
Each thread writes only its own key (atomic under the GIL). Use :func:`swap` to
change it, or write the key and delete it in ``finally`` as that path does."""

_get_ident = threading.get_ident

tls = threading.local()
"""This thread's other call state: ``aio`` (the ``acall`` it belongs to) and
``host_call_runner``."""


def current() -> Any:
    """The instance whose Wasm code is running on this thread, or ``None``."""
    return running.get(_get_ident())


def current_plugin() -> Any:
    """The :class:`~wasmplug.Plugin` whose call is running on this thread, or ``None``.

    Host functions use it to tell which plugin called them (for per-plugin
    state or permissions), the way :class:`~wasmplug.HttpCapability` finds the
    caller's allow-list.
    """
    inst = running.get(_get_ident())
    return None if inst is None else inst.plugin


def host_call_runner() -> Any:
    """How a host function must run on this thread: ``None`` for "right here", or a
    function ``runner(fn, args)`` that runs ``fn(args)`` elsewhere and returns its
    result. A plugin call thread (``_runtime/callthread.py``) sets one, so that host
    functions run on the thread that called into the plugin, as on the direct path."""
    return getattr(tls, "host_call_runner", None)


def swap(inst: Any) -> Any:
    """Make ``inst`` current on this thread (``None``: none) and return the previous
    one (to restore)."""
    ident = _get_ident()
    prev = running.get(ident)
    if inst is None:
        running.pop(ident, None)
    else:
        running[ident] = inst
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

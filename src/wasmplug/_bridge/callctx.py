"""Which instance the current thread is running, for host functions to find their caller.

A host function is invoked by wasmtime on the thread that entered Wasm, so a
thread-local is enough to find the instance (and therefore the plugin, the
store and the per-call exception slot) without wasmtime-py's module-global
``LAST_EXCEPTION``, which two threads would overwrite.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["current", "current_plugin", "swap"]

_tls = threading.local()


def current() -> Any:
    """The instance whose Wasm code is running on this thread, or ``None``."""
    return getattr(_tls, "inst", None)


def current_plugin() -> Any:
    """The :class:`~wasmplug.Plugin` whose call is running on this thread, or ``None``.

    Host functions use it to tell which plugin called them (for per-plugin
    state or permissions), the way :class:`~wasmplug.HttpCapability` finds the
    caller's allow-list.
    """
    inst = getattr(_tls, "inst", None)
    return None if inst is None else inst.plugin


def swap(inst: Any) -> Any:
    """Make ``inst`` current on this thread and return the previous one (to restore)."""
    prev = getattr(_tls, "inst", None)
    _tls.inst = inst
    return prev

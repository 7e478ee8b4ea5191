"""Which instance the current thread is running, for host functions to find their caller.

A host function is invoked by wasmtime on the thread that entered Wasm, so a
thread-local is enough to find the instance (and therefore the plugin, the
store and the per-call exception slot) without wasmtime-py's module-global
``LAST_EXCEPTION``, which two threads would overwrite.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["current", "swap"]

_tls = threading.local()


def current() -> Any:
    """The instance whose Wasm code is running on this thread, or ``None``."""
    return getattr(_tls, "inst", None)


def swap(inst: Any) -> Any:
    """Make ``inst`` current on this thread and return the previous one (to restore)."""
    prev = getattr(_tls, "inst", None)
    _tls.inst = inst
    return prev

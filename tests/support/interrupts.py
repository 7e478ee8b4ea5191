"""Ctrl-C at every point of a generated call function, for the tests of both tiers.

Python runs a signal handler when a call returns (and on loops), so a
``KeyboardInterrupt`` can land right after any C call a call function makes: after
a lock was taken, a slot removed, a frame sent. :func:`interrupted_at` raises one
there, the ``k``-th time, and :func:`served_elsewhere` tells whether the plugin still
serves calls afterwards (a lock or slot left held would block them for ever).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Collection
from typing import Any

from wasmplug import Plugin
from wasmplug._runtime.plugin import find_export

__all__ = ["interrupt_every_c_call", "interrupted_at", "served_elsewhere"]


def interrupted_at(
    plugin: Plugin, codes: Collection[Any], k: int, *, general: bool = False
) -> bool:
    """Call ``add(1, 2)`` with KeyboardInterrupt raised when the ``k``-th C call made by
    a frame running one of ``codes`` returns; whether it was (``False``: the call made
    fewer than ``k``). ``general``: through the general path (``Plugin._invoke``)."""
    seen = 0

    def profile(frame: Any, event: str, _arg: Any) -> None:
        nonlocal seen
        if event == "c_return" and frame.f_code in codes:
            seen += 1
            if seen == k:
                raise KeyboardInterrupt

    ex = find_export(plugin, "add")
    assert ex is not None
    sys.setprofile(profile)
    try:
        if general:
            plugin._invoke(ex, (1, 2))
        else:
            plugin.call("add", 1, 2)
    except KeyboardInterrupt:
        return True
    finally:
        sys.setprofile(None)
    return False


def served_elsewhere(plugin: Plugin, timeout_s: float = 5.0) -> bool:
    """Whether a call of ``add(2, 2)`` from another thread is served within ``timeout_s``."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(plugin.call("add", 2, 2)), daemon=True)
    thread.start()
    thread.join(timeout_s)
    return out == [4]


def interrupt_every_c_call(
    plugin: Plugin, codes: Collection[Any], pool_size: int, timeout_s: float = 5.0
) -> int:
    """Interrupt ``add(1, 2)`` at each C call made by a frame running one of ``codes``
    in turn (:func:`interrupted_at` with k = 1, 2, ...), asserting after each that
    every one of the ``pool_size`` slots still serves a call (first in, first out);
    return how many C calls were interrupted."""
    k = 1
    while interrupted_at(plugin, codes, k):
        for _ in range(pool_size):
            assert served_elsewhere(plugin, timeout_s), (
                f"not served after an interrupt at C call {k}"
            )
        k += 1
    return k - 1

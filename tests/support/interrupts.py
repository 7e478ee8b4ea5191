"""Ctrl-C at every point of a call, for the tests of both tiers.

Python runs a signal handler when a call returns (and on loops), so a
``KeyboardInterrupt`` can land right after any C call a call path makes: after
a lock was taken, a slot removed, a frame sent. :func:`interrupted_at` raises one
there, the ``k``-th time, and :func:`served_elsewhere` tells whether the plugin still
serves calls afterwards (a lock or slot left held would block them for ever).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Collection
from typing import Any

from wasmplug import Plugin
from wasmplug._runtime.plugin import find_export
from wasmplug._runtime.pool import InstancePool

__all__ = [
    "check_held",
    "interrupt_every_c_call",
    "interrupt_every_reset",
    "interrupted_at",
    "pool_of",
    "served_elsewhere",
    "unwedge",
]

CALL_DEADLINE_S = 60.0
"""How long one interrupted call may take (a lock or slot left held by an earlier
interrupt makes it wait for ever: the test fails instead of hanging)."""


def pool_of(plugin: Plugin) -> InstancePool[Any]:
    """The plugin's pool: its instances, or with ``isolation="process"`` its workers."""
    backend = plugin._backend
    return plugin._pool if backend is None else backend.pool


def interrupted_at(
    plugin: Plugin,
    codes: Collection[Any],
    k: int,
    *,
    general: bool = False,
    call: Callable[[], Any] | None = None,
    deadline_s: float = CALL_DEADLINE_S,
) -> bool:
    """Call ``add(1, 2)`` (or ``call()``) with KeyboardInterrupt raised when the ``k``-th
    C call made by a frame running one of ``codes`` returns; whether it was (``False``:
    the call made fewer than ``k``). ``general``: ``add`` through the general path
    (``Plugin._invoke``). The call runs on a thread of its own, which must end
    within ``deadline_s``."""
    seen = 0
    if call is None:
        ex = find_export(plugin, "add")
        assert ex is not None
        call = (
            (lambda: plugin._invoke(ex, (1, 2))) if general else (lambda: plugin.call("add", 1, 2))
        )

    def profile(frame: Any, event: str, _arg: Any) -> None:
        nonlocal seen
        if event == "c_return" and frame.f_code in codes:
            seen += 1
            if seen == k:
                raise KeyboardInterrupt

    outcome: list[BaseException | None] = []

    def run() -> None:
        sys.setprofile(profile)
        try:
            call()
        except BaseException as e:  # KeyboardInterrupt, or what the call raised
            outcome.append(e)
        else:
            outcome.append(None)
        finally:
            sys.setprofile(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        unwedge(plugin)
        raise AssertionError(f"a call interrupted at C call {k} did not end within {deadline_s} s")
    if isinstance(outcome[0], KeyboardInterrupt):
        return True
    if outcome[0] is not None:
        raise outcome[0]
    return False


def served_elsewhere(plugin: Plugin, timeout_s: float = 5.0) -> bool:
    """Whether a call of ``add(2, 2)`` from another thread is served within ``timeout_s``."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(plugin.call("add", 2, 2)), daemon=True)
    thread.start()
    thread.join(timeout_s)
    return out == [4]


def interrupt_every_c_call(
    plugin: Plugin,
    codes: Collection[Any],
    pool_size: int,
    timeout_s: float = 5.0,
    *,
    general: bool = False,
    fresh: bool = False,
) -> int:
    """Interrupt ``add(1, 2)`` at each C call made by a frame running one of ``codes``
    in turn (:func:`interrupted_at` with k = 1, 2, ...), asserting after each that
    every one of the ``pool_size`` slots still serves a call (first in, first out),
    that no instance is alive without a slot, and that no lock is left held; return
    how many C calls were interrupted. ``fresh``: each try starts with no idle
    instance (they are discarded), so that it makes one."""
    pool = pool_of(plugin)
    k = 1
    while True:
        if fresh:
            pool.drain(wait=False)
        if not interrupted_at(plugin, codes, k, general=general, deadline_s=timeout_s * 4):
            break
        try:
            for _ in range(pool_size):
                assert served_elsewhere(plugin, timeout_s), (
                    f"not served after an interrupt at C call {k}"
                )
            assert len(pool.live()) <= pool_size, f"an instance without a slot after C call {k}"
        except AssertionError:
            unwedge(plugin)
            raise
        check_held(plugin, pool_size, k)
        k += 1
    return k - 1


def interrupt_every_reset(plugin: Plugin, codes: Collection[Any], pool_size: int) -> int:
    """:func:`interrupt_every_c_call` for ``plugin.reset()`` with every instance idle
    (each made by a call first); how many C calls were interrupted."""
    k = 1
    while True:
        for _ in range(pool_size):  # first in, first out: each slot gets its instance
            assert served_elsewhere(plugin, 60.0)
        if not interrupted_at(plugin, codes, k, call=plugin.reset):
            return k - 1
        check_held(plugin, pool_size, k)
        k += 1


def check_held(plugin: Plugin, pool_size: int, k: int) -> None:
    """Assert that every slot is back and no lock is held after an interrupt at C call
    ``k`` (else :func:`unwedge`, then fail)."""
    pool = pool_of(plugin)
    try:
        assert slots(pool) == pool_size, f"a slot lost after C call {k}"
        assert not any(inst.lock.locked() for inst in pool.live()), f"a lock held after {k}"
    except AssertionError:
        unwedge(plugin)
        raise


def slots(pool: InstancePool[Any]) -> int:
    """The slots in the pool's queue (while no call runs), not counting the stale
    entries of instances discarded while they were queued (a slot came back for each)."""
    queue = pool._slots
    items = [queue.get_nowait() for _ in range(queue.qsize())]
    for item in items:
        queue.put(item)
    return sum(1 for item in items if item is None or item.alive)


def unwedge(plugin: Plugin) -> None:
    """After a failed check: release the locks an interrupt left held, so that the
    test's teardown (``close()`` waits for every instance's lock) ends instead of
    waiting for ever (``threading.Lock`` may be released by any thread)."""
    for inst in pool_of(plugin).live():
        if inst.lock.locked():
            inst.lock.release()

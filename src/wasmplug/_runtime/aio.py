"""Async host functions: a guest blocked in a host call while a coroutine runs.

A host function may be ``async def`` (or return a coroutine). The guest that
called it is inside a synchronous ``wasmtime_component_func_call`` on some
thread, so that thread waits while the coroutine runs on an event loop:

* under ``await plugin.acall(...)``, the call runs on a worker thread and the
  coroutine is scheduled on the **caller's** loop (the one ``acall`` was awaited
  on), so it can use that loop's connections, locks and context;
* under a synchronous ``plugin.call(...)``, it runs on the **host's own** loop, a
  daemon thread :class:`HostLoop` starts on first use and stops in
  ``PluginHost.close()``.

Every wait has a deadline: the rest of the call's ``Limits.timeout_ms`` budget
(read from the epoch ticker, which keeps counting while a call is in a host
function), checked in slices of :data:`POLL_S`. When it runs out, the coroutine
is cancelled and the call fails with :class:`~wasmplug.PluginTimeout`.
Cancelling the ``acall`` task cancels the coroutine it is waiting for (the
guest's call then fails and its instance is discarded), makes any later async
host function of that call fail at once, and ends a guest running its own code
at its next epoch-deadline slice (``deadline.py`` checks ``AsyncCall.cancelled``).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from wasmplug._bridge import callctx as _callctx
from wasmplug._errors import PluginTimeout

if TYPE_CHECKING:
    import asyncio

# asyncio is imported where it is used: a worker process of the process tier
# imports this module (through Plugin) but never runs a coroutine, and asyncio
# costs it ~8 MB of memory and ~0.5 s of start-up.

__all__ = ["POLL_S", "AsyncCall", "HostLoop", "run_as", "run_host_coroutine"]

POLL_S = 0.05
"""Longest single wait for a host coroutine before deadlines and cancellation are rechecked (s)."""

LOOP_START_TIMEOUT_S = 5.0
"""Longest wait for the host's event loop thread to start (s)."""

LOOP_STOP_TIMEOUT_S = 1.0
"""Longest wait for the host's event loop thread to stop in ``close()`` (s)."""


class AsyncCall:
    """One ``acall`` in flight: the caller's loop and whether the caller gave up.

    Set as the worker thread's current async call (``callctx``) while the call runs.
    """

    __slots__ = ("_lock", "cancelled", "loop", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.cancelled = False
        self.pending: concurrent.futures.Future[Any] | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """The awaiting task was cancelled: cancel the host coroutine being awaited, if any."""
        with self._lock:
            self.cancelled = True
            pending = self.pending
        if pending is not None:
            pending.cancel()


def run_as(call: AsyncCall, job: Callable[[], Any]) -> Any:
    """Run ``job`` with ``call`` as this thread's current ``acall``: the call thread of a
    plugin that can block in WASI runs the guest for the ``acall`` worker that waits."""
    prev = _callctx.set_async(call)
    try:
        return job()
    finally:
        _callctx.set_async(prev)


class HostLoop:
    """The host's own event loop, on a daemon thread started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def get(self) -> asyncio.AbstractEventLoop:
        """The running loop (started now if needed).

        Raises:
            RuntimeError: the host is closed, or the loop did not start in time.
        """
        import asyncio

        with self._lock:
            if self._closed:
                raise RuntimeError("the PluginHost is closed")
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                try:
                    loop.run_forever()
                finally:
                    loop.close()

            thread = threading.Thread(target=run, name="wasmplug-async", daemon=True)
            thread.start()
            if not started.wait(LOOP_START_TIMEOUT_S):
                raise RuntimeError("the host's event loop did not start")
            self._loop, self._thread = loop, thread
            return loop

    def close(self) -> None:
        """Cancel the host coroutines still running, then stop the loop (idempotent).

        Calls waiting for them fail at once (the coroutine raises ``CancelledError``),
        so closing the host never waits for a coroutine, even in an untimed plugin.
        """
        import asyncio

        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=LOOP_STOP_TIMEOUT_S)

        if thread is not threading.current_thread():
            done = asyncio.run_coroutine_threadsafe(cancel_all(), loop)
            concurrent.futures.wait((done,), LOOP_STOP_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(LOOP_STOP_TIMEOUT_S)


def _remaining_s(inst: Any) -> float | None:
    """Seconds left of the running call's budget, or ``None`` for an untimed plugin."""
    plugin = inst.plugin
    if plugin.limits.timeout_ms is None:
        return None
    end_s = getattr(inst, "deadline_s", None)  # a process-tier call (process/backend.py)
    if end_s is not None:
        left_s: float = end_s - time.monotonic()
        return left_s
    ticker = plugin._ticker
    end = getattr(inst, "deadline_at", None)  # absolute end in ticks, where recorded
    if end is None:
        end = inst.deadline_epoch + plugin._deadline_ticks - 1
    left: float = (end - ticker.epoch) * ticker.tick_ms / 1000.0
    return left


def run_host_coroutine(coro: Coroutine[Any, Any, Any], inst: Any, qualname: str) -> Any:
    """Run a host function's coroutine for the guest call ``inst`` is running; return its value.

    Raises:
        PluginTimeout: the call's time budget ran out first (the coroutine is cancelled).
        asyncio.CancelledError: the ``acall`` task was cancelled.
        RuntimeError: no loop can run it (the host is closed, or the loop that
            must run it is the one blocked in this call).
        BaseException: whatever the coroutine raised.
    """
    import asyncio

    call: AsyncCall | None = _callctx.current_async()
    if call is not None and call.cancelled:
        coro.close()
        raise asyncio.CancelledError
    if call is not None and not call.loop.is_closed():
        loop = call.loop
    else:
        loop = inst.plugin._services.host_loop.get()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError(
            f"async host function {qualname} must run on the event loop that is blocked "
            "in this call; use `await plugin.acall(...)` instead of `plugin.call(...)`"
        )
    fut = asyncio.run_coroutine_threadsafe(coro, loop)
    if call is not None:
        with call._lock:
            call.pending = fut
            cancelled = call.cancelled
        if cancelled:
            fut.cancel()
    try:
        while True:
            left = _remaining_s(inst)
            if left is not None and left <= 0:
                fut.cancel()
                raise PluginTimeout(
                    f"async host function {qualname} did not finish within the call's "
                    f"time limit ({inst.plugin.limits.timeout_ms:g} ms)"
                )
            concurrent.futures.wait((fut,), POLL_S if left is None else min(POLL_S, left))
            if fut.done():
                try:
                    return fut.result()
                except concurrent.futures.CancelledError:
                    if call is not None and call.cancelled:
                        raise asyncio.CancelledError from None
                    raise RuntimeError(
                        f"async host function {qualname} was cancelled (the host was closed)"
                    ) from None
            if not loop.is_running():  # the caller's loop ended, or the host closed
                fut.cancel()
                raise RuntimeError(f"the event loop running async host function {qualname} stopped")
    finally:
        if call is not None:
            with call._lock:
                call.pending = None


_callctx.run_coroutine = run_host_coroutine

"""What a host shares with every plugin it loads: engine, epoch ticker, threads, event loop.

A :class:`HostServices` is made by ``PluginHost`` (and by a process-tier worker, for its
one plugin) and handed to each ``Plugin``, so that a plugin and its instances depend on
these services, not on the host that owns them.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

from wasmplug._bridge.callctx import current_plugin
from wasmplug._bridge.memcreator import MemoryAccounting
from wasmplug._sandbox.limits import Limits

from .aio import HostLoop
from .engine import EpochTicker, make_engine

__all__ = ["EXECUTOR_PREFIX", "HostServices", "before_exit_joins_threads"]

T = TypeVar("T")

EXECUTOR_PREFIX = "wasmplug-worker"
"""The name prefix of the executor's threads (``Plugin.acall``, parallel compiles)."""


class HostServices:
    """The engine and the threads one host's plugins share.

    Args:
        consume_fuel: Enable fuel metering engine-wide.
        tick_ms: The epoch tick, in ms.
        max_workers: Threads for ``Plugin.acall`` and parallel compiles (default:
            ``min(8, os.cpu_count() + 2)``); they start on first use.
        instance_slots: Use wasmtime's pooling allocator with this many slots
            (``engine.make_engine``); ``None``: allocate on demand.
        limits: The host's limits, which size each slot.
        memory_accounting: Count each plugin's linear memory (a
            :class:`~wasmplug._bridge.memcreator.MemoryAccounting` on the engine).

    Raises:
        ValueError: ``memory_accounting`` with ``instance_slots``.
        OSError: ``memory_accounting`` on a platform without ``mmap``.

    Attributes:
        engine: The wasmtime Engine every plugin of the host is compiled for.
        engine_settings: Its settings as a stable string (part of the compile-cache key).
        consume_fuel: Whether fuel metering is on.
        instance_slots: The pooling allocator's slots, or ``None``.
        memory_accounting: The engine's memory accounting, or ``None``.
        ticker: The epoch ticker that enforces ``Limits.timeout_ms``.
        executor: The worker threads.
        host_loop: The event loop async host functions run on under a synchronous call
            (started on first use).
    """

    def __init__(
        self,
        *,
        consume_fuel: bool,
        tick_ms: float,
        max_workers: int | None,
        instance_slots: int | None = None,
        limits: Limits | None = None,
        memory_accounting: bool = False,
    ) -> None:
        if memory_accounting and instance_slots is not None:
            raise ValueError(
                "memory_accounting cannot be combined with instance_slots: wasmtime's "
                "pooling allocator places memories in its own slots, which no memory "
                "creator sees"
            )
        accounting = MemoryAccounting(current_plugin) if memory_accounting else None
        self.engine, self.engine_settings = make_engine(
            consume_fuel=consume_fuel,
            instance_slots=instance_slots,
            limits=limits,
            memory_accounting=accounting,
        )
        self.memory_accounting = accounting
        self.consume_fuel = consume_fuel
        self.instance_slots = instance_slots
        self.ticker = EpochTicker(self.engine, tick_ms)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers or min(8, (os.cpu_count() or 1) + 2),
            thread_name_prefix=EXECUTOR_PREFIX,
        )
        self.host_loop = HostLoop()

    def close(self) -> None:
        """Stop the event loop, the ticker and the worker threads (idempotent).

        Queued executor jobs are cancelled; running ones are not waited for.
        """
        self.host_loop.close()
        self.ticker.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def before_exit_joins_threads(owner: T, hook: Callable[[T], None]) -> None:
    """Run ``hook(owner)`` at interpreter exit, if ``owner`` is still alive, before
    Python joins the non-daemon threads (the executor's too).

    Python joins them *before* it runs ``atexit`` handlers, so a thread waiting on
    something only ``close()`` would end hangs the exit; the hook runs first. It holds
    ``owner`` weakly.
    """
    ref = weakref.ref(owner)

    def run() -> None:
        alive = ref()
        if alive is not None:
            hook(alive)

    try:
        threading._register_atexit(run)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # pragma: no cover - already shutting down
        pass

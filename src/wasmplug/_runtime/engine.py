"""The shared wasmtime Engine and the epoch ticker thread that enforces timeouts."""

from __future__ import annotations

import contextlib
import functools
import threading
import time

from wasmtime import Config, Engine

from wasmplug._bridge import ffi as f
from wasmplug._bridge.callctx import running as _running
from wasmplug._bridge.memcreator import MemoryAccounting
from wasmplug._sandbox.limits import Limits

__all__ = [
    "REST_AFTER_S",
    "REST_POLL_S",
    "EpochTicker",
    "call_ticks",
    "deadline_ticks",
    "make_engine",
    "pooling_settings",
]

REST_AFTER_S = 1.0
"""How long an :class:`EpochTicker` polls without seeing a call before it rests. The
first call after a rest wakes it, and that costs the call tens of microseconds on a
VM (the woken thread takes the GIL as the call releases it to run the guest: an
in-process ``add`` made after a rest took 165-200 µs instead of 115-150): an
application that calls at least once a second never pays it."""
REST_POLL_S = 0.25
"""How long it rests at most between two looks."""

_GIB = 2**30
_set_epoch_deadline = f.set_epoch_deadline


def make_engine(
    *,
    consume_fuel: bool,
    instance_slots: int | None = None,
    limits: Limits | None = None,
    memory_accounting: MemoryAccounting | None = None,
) -> tuple[Engine, str]:
    """Create the Engine every plugin of one host shares.

    Args:
        consume_fuel: Enable fuel metering.
        instance_slots: Use wasmtime's pooling allocator with this many slots
            (see :func:`pooling_settings`); ``None``: allocate on demand.
        limits: The host's limits, which size each slot (default ``Limits()``).
        memory_accounting: Allocate every linear memory through it (on demand
            only; copy-on-write memory images off).

    Returns:
        ``(engine, settings)`` where ``settings`` is a stable string of the
        options that affect compiled code; it is part of the compile-cache key.
        The allocator is not one of them: it places memories and tables, it
        does not change the code that uses them.
    """
    config = Config()
    config.wasm_component_model = True
    config.epoch_interruption = True
    config.consume_fuel = consume_fuel
    config.cranelift_opt_level = "speed"
    if instance_slots is not None:
        f.use_pooling_allocator(
            config, pooling_settings(instance_slots, limits if limits is not None else Limits())
        )
    settings = f"component-model,epoch,fuel={int(consume_fuel)},opt=speed"
    if memory_accounting is not None:
        memory_accounting.install(config)
        settings += ",cow=0"  # checked when a compiled component is deserialized
    return Engine(config), settings


def pooling_settings(slots: int, limits: Limits) -> dict[str, int]:
    """The pooling allocator's settings for ``slots`` live instances, each as large
    as ``limits`` allows (the host's ceiling: no plugin's limits exceed it).

    A limit that is ``None`` (unbounded) gets a fixed size per slot: one memory
    of 4 GiB, 64 core instances, 16 tables of 100,000 elements (``Limits()``'s
    defaults, except the memory). The first 64 KiB of every linear memory stay
    resident when a slot is freed (zeroed in place rather than handed back to
    the kernel), so a fresh instance of a small plugin touches no new pages.

    Raises:
        ValueError: ``slots`` is below 1.
    """
    if slots < 1:
        raise ValueError(f"instance_slots must be >= 1, got {slots}")
    memories = limits.memories if limits.memories is not None else 1
    tables = limits.tables if limits.tables is not None else 16
    cores = limits.instances if limits.instances is not None else 64
    per_memory = limits.per_memory_bytes
    return {
        "total_component_instances": slots,
        "total_core_instances": slots * cores,
        "total_memories": slots * memories,
        "total_tables": slots * tables,
        "max_core_instances_per_component": cores,
        "max_memories_per_component": memories,
        "max_tables_per_component": tables,
        "max_memories_per_module": memories,
        "max_tables_per_module": tables,
        "max_memory_size": min(per_memory, 4 * _GIB) if per_memory is not None else 4 * _GIB,
        "table_elements": limits.table_elements if limits.table_elements is not None else 100_000,
        "linear_memory_keep_resident": 65536,
    }


def deadline_ticks(timeout_ms: float, tick_ms: float) -> int:
    """Epoch ticks to pass to ``set_epoch_deadline`` for ``timeout_ms`` with a tick of
    ``tick_ms``: the timeout rounded up to whole ticks, plus one (the tick in progress
    when the deadline is set may be almost over)."""
    return int(-(-timeout_ms // tick_ms)) + 1


@functools.lru_cache(maxsize=256)
def call_ticks(timeout_ms: float | None, tick_ms: float, slice_ms: float) -> tuple[int, int]:
    """``(deadline, slice)`` in epoch ticks for a call with a budget of ``timeout_ms``
    (``None``: unbounded, ``2**62`` ticks) checked every ``slice_ms``: one tuple (and
    two int objects) for every plugin with the same budget."""
    deadline = deadline_ticks(timeout_ms, tick_ms) if timeout_ms else 2**62
    return deadline, min(deadline, deadline_ticks(slice_ms, tick_ms))


def _ticks_for(inst: object, ticker: EpochTicker) -> bool:
    """Whether ``inst``, an entry of ``callctx.running``, runs Wasm on ``ticker``'s clock.

    ``callctx.running`` holds every host's calls: an in-process instance counts for its
    own host's ticker (``inst.ticker``). A process-tier call frame (``ticker = None``)
    only waits for its worker, whose own ticker and the application's kill deadline
    time it. An entry of any other kind counts, to err on the side of ticking.
    """
    return getattr(inst, "ticker", ticker) is ticker


class EpochTicker:
    """A daemon thread that advances the engine's epoch every ``tick_ms`` while calls run.

    Each timed call sets its store's deadline to ``ceil(timeout_ms / tick_ms) + 1``
    ticks and makes its instance current on its thread
    (:data:`wasmplug._bridge.callctx.running`), which is how this thread sees that a
    call is in flight: the call path's one store is both. A call path that does not
    make its instance current adds it to :attr:`in_flight` instead (a set: ``add``
    and ``discard`` are atomic under the GIL, so the call path takes no lock).
    ctypes releases the GIL while Wasm runs, so this thread keeps ticking
    while a guest spins in a loop, and wasmtime interrupts the guest at its
    next epoch check past the deadline.

    The thread ticks only while it sees the same call in flight at two looks in a
    row (a call is its thread's outermost instance and that instance's call count).
    Otherwise it polls every ``idle_poll_ms``: while nothing is in flight, and while
    calls are short and back to back, when each look finds only calls that began
    since the last one. Time counts from the look that first sees a call, never from
    before it, so a deadline never fires early; it can fire up to ``idle_poll_ms``
    plus a tick late. Each wake-up costs CPU and takes the GIL from the calling
    threads (tens of microseconds on a VM), so polling while calls are short keeps
    their cost off every call: it was about 0.3 µs of CPU per call of a 5 µs export
    when this thread ticked through them.

    The thread sleeps by waiting, with a timeout, for a lock that :meth:`close`
    releases: one C call per wake-up (``threading.Event.wait`` builds a condition
    waiter each time), and epochs are advanced without releasing the GIL
    (``ffi.increment_epoch``).

    After :data:`REST_AFTER_S` without a call the thread rests: it advances the epoch
    once, so that every store's next call re-arms its deadline through :meth:`arm`,
    which wakes it; then it waits for that, or :data:`REST_POLL_S` at most, instead of
    polling every ``idle_poll_ms``: an idle host (or worker process) wakes 4 times a
    second rather than 100 (the first call after a rest pays for waking it, see
    :data:`REST_AFTER_S`). A call that read the epoch just before it moved (the
    thread gives such a call one poll interval to show up before it rests) would be
    seen within :data:`REST_POLL_S`.
    """

    def __init__(self, engine: Engine, tick_ms: float, idle_poll_ms: float = 10.0) -> None:
        self.engine = engine
        self.tick_ms = tick_ms
        self.in_flight: set[object] = set()
        self.epoch = 0  # mirrors the engine's epoch; read without a lock (see Plugin._run)
        self.resting = False  # set by the thread as it rests, cleared by wake(); read by arm()
        self._tick_s = tick_ms / 1000.0
        self._idle_s = max(idle_poll_ms, tick_ms) / 1000.0
        self._stop = threading.Lock()  # held until close() releases it
        self._stop.acquire()
        self._wake = threading.Lock()  # held; released by wake()
        self._wake.acquire()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def start(self) -> None:
        """Start the thread, if it has not started (idempotent, thread-safe).

        A host's first in-process plugin starts it: a host whose plugins all run in
        worker processes never needs it (each worker has its own)."""
        if self._thread is None:
            with self._starting:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, name="wasmplug-epoch", daemon=True)
                    thread.start()
                    self._thread = thread

    def deadline_ticks(self, timeout_ms: float) -> int:
        """Number of ticks to pass to ``set_epoch_deadline`` for ``timeout_ms``."""
        return deadline_ticks(timeout_ms, self.tick_ms)

    def arm(self, context: object, ticks: int) -> None:
        """Set a store's epoch deadline ``ticks`` ahead (``context``: its raw context),
        before a call or an instantiation; wakes the thread if it rests.

        The call paths arm a store only when the epoch moved since they last did
        (the deadline is absolute), and the thread moves it as it starts to rest: so
        the first call on each store after a rest wakes it, and back-to-back calls
        make no Python call here."""
        _set_epoch_deadline(context, ticks)
        if self.resting:
            self.wake()

    def wake(self) -> None:
        """End the thread's rest (if it rests; from any thread)."""
        self.resting = False
        with contextlib.suppress(RuntimeError):  # released already: woken already
            self._wake.release()

    def _run(self) -> None:
        stopped, monotonic = self._stop.acquire, time.monotonic
        increment, engine = f.increment_epoch, f.engine_address(self.engine)
        tick_s, idle_s, rest = self._tick_s, self._idle_s, self._wake.acquire
        seen: set[tuple[object, object]] = set()  # the calls at the last look, while ticking
        base, ticks = 0.0, 0
        quiet_until = monotonic() + REST_AFTER_S
        while True:
            calls = self._calls()
            if not calls:
                seen, wait = set(), idle_s
                if self.resting:  # wait for a wake-up (arm(), close()), or look again
                    if not rest(timeout=REST_POLL_S):
                        continue
                    # Woken: poll for a while, from one poll interval on (a look now
                    # would take the GIL from the call that woke this thread, which is
                    # about to run: tens of microseconds).
                    quiet_until = monotonic() + REST_AFTER_S
                elif monotonic() >= quiet_until:
                    # Start resting: move the epoch, so that every store's next call
                    # re-arms its deadline and so wakes this thread; one more poll
                    # first, for a call that read the epoch before it moved.
                    self.resting = True
                    increment(engine)
                    self.epoch += 1
            else:
                self.resting = False  # (a call that read the epoch before it moved)
                quiet_until = monotonic() + REST_AFTER_S
                if not seen:  # a call nobody has timed: its time counts from now
                    seen, wait = calls, tick_s
                    base, ticks = monotonic(), 0
                elif calls.isdisjoint(seen):  # every call timed so far has ended
                    seen, wait = set(), idle_s
                else:
                    # Catch up on wall-clock time: a sleep of one tick overshoots by
                    # timer slack, and counting sleeps would stretch every deadline.
                    due = int((monotonic() - base) / tick_s)
                    while ticks < due:
                        increment(engine)
                        ticks += 1
                        self.epoch += 1
                    seen, wait = calls, tick_s
            if stopped(timeout=wait):
                return

    def _calls(self) -> set[tuple[object, object]]:
        """The calls in flight on this ticker's engine, each as ``(instance, calls)`` of
        the outermost instance of its thread's call chain: the same pair at two looks
        is one call still running. A thread counts while any instance of its chain
        runs on this engine: a call whose host function calls a plugin of another
        host is still running here."""
        keys = set()
        # Copied first, each in one C-level step under the GIL: other threads add and
        # remove entries meanwhile.
        for inst in (*self.in_flight, *tuple(_running.values())):
            ours = _ticks_for(inst, self)
            root = inst
            while (up := getattr(root, "caller", None)) is not None:
                root = up
                ours = ours or _ticks_for(root, self)
            if ours:
                keys.add((root, getattr(root, "calls", None)))
        return keys

    def running(self) -> list[object]:
        """The instances whose calls run now on this ticker's engine: the ones this
        thread ticks for."""
        return [*self.in_flight, *(i for i in tuple(_running.values()) if _ticks_for(i, self))]

    def close(self) -> None:
        """Stop the thread (idempotent)."""
        with contextlib.suppress(RuntimeError):  # already released: closed before
            self._stop.release()
        self.wake()
        with self._starting:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

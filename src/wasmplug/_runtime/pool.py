"""The instance pool: at most ``size`` instances of one plugin, checked out one call at a time.

The rules, all of them here:

- **Slots.** The pool is a queue of ``size`` slots. A slot holds an idle
  instance or ``None`` (room for one more, created on demand). A call takes a
  slot (blocking while all instances are busy), creates an instance if the slot
  was empty, locks it, and gives the slot back when the call ends. Slots are
  first in, first out: sequential calls take turns over all ``size`` instances
  (each created on its first turn).
- **First instance.** :meth:`InstancePool.prime` creates one instance at load
  time, so start-up failures surface from ``PluginHost.load``, not the first call.
- **Discard.** A faulty instance is closed at once and its slot comes back
  empty; an instance is never reused after a fault (wasmtime poisons a
  component instance after a trap). A stale copy of a discarded instance that
  is still queued is skipped by :meth:`checkout`.
- **Create failure.** If creating an instance raises, its slot comes back
  empty, so a failed instantiation never shrinks the pool; a ``KeyboardInterrupt``
  while waiting for an instance's lock gives the slot back too.
- **Abandon.** An instance stuck in a blocking host call on its own call thread
  (callthread.py) is forgotten without being closed: the thread still uses it.
  Its slot comes back empty.
- **Drain and close.** :meth:`drain` discards every idle instance (and, with
  ``wait=True``, waits for busy ones); :meth:`close` marks the pool closed and
  drains it. An instance checked in after close is discarded, so a call that was
  running when ``close()`` came (from another thread, or from one of its own
  host functions) frees its instance when it returns.

The pool knows nothing about Wasm: it needs an item with a ``lock``, an
``alive`` flag, a ``calls`` counter and ``close()`` (:class:`Pooled`), and a
factory. That keeps it testable alone (tests/runtime/test_pool.py).

A call takes a slot and its instance's lock: one ``SimpleQueue`` get and put,
and one lock acquire and release; nothing is allocated. :meth:`run` does it for
the general call paths, and generated call functions (fastcall.py) inline it with
:meth:`InstancePool.hot_path`. Both hold the slot and the lock with ``with``
statements, so that Ctrl-C cannot lose a slot or leave a lock held (see
**Ctrl-C** below). :meth:`checkout` and :meth:`checkin` are the same steps for a
caller that holds an instance across statements (tests, and threads other than
the main one, where no signal handler runs).

**Ctrl-C.** Python runs a signal handler (``KeyboardInterrupt``) right after a
call returns and on loops, anywhere in Python code, but not between a ``with``
statement's ``__enter__`` and its body, nor in an assignment, a subscript or an
operator. So every step that takes something is a ``with`` statement whose body
gives it back (:meth:`run`, :meth:`hot_path`, resource-handle calls holding
``inst.lock``), and the steps that record an instance are subscripts and
operators: :meth:`new` records the instance it makes in the caller's ``box`` in
the same breath as in the live list, so that an interrupt as it returns leaves
it there for the caller's ``finally`` to give back with the slot.
:meth:`discard` frees the slot in a ``finally``. One window is left, below the
pool: an interrupt right as the factory returns a new instance loses it before
the pool has seen it (nothing to give back; it is freed as garbage, and a
worker process exits at the EOF on its channel).

A pool of one (the default ``pool_size``) has a shorter path: its instance's lock
alone is the checkout (:attr:`InstancePool.solo`). Its one slot holds that
instance, idle or not, so the lock is what a call would wait for after taking
the slot anyway, and the other lock holders (resource calls, :meth:`drain`) see
such a call as they see any other. Held by a ``with`` statement, the lock cannot
be left held by a ``KeyboardInterrupt``: Python runs signal handlers after calls
and on loops, not between a ``with`` statement's ``__enter__`` and its body.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from typing import Any, Generic, Protocol, TypeVar

from wasmplug._errors import PluginClosedError

__all__ = ["InstancePool", "Pooled", "taking"]


class Pooled(Protocol):
    """What the pool needs from an instance."""

    @property
    def lock(self) -> threading.Lock:
        """Held by the thread using the instance."""
        ...

    @property
    def alive(self) -> bool:
        """False once closed."""
        ...

    @property
    def calls(self) -> int:
        """Calls completed on it (kept in the pool's total when it is discarded)."""
        ...

    def close(self) -> None:
        """Release it (idempotent)."""
        ...


P = TypeVar("P", bound=Pooled)
R = TypeVar("R")


class _Taking(functools.partial):  # type: ignore[type-arg]
    """``lock.acquire(blocking)`` as a ``with`` statement's ``__enter__``: the partial's
    own C ``__call__`` (a slot wrapper, which binds), so that no Python frame runs
    between taking the lock and the body. One class for every lock: a class made
    per call cost about 10 µs."""

    __slots__ = ()
    __enter__ = functools.partial.__call__
    __exit__ = "".format


def taking(lock: threading.Lock, blocking: bool) -> AbstractContextManager[bool]:
    """``with taking(lock, blocking) as got:``: ``lock.acquire(blocking)`` as a ``with``
    statement's ``__enter__`` (a C call: no point where Ctrl-C could land between
    taking the lock and the body); the body releases it in a ``finally`` if ``got``.
    For a lock that may be busy and must not be waited for (``with lock:`` waits)."""
    return _Taking(lock.acquire, blocking)  # type: ignore[return-value]


class _Slots(queue.SimpleQueue):  # type: ignore[type-arg]
    """A pool's slot queue that is also its slot taker: ``with slots as item:`` takes
    a slot, waiting while all are busy. Both special methods are C functions that do
    not bind to a Python frame: ``__enter__`` is the queue's own ``get`` and
    ``__exit__`` a call that ignores its arguments and returns ``""`` (false: an
    exception is not swallowed). One class for every pool: a class made per pool
    cost each loaded plugin 1.7 KiB."""

    __slots__ = ()
    __enter__ = queue.SimpleQueue.get
    __exit__ = "".format


_LIVE_LOCK = threading.Lock()
"""Guards the live-instance list of every pool: each hold is a few list operations
(no instance is created or closed under it), so one lock serves all the pools of a
process instead of one per loaded plugin."""


class InstancePool(Generic[P]):
    """At most ``size`` instances made by ``create``, lent to one caller at a time.

    Args:
        size: The most instances alive at once (>= 1).
        create: Makes a new instance; may raise (the slot is then given back).
    """

    __slots__ = (
        "_create",
        "_live",
        "_live_lock",
        "_retired_calls",
        "_slots",
        "closed",
        "size",
        "solo",
    )

    def __init__(self, size: int, create: Callable[[], P]) -> None:
        if size < 1:
            raise ValueError(f"pool_size must be >= 1, got {size}")
        self.size = size
        self.closed = False
        self._create = create
        # Also takes a slot in a with statement (see hot_path).
        self._slots: queue.SimpleQueue[P | None] = _Slots()
        for _ in range(size):
            self._slots.put(None)
        # The instances alive now: a list, since a pool holds a few (and a plugin that
        # is loaded and idle holds one: a set would cost 216 bytes, a list 88).
        self._live: list[P] = []
        self._live_lock = _LIVE_LOCK
        self._retired_calls = 0
        self.solo: P | None = None
        """A pool of one: its instance while it is alive (else ``None``). A caller
        may use it without taking its slot, which stays queued holding it: ``with
        solo.lock:`` (waiting, as :meth:`checkout` would after taking the slot;
        ``None``: :meth:`ready_solo` first); if it is still ``alive`` it is the
        caller's until the ``with`` ends (on a :attr:`closed` pool, :meth:`discard`
        it before); if not, it was discarded while the caller waited: use
        :meth:`checkout`. Ctrl-C cannot leave the lock held."""

    def prime(self) -> P:
        """Create the first instance now, idle at the head of the queue, so the
        first call uses it. Call it before the pool is shared.

        Raises:
            Whatever ``create`` raises (the slot is given back first).
        """
        slots = self._slots
        slots.get_nowait()
        try:
            inst = self._new()
        except BaseException:
            slots.put(None)
            raise
        rest = [slots.get_nowait() for _ in range(slots.qsize())]
        slots.put(inst)
        for item in rest:
            slots.put(item)
        return inst

    def checkout(self) -> P:
        """Take an instance, creating one if a slot is empty; blocks while all are busy.

        Returns:
            An alive instance whose ``lock`` the caller now holds; give it back
            with :meth:`checkin`.

        Raises:
            PluginClosedError: the pool was closed (before or while waiting).
            Whatever ``create`` raises.
        """
        slots = self._slots
        while True:
            item = slots.get()
            try:
                if item is None:
                    item = self._new()
                item.lock.acquire()
            except BaseException:
                slots.put(item)  # the empty slot, or the instance, unlocked
                raise
            if item.alive:
                return item
            item.lock.release()  # discarded while queued; its slot came back as None

    def run(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(inst, *args)`` with an instance taken for it (made if its slot is
        empty; waiting while all are busy) and its lock held, given back when ``fn``
        ends, however it ends: Ctrl-C cannot lose the slot or leave the lock held
        (see **Ctrl-C** in the module's docstring). On a closed pool the instance is
        discarded after ``fn``.

        Raises:
            PluginClosedError: the pool was closed (before or while waiting).
            Whatever ``create`` raises, and whatever ``fn`` raises.
        """
        give = self._slots.put
        while True:
            with self._slots as item:  # type: ignore[attr-defined]
                try:
                    if item is None:
                        box: list[P | None] = [None]  # bound whenever item is None below
                        item = self._new(box)
                    with item.lock:
                        if item.alive:
                            try:
                                return fn(item, *args)
                            finally:
                                if self.closed and item.alive:
                                    self._discard(item)
                finally:
                    if item is None:
                        item = box[0]  # made, but interrupted on its way here
                    if item is None or item.alive:
                        give(item)
            # it was discarded while queued: the next slot

    def hot_path(self) -> tuple[AbstractContextManager[P | None], Callable[[P | None], None]]:
        """``(slot, give)`` for a caller that inlines :meth:`checkout` and :meth:`checkin`
        so that Ctrl-C cannot lose a slot or leave a lock held. Used as follows,
        nothing else::

            with slot as item:            # takes a slot, waiting while all are busy
                try:
                    if item is None:
                        box = [None]
                        item = pool.new(box)  # (PluginError: the slot goes back)
                    with item.lock:
                        if item.alive:
                            ...            # the call; on a closed pool, discard(item)
                finally:
                    if item is None:
                        item = box[0]      # made, but interrupted on its way here
                    if item is None or item.alive:
                        give(item)
            # here: it was discarded while queued; take another slot

        ``slot``'s ``__enter__`` is the queue's own ``get`` and its ``__exit__`` a C
        no-op: a ``with`` statement calls ``__enter__`` without checking for signals
        after it, so a ``KeyboardInterrupt`` lands only once the taken slot is in
        ``item`` and inside the ``try`` that gives it back (``item = take()`` can
        lose it: Python checks after every call). The instance's lock is held by a
        ``with`` statement for the same reason. An interrupt as :meth:`new` returns
        leaves the new instance in ``box``, where the ``finally`` finds it.
        """
        return self._slots, self._slots.put  # type: ignore[return-value]  # _Slots

    def new(self, box: list[P | None]) -> P:
        """A new instance for an empty slot the caller took (:meth:`hot_path`); its
        lock is not held. It is also put in ``box[0]`` as it becomes live, with no
        point in between where Ctrl-C could land.

        Raises:
            PluginClosedError: the pool is closed.
            Whatever ``create`` raises.
        """
        return self._new(box)

    def checkin(self, inst: P) -> None:
        """Give back an instance taken with :meth:`checkout` (the caller holds its lock).

        A closed pool discards it; a discarded one already gave its slot back.
        """
        if self.closed and inst.alive:
            self._discard(inst)
        inst.lock.release()
        if inst.alive:
            self._slots.put(inst)

    def ready_solo(self) -> P:
        """A pool of one: :attr:`solo`, made now if there is none (a fault discarded
        it, or none was made yet), idle in its slot (taken and given back by
        :meth:`run`). The caller then takes it by its lock, as :attr:`solo` says;
        another caller may take it first.

        Raises as :meth:`run` does.
        """
        inst: P = self.run(_itself)
        return inst

    def discard(self, inst: P) -> None:
        """Close an instance whose lock the caller holds, and free its slot (idempotent)."""
        if inst.alive:
            self._discard(inst)

    def abandon(self, inst: P) -> None:
        """Forget an instance whose lock the caller holds without closing it (idempotent
        per instance): it is stuck in a host call on another thread, which still uses
        it and frees it if that call ever returns. Its slot comes back empty."""
        with self._live_lock:
            if inst not in self._live:
                return
            self._live.remove(inst)
            self._retired_calls += inst.calls
            if self.solo is inst:
                self.solo = None
        self._slots.put(None)

    def _discard(self, inst: P) -> None:
        try:
            with self._live_lock:
                if inst in self._live:
                    self._live.remove(inst)
                self._retired_calls += inst.calls
                if self.solo is inst:
                    self.solo = None
        finally:  # even after Ctrl-C: closed (not alive), and its slot back
            try:
                inst.close()
            finally:
                self._slots.put(None)

    def drain(self, *, wait: bool, skip: Collection[P] = ()) -> None:
        """Discard every idle instance; with ``wait``, wait for busy ones and discard
        them too. Instances in ``skip`` (the ones this thread is running) are
        never waited for: :meth:`checkin` discards them on a closed pool."""
        with self._live_lock:
            live = list(self._live)
        for inst in live:
            with taking(inst.lock, wait and inst not in skip) as got:
                if got:
                    try:
                        if inst.alive:
                            self._discard(inst)
                    finally:
                        inst.lock.release()

    def close(self, *, skip: Collection[P] = ()) -> None:
        """Refuse new instances, wait for running calls, and discard every instance."""
        self.closed = True
        self.drain(wait=True, skip=skip)

    def stats(self) -> tuple[int, int]:
        """``(live instances, calls completed on every instance, discarded ones too)``."""
        with self._live_lock:
            live = list(self._live)
            calls = self._retired_calls
        return len(live), calls + sum(i.calls for i in live)

    def live(self) -> list[P]:
        """The instances alive now (busy or idle)."""
        with self._live_lock:
            return list(self._live)

    def _new(self, box: list[P | None] | None = None) -> P:
        if self.closed:
            raise PluginClosedError("plugin is closed")
        inst = self._create()
        with self._live_lock:
            closed = self.closed  # closed while it was being created?
            if closed:
                self._retired_calls += inst.calls
            else:
                # No call from here to the end of the block: Ctrl-C cannot land
                # between the instance becoming live and its being in the box.
                self._live += [inst]
                if box is not None:
                    box[0] = inst
                if self.size == 1:
                    self.solo = inst
        if closed:
            inst.close()  # not under the lock, which every pool shares
            raise PluginClosedError("plugin is closed")
        return inst


def _itself(inst: P) -> P:
    return inst

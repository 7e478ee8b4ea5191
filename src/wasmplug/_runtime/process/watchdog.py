"""Call deadlines: one thread that kills each worker at its kill time.

A wait for a worker's reply blocks in ``read`` with no timeout (see :mod:`.wire`):
what ends it at the call's deadline is this watchdog killing the worker, which
closes its end of the channel and ends the read with EOF. A call arms
:data:`WATCHDOG` with the worker and its kill time and disarms it when it ends;
the call then sees EOF on a worker marked ``overdue`` and reports
:class:`~wasmplug.PluginTimeout`.

The thread sleeps until the earliest kill time armed (for ever while none is), and
an :meth:`~Watchdog.arm` earlier than that wakes it. Back-to-back calls arm later
and later kill times, so they arm with a dict store and one comparison: no lock,
no wake-up per call, and an idle application's watchdog never wakes. It kills
within a scheduling delay of the kill time, whether it was asleep or not.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spawn import WorkerProcess

__all__ = ["WATCHDOG", "Watchdog"]

_NEVER = float("inf")


class Watchdog:
    """Kills the workers whose calls are past their kill time.

    Attributes:
        armed: Kill time (``time.monotonic()``) by worker. A call arms with
            :meth:`arm`, or inline (``fastpath``) with ``if not started: start()``,
            one store here and ``if kill_at < until: wake()``; it disarms with
            ``armed.pop(worker, None)``.
        until: When the thread looks next (``inf``: only when woken). It is ``inf``
            while the thread scans ``armed``, so that an arm racing with the scan
            wakes it again, and the earliest kill time it saw once it sleeps.
        started: Whether this process's thread runs (a fork's child starts its own:
            ``os.register_at_fork`` resets both, instead of a ``getpid`` per call).
    """

    def __init__(self) -> None:
        self.armed: dict[WorkerProcess, float] = {}
        self.until = _NEVER
        self.started = False
        self._bell = threading.Event()
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forked)

    def arm(self, worker: WorkerProcess, kill_at: float) -> None:
        """Kill ``worker`` once ``time.monotonic()`` passes ``kill_at``, unless disarmed."""
        if not self.started:
            self.start()
        self.armed[worker] = kill_at
        if kill_at < self.until:
            self._bell.set()

    def wake(self) -> None:
        """Make the thread look now (after an arm earlier than :attr:`until`)."""
        self._bell.set()

    def disarm(self, worker: WorkerProcess) -> None:
        self.armed.pop(worker, None)

    def start(self) -> None:
        """Start this process's thread, if not yet started."""
        with self._lock:
            if not self.started:
                thread = threading.Thread(target=self._run, name="wasmplug-watchdog", daemon=True)
                thread.start()
                self.started = True

    def _forked(self) -> None:
        # The child has none of the parent's threads, and none of its calls.
        self.armed = {}
        self.until = _NEVER
        self.started = False
        self._bell = threading.Event()
        self._lock = threading.Lock()

    def _run(self) -> None:
        bell = self._bell
        while True:
            # An arm stores its kill time, then compares it with `until`: one that
            # stored after the snapshot below reads `until` after it was set to inf
            # here (so it rings, after this clear), or the soonest time seen.
            bell.clear()
            self.until = _NEVER
            now = time.monotonic()
            soonest = _NEVER
            armed = self.armed
            for worker, kill_at in list(armed.items()):  # one C call: no tearing
                if kill_at <= now:
                    # Not if its call ended and the next one armed it meanwhile.
                    if armed.get(worker) == kill_at:
                        armed.pop(worker, None)
                        worker.overdue = True
                        worker.kill()
                elif kill_at < soonest:
                    soonest = kill_at
            self.until = soonest
            if soonest == _NEVER:
                bell.wait()
            else:
                bell.wait(soonest - time.monotonic())


WATCHDOG = Watchdog()
"""The process's watchdog (its thread starts on the first call that arms it)."""

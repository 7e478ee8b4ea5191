"""A backstop for call deadlines: one thread that kills workers past theirs.

A call's waits on its worker end at the deadline in the kernel (``SO_RCVTIMEO``,
see :mod:`.wire`). But a signal whose Python handler returns makes CPython restart
the interrupted system call (PEP 475) with the whole armed time again, so an
application timer firing faster than the deadline would postpone it for ever.
:data:`WATCHDOG` closes that gap: a call arms it with the worker and its kill time
(a dict store: no lock, no wake-up per call), and one daemon thread per process
looks every :data:`PERIOD_S` (every :data:`IDLE_PERIOD_S` while nothing is armed)
and ``SIGKILL``\\ s any worker whose time has passed, marking it ``overdue``; the
call then sees the channel close and reports :class:`~wasmplug.PluginTimeout`.
So a call past its deadline ends within ``IDLE_PERIOD_S + PERIOD_S`` of it even
then; in every other case the kernel's timeout ends the wait first.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spawn import WorkerProcess

__all__ = ["IDLE_PERIOD_S", "PERIOD_S", "WATCHDOG", "Watchdog"]

PERIOD_S = 0.025
"""How often the watchdog looks while some call is armed."""
IDLE_PERIOD_S = 0.25
"""How often it looks while none is (an idle application wakes it 4 times a second)."""


class Watchdog:
    """Kills the workers whose calls are past their kill time.

    Attributes:
        armed: Kill time (``time.monotonic()``) by worker. A call arms with
            :meth:`arm`, or inline (``fastpath``) with ``if not started: start()``
            and one store here; it disarms with ``armed.pop(worker, None)``.
        started: Whether this process's thread runs (a fork's child starts its own:
            ``os.register_at_fork`` resets both, instead of a ``getpid`` per call).
    """

    def __init__(self) -> None:
        self.armed: dict[WorkerProcess, float] = {}
        self.started = False
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forked)

    def arm(self, worker: WorkerProcess, kill_at: float) -> None:
        """Kill ``worker`` once ``time.monotonic()`` passes ``kill_at``, unless disarmed."""
        if not self.started:
            self.start()
        self.armed[worker] = kill_at

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
        self.started = False
        self._lock = threading.Lock()

    def _run(self) -> None:
        while True:
            time.sleep(PERIOD_S if self.armed else IDLE_PERIOD_S)
            now = time.monotonic()
            armed = self.armed
            for worker, kill_at in list(armed.items()):  # one C call: no tearing
                if kill_at <= now:
                    armed.pop(worker, None)
                    worker.overdue = True
                    worker.kill()


WATCHDOG = Watchdog()
"""The process's watchdog (its thread starts on the first call that arms it)."""

"""Per-plugin fault bookkeeping: metrics, restart backoff and crash-loop quarantine."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from types import MappingProxyType

import attrs

from wasmplug import _telemetry
from wasmplug._errors import PluginFault
from wasmplug._sandbox.limits import RestartPolicy

__all__ = ["FaultRecord", "PluginMetrics", "Supervisor"]

log = logging.getLogger("wasmplug")

_NO_FAULTS: Mapping[str, int] = MappingProxyType({})


@attrs.frozen
class FaultRecord:
    """One fault, as kept in :attr:`PluginMetrics.last_fault`.

    Attributes:
        kind: The fault class (``"trap"``, ``"timeout"``, ``"fuel"``,
            ``"resource-limit"``, ``"result-size"``, ``"host-function"``, or
            ``"capability"`` when a new instance was refused because a granted
            directory changed).
        message: The exception's message.
        export: The export being called, if any.
        at: ``time.time()`` of the fault, in seconds since the epoch.
    """

    kind: str
    message: str
    export: str | None
    at: float


@attrs.frozen
class PluginMetrics:
    """A snapshot of one plugin's health counters.

    Attributes:
        calls: Calls that returned (a value or an ``err`` result).
        faults: Fault count by kind.
        restarts: Instances created to replace a faulted one.
        instances: Live instances right now.
        quarantined: Whether calls currently fail fast.
        last_fault: The most recent fault, if any.
        stuck_threads: Call threads abandoned at a deadline (or by ``close()``) while
            blocked in a host (WASI) call, and still blocked. Only plugins that import
            a blocking WASI interface use call threads.
    """

    calls: int
    faults: Mapping[str, int]
    restarts: int
    instances: int
    quarantined: bool
    last_fault: FaultRecord | None
    stuck_threads: int = 0

    @property
    def total_faults(self) -> int:
        """Faults of every kind together."""
        return sum(self.faults.values())


_LOCK = threading.Lock()
"""Guards the fault bookkeeping of every supervisor: it is taken only when a fault is
recorded, a restart is due, or quarantine is lifted, for a few field updates, so one
lock serves all the plugins of a process instead of one per loaded plugin."""


class Supervisor:
    """Applies a :class:`RestartPolicy` to one plugin's faults (thread-safe).

    Args:
        policy: The restart policy.
        clock: Monotonic clock in seconds for the fault window (injectable for tests).
    """

    __slots__ = (
        "_clock",
        "_faults",
        "_lock",
        "_window",
        "consecutive",
        "last_fault",
        "name",
        "pending_restart",
        "policy",
        "quarantine_reason",
        "quarantined",
        "quarantines",
        "restarts",
    )

    def __init__(
        self,
        policy: RestartPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        self.policy = policy
        self.name = name
        self._clock = clock
        self._lock = _LOCK
        # Times of recent faults and the counts by kind; made on the first fault (an
        # empty deque is 600 bytes, a lot next to the rest of a tiny plugin when
        # thousands are loaded).
        self._window: deque[float] | None = None
        self._faults: Counter[str] | None = None
        self.consecutive = 0
        self.restarts = 0
        self.pending_restart = False
        self.quarantined = False
        self.quarantines = 0  # times quarantine began
        self.last_fault: FaultRecord | None = None
        self.quarantine_reason = ""

    @property
    def faults(self) -> Mapping[str, int]:
        """Fault count by kind (empty until the first fault)."""
        return self._faults if self._faults is not None else _NO_FAULTS

    def _count(self, kind: str) -> None:
        """Count a fault of class ``kind`` (the caller holds the lock)."""
        faults = self._faults
        if faults is None:
            faults = self._faults = Counter()
        faults[kind] += 1

    def record_fault(self, exc: PluginFault) -> None:
        """Count a fault; quarantine the plugin if the policy's limit is reached."""
        # Exception.__str__: the message without the "plugin ..., export ...:" prefix.
        self.record(exc.fault, Exception.__str__(exc), exc.export)

    def record(self, kind: str, message: str, export: str | None) -> None:
        """Count a fault of class ``kind`` (also those that are not a :class:`PluginFault`,
        such as a grant that no longer names its directory: ``"capability"``)."""
        now = self._clock()
        with self._lock:
            self._count(kind)
            self.consecutive += 1
            self.pending_restart = True
            self.last_fault = FaultRecord(kind, message, export, time.time())
            window = self._window
            if window is None:
                window = self._window = deque()
            window.append(now)
            while window and now - window[0] > self.policy.window_s:
                window.popleft()
            quarantine = len(window) >= self.policy.max_faults and not self.quarantined
            if quarantine:
                self.quarantined = True
                self.quarantines += 1
        self._log(logging.INFO, "%s fault: %s", kind, message, export=export, fault=kind)
        if quarantine:
            self._log(logging.WARNING, "quarantined (%s fault)", kind, export=export, fault=kind)

    def _log(
        self, level: int, msg: str, *args: object, export: str | None, fault: str | None = None
    ) -> None:
        """Log about this plugin. The record carries ``plugin``, ``export`` and ``fault``
        as structured fields, and ``trace_id``/``span_id`` while a span is active."""
        if not log.isEnabledFor(level):
            return
        extra: dict[str, object] = {"plugin": self.name, "export": export, "fault": fault}
        extra.update(_telemetry.log_fields())
        where = f"plugin {self.name!r}" + (f", export {export!r}" if export else "")
        log.log(level, f"{where}: {msg}", *args, extra=extra)

    def record_interrupt(self, exc: PluginFault) -> None:
        """Count a call that Ctrl-C ended: a fault in the metrics, and its instance is
        replaced, but it is not the plugin's fault, so it never leads to quarantine."""
        with self._lock:
            self._count(exc.fault)
            self.pending_restart = True
            message = Exception.__str__(exc)
            self.last_fault = FaultRecord(exc.fault, message, exc.export, time.time())
        self._log(
            logging.INFO, "%s fault: %s", exc.fault, message, export=exc.export, fault=exc.fault
        )

    def quarantine(self, reason: str) -> None:
        """Quarantine now, for a reason other than the fault count."""
        with self._lock:
            self.quarantines += not self.quarantined
            self.quarantined = True
            self.quarantine_reason = reason
        self._log(logging.WARNING, "quarantined: %s", reason, export=None)

    def record_success(self) -> None:
        """A call succeeded: the consecutive-fault streak ends."""
        self.consecutive = 0

    def before_instantiate(self) -> None:
        """Sleep for the backoff the policy asks for, and count a restart if one is due."""
        if not self.pending_restart:  # the usual case (reset(), a pool growing): no lock
            return
        with self._lock:
            restarting, self.pending_restart = self.pending_restart, False
            delay = self.policy.backoff_ms(self.consecutive) if restarting else 0.0
            if restarting:
                self.restarts += 1
        if delay:
            time.sleep(delay / 1000.0)

    def reset(self) -> None:
        """Lift quarantine and forget the fault window (counters are kept)."""
        if not self.quarantined and not self.consecutive and self._window is None:
            return  # nothing to forget (the usual reset(): no lock)
        with self._lock:
            self.quarantined = False
            self.quarantine_reason = ""
            self.consecutive = 0
            self._window = None

"""Traces and metrics of loads and calls, bound per plugin at load.

The call path stays untouched while telemetry is off: :func:`instrument` returns
``None`` and the plugin keeps its plain ``_invoke``. With an SDK tracer or meter
provider configured (see :mod:`wasmplug._telemetry`), the plugin's ``_invoke`` is
replaced by :class:`CallTelemetry`'s wrapper, which runs each call inside a
``wasmplug.call`` span (current while the guest runs, so host functions and the
application's own spans nest under it) and records the call-duration histogram.

Counters and gauges are *observable* instruments whose callbacks read the
figures the supervisor and the pool already keep (:meth:`Plugin.metrics`), so
they cost nothing per call.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from wasmplug import _telemetry
from wasmplug._errors import ErrorResult, PluginFault

if TYPE_CHECKING:
    from wasmplug._sandbox.manifest import Manifest

    from .exports import ExportFunc
    from .supervisor import PluginMetrics, Supervisor

__all__ = ["CallTelemetry", "instrument", "linear_memory_bytes", "observe_host", "stage"]

_perf = time.perf_counter
_OK = "ok"
#: The values of ``wasmplug.outcome``.
OUTCOMES = ("ok", "error-result", "fault", "rejected", "interrupted")

Invoke = Callable[["ExportFunc", tuple[Any, ...]], Any]


class _Backend(Protocol):
    def linear_memory_bytes(self) -> int | None: ...


class _MemoryAccounting(Protocol):
    def bytes_of(self, owner: object) -> int: ...


class _Services(Protocol):
    @property
    def memory_accounting(self) -> _MemoryAccounting | None: ...


class Instrumented(Protocol):
    """What telemetry reads of a plugin (:class:`~wasmplug.Plugin`).

    A protocol, so that this module does not import ``plugin`` (which imports it).
    """

    name: str
    manifest: Manifest
    _exports_list: list[ExportFunc]
    _supervisor: Supervisor

    @property
    def _backend(self) -> _Backend | None: ...

    @property
    def _services(self) -> _Services: ...

    def metrics(self) -> PluginMetrics: ...


class ObservedHost(Protocol):
    """What telemetry reads of a host (:class:`~wasmplug.PluginHost`), which imports it."""

    @property
    def closed(self) -> bool: ...

    @property
    def plugins(self) -> Sequence[Instrumented]: ...


def plugin_attributes(plugin: Instrumented, isolation: str | None = None) -> dict[str, Any]:
    """The attributes that name a plugin on every span and data point."""
    if isolation is None:
        isolation = "process" if plugin._backend is not None else "inprocess"
    return {
        "wasmplug.plugin.name": plugin.name,
        "wasmplug.plugin.version": str(plugin.manifest.version),
        "wasmplug.isolation": isolation,
    }


def outcome_of(exc: BaseException) -> tuple[str, str | None]:
    """``(wasmplug.outcome, wasmplug.fault)`` for a call that raised ``exc``."""
    if isinstance(exc, ErrorResult):
        return "error-result", None  # the export answered err(E): not a fault
    if isinstance(exc, PluginFault):
        return "fault", exc.fault
    if isinstance(exc, Exception):
        return "rejected", None  # bad arguments, closed, quarantined: Wasm never ran
    return "interrupted", "interrupted"


class CallTelemetry:
    """One plugin's call instrumentation (a span and/or a histogram per call)."""

    def __init__(self, plugin: Instrumented, tracer: Any, meter: Any, isolation: str) -> None:
        self.tracer = tracer
        base = plugin_attributes(plugin, isolation)
        # One attribute dict per export, built once: the call path only indexes it.
        self.attrs = [{**base, "wasmplug.export": ex.name} for ex in plugin._exports_list]
        # The histogram's data points, one frozen attribute set per (export, outcome):
        # the SDK hashes them on every record, so keep them few and build them once.
        self.points = [
            {
                outcome: {
                    "wasmplug.plugin.name": plugin.name,
                    "wasmplug.export": ex.name,
                    "wasmplug.outcome": outcome,
                }
                for outcome in OUTCOMES
            }
            for ex in plugin._exports_list
        ]
        self.duration = None
        self.instantiate = None
        self.base = base
        self.plugin_point = {"wasmplug.plugin.name": plugin.name}
        if meter is not None:
            self.duration = meter.create_histogram(
                "wasmplug.call.duration", unit="s", description="Duration of export calls."
            )
            self.instantiate = meter.create_histogram(
                "wasmplug.instantiate.duration",
                unit="s",
                description="Duration of creating a plugin instance.",
            )

    def wrap(self, invoke: Invoke) -> Invoke:
        """``invoke`` inside a ``wasmplug.call`` span, timed into the histogram."""
        tracer = self.tracer
        attrs = self.attrs
        points = self.points
        duration = self.duration
        if tracer is None:
            assert duration is not None
            record = duration.record

            def timed(ex: ExportFunc, args: tuple[Any, ...]) -> Any:
                t0 = _perf()
                outcome = _OK
                try:
                    return invoke(ex, args)
                except BaseException as e:
                    outcome = outcome_of(e)[0]
                    raise
                finally:
                    record(_perf() - t0, points[ex.index][outcome])

            return timed

        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        start_span = tracer.start_span
        attach, detach, in_ctx = context.attach, context.detach, trace.set_span_in_context
        internal = SpanKind.INTERNAL

        def traced(ex: ExportFunc, args: tuple[Any, ...]) -> Any:
            a = attrs[ex.index]
            span = start_span("wasmplug.call", kind=internal, attributes=a)
            token = attach(in_ctx(span))
            t0 = _perf()
            outcome = _OK
            try:
                return invoke(ex, args)
            except BaseException as e:
                outcome, fault = outcome_of(e)
                if span.is_recording():
                    if fault is not None:
                        span.set_attribute("wasmplug.fault", fault)
                    if outcome != "error-result":
                        span.set_status(Status(StatusCode.ERROR, f"{type(e).__name__}: {e}"))
                        span.record_exception(e)
                raise
            finally:
                elapsed = _perf() - t0
                detach(token)
                if span.is_recording():
                    span.set_attribute("wasmplug.outcome", outcome)
                span.end()
                if duration is not None:
                    duration.record(elapsed, points[ex.index][outcome])

        return traced

    def timed_lift(self, lift: Callable[[Any, Any], Any], result: Any, inst: Any) -> Any:
        """``lift(result, inst)`` (the result's conversion to Python) in a
        ``wasmplug.lift`` child span of the call, so a trace shows lifting apart from
        the guest's own time. Made only while the call's span is recording."""
        tracer = self.tracer
        if tracer is None or not _telemetry.recording():
            return lift(result, inst)
        with tracer.start_as_current_span("wasmplug.lift", record_exception=False):
            return lift(result, inst)

    def timed_instantiate(self, create: Callable[[], Any]) -> Any:
        """Run ``create`` (a new instance) in a ``wasmplug.instantiate`` span, timed."""
        t0 = _perf()
        with _telemetry.span("wasmplug.instantiate", self.base):
            inst = create()
        if self.instantiate is not None:
            self.instantiate.record(_perf() - t0, self.plugin_point)
        return inst

    def worker_span(self, name: str, start_ns: int, end_ns: int) -> None:
        """A stage a worker process timed (``time.time_ns()``), as a child span of the
        current one; an instantiation also goes into the instantiate histogram."""
        if self.tracer is not None:
            span = self.tracer.start_span(name, attributes=self.base, start_time=start_ns)
            span.end(end_time=end_ns)
        if self.instantiate is not None and name == "wasmplug.instantiate":
            self.instantiate.record((end_ns - start_ns) / 1e9, self.plugin_point)


def instrument(plugin: Instrumented, isolation: str) -> CallTelemetry | None:
    """The plugin's call instrumentation, or ``None`` while telemetry is off."""
    tracer, meter = _telemetry.TRACER, _telemetry.METER
    if tracer is None and meter is None:
        return None
    return CallTelemetry(plugin, tracer, meter, isolation)


def stage(name: str, **attributes: Any) -> Any:
    """A child span of ``wasmplug.load`` (``verify``, ``compile``, ``link``...)."""
    return _telemetry.span(f"wasmplug.load.{name}", attributes)


# -- observable instruments: counters and gauges read from Plugin.metrics() ------------

_hosts: weakref.WeakSet[ObservedHost] = weakref.WeakSet()
_observed_meter: Any = None
_lock = threading.Lock()


def observe_host(host: ObservedHost) -> None:
    """Report ``host``'s plugins through the observable instruments (created once per
    meter) while it lives."""
    global _observed_meter
    meter = _telemetry.METER
    with _lock:
        _hosts.add(host)
        if meter is None or meter is _observed_meter:
            return
        _observed_meter = meter
    from opentelemetry.metrics import Observation

    def per_plugin(read: Callable[[Instrumented], Iterable[tuple[int, dict[str, Any]]]]) -> Any:
        def callback(_options: Any) -> Iterator[Any]:
            for h in list(_hosts):
                if h.closed:
                    continue
                for p in h.plugins:
                    for value, extra in read(p):
                        yield Observation(value, {**plugin_attributes(p), **extra})

        return [callback]

    meter.create_observable_counter(
        "wasmplug.calls",
        per_plugin(lambda p: [(p.metrics().calls, {})]),
        unit="{call}",
        description="Export calls that returned (a value or an err result).",
    )
    meter.create_observable_counter(
        "wasmplug.faults",
        per_plugin(lambda p: [(n, {"wasmplug.fault": k}) for k, n in p.metrics().faults.items()]),
        unit="{fault}",
        description="Faults by class (wasmplug.fault).",
    )
    meter.create_observable_counter(
        "wasmplug.restarts",
        per_plugin(lambda p: [(p.metrics().restarts, {})]),
        unit="{restart}",
        description="Instances created to replace a faulted one.",
    )
    meter.create_observable_counter(
        "wasmplug.quarantines",
        per_plugin(lambda p: [(p._supervisor.quarantines, {})]),
        unit="{quarantine}",
        description="Times the plugin was quarantined (calls fail fast until reset).",
    )
    meter.create_observable_gauge(
        "wasmplug.instances",
        per_plugin(lambda p: [(p.metrics().instances, {})]),
        unit="{instance}",
        description="Live instances (worker processes with isolation='process').",
    )
    meter.create_observable_gauge(
        "wasmplug.memory.linear",
        per_plugin(_linear_memory),
        unit="By",
        description=(
            "Linear memory of the live instances (isolation='process', or in-process "
            "with PluginHost(memory_accounting=True))."
        ),
    )


def linear_memory_bytes(plugin: Instrumented) -> int | None:
    """Linear memory of ``plugin``'s live instances, in bytes, where it is known:
    with ``isolation="process"`` (each worker's memory map, ``process/memory.py``),
    and in-process on a host with ``memory_accounting=True`` (the memories its
    engine allocated for the plugin, ``_bridge/memcreator.py``); ``None`` otherwise."""
    backend = plugin._backend
    if backend is not None:
        return backend.linear_memory_bytes()
    accounting = plugin._services.memory_accounting
    return None if accounting is None else accounting.bytes_of(plugin)


def _linear_memory(plugin: Instrumented) -> list[tuple[int, dict[str, Any]]]:
    size = linear_memory_bytes(plugin)
    return [] if size is None else [(size, {})]

"""OpenTelemetry hooks: whether tracing and metrics are on, and the span helpers.

A leaf module (it imports nothing from wasmplug), so the bridge (host-call spans),
the sandbox (outbound HTTP spans) and the runtime (load and call spans, metrics)
share one switch. ``opentelemetry-api`` is optional (``wasmplug[otel]``):

- not installed, or not imported by the application: :func:`refresh` finds
  nothing, :data:`TRACER` and :data:`METER` stay ``None``, and wasmplug imports no
  OpenTelemetry module;
- installed, but no SDK provider set (the API's proxy or no-op providers): the
  same, so the call path pays one ``is None`` test;
- an SDK ``TracerProvider`` / ``MeterProvider`` set with
  ``trace.set_tracer_provider`` / ``metrics.set_meter_provider``: the tracer and
  meter named ``wasmplug`` are bound.

:func:`refresh` runs when a :class:`~wasmplug.PluginHost` is created and when a
plugin is loaded, so configure the SDK before loading plugins: a plugin binds
its call instrumentation at load. Attribute names follow the OpenTelemetry
semantic-convention style under a ``wasmplug.`` prefix (docs/observability.md).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["METER", "SCOPE", "TRACER", "log_fields", "recording", "refresh", "span"]

#: The instrumentation scope name of every wasmplug span and instrument.
SCOPE = "wasmplug"

#: The ``wasmplug`` tracer, or ``None`` while no SDK tracer provider is set.
TRACER: Any = None
#: The ``wasmplug`` meter, or ``None`` while no SDK meter provider is set.
METER: Any = None

_trace: Any = None  # the opentelemetry.trace module, once imported
_tracer_provider: Any = None  # the provider TRACER came from


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("wasmplug")
    except Exception:  # metadata is best effort: an uninstalled checkout
        return "0"


def refresh() -> None:
    """Bind :data:`TRACER` and :data:`METER` if an SDK provider is configured."""
    global TRACER, METER, _trace, _tracer_provider
    # An application that configured an SDK has imported the API: when it has not,
    # nothing can be configured, so don't pay for importing it (~50 ms).
    if "opentelemetry.trace" not in sys.modules and "opentelemetry.metrics" not in sys.modules:
        TRACER = METER = None
        return
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        TRACER = METER = None
        return
    _trace = trace
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        TRACER = None
    elif TRACER is None or _tracer_provider is not provider:
        TRACER = provider.get_tracer(SCOPE, _version())
        _tracer_provider = provider
    meters = metrics.get_meter_provider()
    # The API's stand-ins: NoOpMeterProvider, and the proxy used until one is set.
    if isinstance(meters, metrics.NoOpMeterProvider) or type(meters).__name__.startswith("_Proxy"):
        METER = None
    else:
        METER = meters.get_meter(SCOPE, _version())


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any], *, messages: bool = True) -> Iterator[Any]:
    """A child span of the current one, made current while the block runs; a no-op
    (yields ``None``) while tracing is off.

    An exception leaving the block sets the span's status to error and its
    ``error.type`` attribute to the exception's class name (the OpenTelemetry
    convention), then propagates. With ``messages`` (the default) it is also
    recorded as an ``exception`` event with its message; pass ``messages=False``
    where a message may quote what must not be exported (a URL's query string).
    """
    tracer = TRACER
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as s:
        try:
            yield s
        except BaseException as e:
            if s.is_recording():
                _failed(s, e, messages=messages)
            raise


def _failed(s: Any, exc: BaseException, *, messages: bool) -> None:
    from opentelemetry.trace import Status, StatusCode

    s.set_attribute("error.type", type(exc).__qualname__)
    if messages:
        s.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        s.record_exception(exc)
    else:
        s.set_status(Status(StatusCode.ERROR))


def recording() -> bool:
    """Whether the current span is recording (sampled, and tracing is on)."""
    trace = _trace
    return trace is not None and TRACER is not None and trace.get_current_span().is_recording()


def log_fields() -> dict[str, str]:
    """``{"trace_id": ..., "span_id": ...}`` (hex, W3C form) of the active span, for a
    log record's ``extra``; empty while no span is active or tracing is off."""
    trace = _trace
    if trace is None or TRACER is None:
        return {}
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}

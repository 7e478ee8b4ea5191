"""``--trace``: record wasmplug's OpenTelemetry spans and print one query's span tree.

The OpenTelemetry SDK is configured the usual way (a ``TracerProvider`` with a span
processor) before the ``PluginHost`` is created; here the processor keeps the spans
in memory, and :func:`print_tree` prints them as an indented tree. Repeated sibling
spans (an FDW scan calls ``iter-scan`` once per batch of rows) are folded into one
line with their count and total time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_exporter = InMemorySpanExporter()


def configure() -> None:
    """Install an SDK tracer provider that keeps finished spans in memory."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    trace.set_tracer_provider(provider)


@contextmanager
def traced_query(sql: str) -> Iterator[None]:
    """Run the block in an application span ``db_wrapper.query``; print its tree after."""
    _exporter.clear()
    tracer = trace.get_tracer("examples.db_wrapper")
    with tracer.start_as_current_span("db_wrapper.query", attributes={"db.query.text": sql}):
        yield
    print_tree(list(_exporter.get_finished_spans()))


def _label(span: ReadableSpan) -> str:
    a: dict[str, Any] = dict(span.attributes or {})
    parts = [span.name]
    if "wasmplug.export" in a:
        parts.append(f"{a['wasmplug.plugin.name']} {a['wasmplug.export'].rpartition('#')[2]}")
    elif "wasmplug.host.function" in a:
        parts.append(a["wasmplug.host.function"])
    elif "server.address" in a:
        parts.append(f"{a.get('http.request.method', '')} {a['server.address']}")
    if "wasmplug.fault" in a:
        parts.append(f"fault={a['wasmplug.fault']}")
    return " ".join(parts)


def _ms(span: ReadableSpan) -> float:
    return ((span.end_time or 0) - (span.start_time or 0)) / 1e6


def print_tree(spans: list[ReadableSpan]) -> None:
    """Print ``spans`` as a tree (parents first, siblings by start time)."""
    ids = {s.context.span_id for s in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in sorted(spans, key=lambda s: s.start_time or 0):
        parent = s.parent.span_id if s.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(s)

    def walk(parent: int | None, depth: int) -> None:
        groups: dict[str, list[ReadableSpan]] = {}
        for s in children.get(parent, []):
            groups.setdefault(_label(s), []).append(s)
        for label, group in groups.items():
            total = sum(_ms(s) for s in group)
            count = f" x{len(group)}" if len(group) > 1 else ""
            print(f"   {'  ' * depth}{label}{count}  {total:.2f} ms")
            for s in group[:1]:  # the first of a folded group stands for the rest
                walk(s.context.span_id, depth + 1)

    print("   span tree (repeated siblings folded; the first one's children shown):")
    walk(None, 0)

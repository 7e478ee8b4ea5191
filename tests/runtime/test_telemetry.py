"""OpenTelemetry: the span trees of a load and of calls, and the metrics, read back
through the SDK's in-memory span exporter and metric reader.

The SDK providers are handed to wasmplug by patching the API's global getters for
the test only (the API lets a process set its global providers once), and the
telemetry switch is refreshed after each test so later tests run uninstrumented.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the dev extra installs opentelemetry-sdk")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode

from support.http import COMPONENT as HTTP_COMPONENT
from support.http import running_server, send, send_err
from wasmplug import (
    Grants,
    HostStats,
    Limits,
    Manifest,
    Plugin,
    PluginCrashed,
    PluginHost,
    PluginStats,
    PluginTimeout,
    PluginTrapped,
    RestartPolicy,
    _telemetry,
)
from wasmplug._runtime.callpath import CallPath

from .test_faults import FAULTY_WAT


@attrs.define
class Otel:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer: Any

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def tree(self) -> list[tuple[int, str]]:
        """``(depth, name)`` of every finished span, parents before children."""
        spans = self.finished()
        children: dict[int | None, list[ReadableSpan]] = {}
        ids = {s.context.span_id for s in spans}
        for s in sorted(spans, key=lambda s: s.start_time or 0):
            parent = s.parent.span_id if s.parent is not None else None
            children.setdefault(parent if parent in ids else None, []).append(s)
        out: list[tuple[int, str]] = []

        def walk(parent: int | None, depth: int) -> None:
            for s in children.get(parent, []):
                out.append((depth, s.name))
                walk(s.context.span_id, depth + 1)

        walk(None, 0)
        return out

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


def _install(monkeypatch: pytest.MonkeyPatch, **tracer_kwargs: Any) -> Otel:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(**tracer_kwargs)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: tracer_provider)
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: meter_provider)
    return Otel(spans, reader, tracer_provider.get_tracer("app"))


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Otel]:
    yield _install(monkeypatch)
    monkeypatch.undo()
    _telemetry.refresh()


@pytest.fixture
def host(otel: Otel, tmp_path: Path) -> Iterator[PluginHost]:
    # No warm spare: its start, in the background, is a trace of its own.
    with PluginHost(cache_dir=tmp_path / "cache", spare_workers=0) as h:
        yield h


def load(host: PluginHost, otel: Otel, cb: Any = lambda x: x + 1, **kwargs: Any) -> Plugin:
    host.provide("cb", cb)
    plugin = host.load(
        FAULTY_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="faulty", version="1.2.3", host_interfaces=("cb",)),
        **kwargs,
    )
    otel.spans.clear()
    return plugin


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_load_span_tree(host: PluginHost, otel: Otel) -> None:
    host.provide("cb", lambda x: x)
    data = FAULTY_WAT.encode()
    manifest = Manifest(name="faulty", version="1.2.3", host_interfaces=("cb",))
    host.load(data, allow_unsigned=True, manifest=manifest)
    assert otel.tree() == [
        (0, "wasmplug.load"),
        (1, "wasmplug.load.verify"),
        (1, "wasmplug.load.compile"),
        (1, "wasmplug.load.link"),
        (1, "wasmplug.instantiate"),
    ]
    by_name = {s.name: s for s in otel.finished()}
    assert attrs_of(by_name["wasmplug.load"]) == {
        "wasmplug.plugin.name": "faulty",
        "wasmplug.plugin.version": "1.2.3",
        "wasmplug.isolation": "inprocess",
    }
    assert attrs_of(by_name["wasmplug.load.verify"])["wasmplug.signed"] is False
    assert attrs_of(by_name["wasmplug.load.compile"])["wasmplug.compile.cache"] == "miss"
    otel.spans.clear()
    host.load(data, allow_unsigned=True, manifest=manifest)  # compiled once per host
    by_name = {s.name: s for s in otel.finished()}
    assert attrs_of(by_name["wasmplug.load.compile"])["wasmplug.compile.cache"] == "memory"


def test_call_with_host_call_nests_the_apps_span(host: PluginHost, otel: Otel) -> None:
    seen: dict[str, Any] = {}

    def cb(x: int) -> int:
        with otel.tracer.start_as_current_span("app.lookup"):
            seen.update(_telemetry.log_fields())
        return x + 1

    plugin = load(host, otel, cb)
    assert plugin.call("call-cb", 1) == 2
    assert otel.tree() == [
        (0, "wasmplug.call"),
        (1, "wasmplug.host_call"),
        (2, "app.lookup"),
    ]
    call, host_call, app = sorted(otel.finished(), key=lambda s: s.start_time or 0)
    assert attrs_of(call) == {
        "wasmplug.plugin.name": "faulty",
        "wasmplug.plugin.version": "1.2.3",
        "wasmplug.isolation": "inprocess",
        "wasmplug.export": "call-cb",
        "wasmplug.outcome": "ok",
    }
    assert call.status.status_code is StatusCode.UNSET
    assert attrs_of(host_call) == {"wasmplug.host.function": "cb"}
    assert call.kind is trace.SpanKind.INTERNAL
    assert seen == {
        "trace_id": f"{app.context.trace_id:032x}",
        "span_id": f"{app.context.span_id:016x}",
    }


def test_call_nests_under_the_apps_current_span(host: PluginHost, otel: Otel) -> None:
    plugin = load(host, otel)
    with otel.tracer.start_as_current_span("app.request"):
        plugin.call("add", 1, 2)
    assert otel.tree() == [(0, "app.request"), (1, "wasmplug.call")]


def test_trapping_call_span(host: PluginHost, otel: Otel) -> None:
    plugin = load(host, otel)
    with pytest.raises(PluginTrapped):
        plugin.call("boom")
    (span,) = [s for s in otel.finished() if s.name == "wasmplug.call"]
    a = attrs_of(span)
    assert (a["wasmplug.export"], a["wasmplug.outcome"], a["wasmplug.fault"]) == (
        "boom",
        "fault",
        "trap",
    )
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    # The next call runs on a fresh instance: its span has an instantiate child.
    otel.spans.clear()
    assert plugin.call("add", 40, 2) == 42
    assert otel.tree() == [(0, "wasmplug.call"), (1, "wasmplug.instantiate")]


def test_timeout_span(host: PluginHost, otel: Otel) -> None:
    plugin = load(host, otel, limits=Limits(timeout_ms=50))
    with pytest.raises(PluginTimeout):
        plugin.call("spin")
    (span,) = otel.finished()
    assert attrs_of(span)["wasmplug.fault"] == "timeout"
    assert attrs_of(span)["wasmplug.outcome"] == "fault"
    assert span.status.status_code is StatusCode.ERROR


def test_failing_host_call_span(host: PluginHost, otel: Otel) -> None:
    def cb(x: int) -> int:
        raise LookupError("no such row")

    plugin = load(host, otel, cb)
    with pytest.raises(Exception, match="no such row"):
        plugin.call("call-cb", 1)
    spans = {s.name: s for s in otel.finished()}
    assert attrs_of(spans["wasmplug.call"])["wasmplug.fault"] == "host-function"
    host_call = spans["wasmplug.host_call"]
    assert host_call.status.status_code is StatusCode.ERROR
    assert attrs_of(host_call)["error.type"] == "LookupError"


def test_counters_after_a_fault_and_a_restart(host: PluginHost, otel: Otel) -> None:
    plugin = load(host, otel)
    plugin.call("add", 1, 2)
    with pytest.raises(PluginTrapped):
        plugin.call("boom")
    plugin.call("add", 1, 2)  # a fresh instance: one restart

    def value(name: str, **match: str) -> Any:
        want = {"wasmplug.plugin.name": "faulty", **match}
        (point,) = [p for p in otel.points(name) if want.items() <= dict(p.attributes).items()]
        return point

    assert value("wasmplug.calls").value == 2
    assert value("wasmplug.faults", **{"wasmplug.fault": "trap"}).value == 1
    assert value("wasmplug.restarts").value == 1
    assert value("wasmplug.quarantines").value == 0
    assert value("wasmplug.instances").value == 1
    ok = value("wasmplug.call.duration", **{"wasmplug.outcome": "ok", "wasmplug.export": "add"})
    assert ok.count == 2
    fault = value("wasmplug.call.duration", **{"wasmplug.outcome": "fault"})
    assert fault.count == 1
    assert value("wasmplug.instantiate.duration").count == 2  # at load, after the trap
    assert otel.points("wasmplug.memory.linear") == []  # not counted in-process by default


def test_linear_memory_gauge_in_process_with_memory_accounting(otel: Otel, tmp_path: Path) -> None:
    with PluginHost(cache_dir=tmp_path / "cache", memory_accounting=True) as host:
        plugin = load(host, otel, limits=Limits(memory_bytes=4 << 20))
        (point,) = otel.points("wasmplug.memory.linear")
        assert point.value == 65536  # (memory 1)
        assert dict(point.attributes)["wasmplug.isolation"] == "inprocess"
        assert plugin.call("grow-max") == 64
        (point,) = otel.points("wasmplug.memory.linear")
        assert point.value == 64 * 65536


def test_sampling_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    otel = _install(monkeypatch, sampler=ALWAYS_OFF)
    try:
        with PluginHost(cache_dir=tmp_path / "cache") as host:
            plugin = load(host, otel)
            assert plugin.call("call-cb", 1) == 2
            with pytest.raises(PluginTrapped):
                plugin.call("boom")
        assert otel.finished() == []
    finally:
        monkeypatch.undo()
        _telemetry.refresh()


def test_without_an_sdk_the_call_path_is_untouched(tmp_path: Path) -> None:
    _telemetry.refresh()
    assert _telemetry.TRACER is None
    assert _telemetry.METER is None
    with PluginHost(cache_dir=tmp_path / "cache") as host:
        host.provide("cb", lambda x: x)
        plugin = host.load(
            FAULTY_WAT.encode(),
            allow_unsigned=True,
            manifest=Manifest(name="faulty", host_interfaces=("cb",)),
        )
        assert plugin._tel is None
        assert plugin._invoke.__func__ is CallPath._invoke  # type: ignore[attr-defined]
        assert plugin.call("call-cb", 4) == 4


def test_fault_log_record_has_structured_fields_and_trace_ids(
    host: PluginHost, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = load(host, otel)
    caplog.set_level(logging.INFO, logger="wasmplug")
    with pytest.raises(PluginTrapped):
        plugin.call("boom")
    (record,) = [r for r in caplog.records if getattr(r, "fault", None) is not None]
    assert (record.plugin, record.export, record.fault) == ("faulty", "boom", "trap")  # type: ignore[attr-defined]
    (span,) = otel.finished()
    assert record.trace_id == f"{span.context.trace_id:032x}"  # type: ignore[attr-defined]
    assert record.span_id == f"{span.context.span_id:016x}"  # type: ignore[attr-defined]
    assert record.getMessage().startswith("plugin 'faulty', export 'boom': trap fault: ")


def test_log_fields_empty_without_a_span(otel: Otel) -> None:
    _telemetry.refresh()
    assert _telemetry.TRACER is not None
    assert _telemetry.log_fields() == {}


def test_host_stats_without_otel(tmp_path: Path) -> None:
    _telemetry.refresh()
    with PluginHost(
        cache_dir=tmp_path / "cache", restart_policy=RestartPolicy(max_faults=2)
    ) as host:
        host.provide("cb", lambda x: x)
        manifest = Manifest(name="faulty", version="1.2.3", host_interfaces=("cb",))
        plugin = host.load(FAULTY_WAT.encode(), allow_unsigned=True, manifest=manifest)
        plugin.call("add", 1, 2)
        for _ in range(2):
            with pytest.raises(PluginTrapped):
                plugin.call("boom")
        stats = host.stats()
        assert isinstance(stats, HostStats)
        assert len(stats) == 1
        s = stats.get("faulty")
        assert s is not None
        assert s == PluginStats(
            name="faulty",
            version="1.2.3",
            isolation="inprocess",
            calls=1,
            faults=s.faults,
            restarts=1,
            quarantines=1,
            quarantined=True,
            instances=0,
        )
        assert dict(s.faults) == {"trap": 2}
        assert s.total_faults == 2
        with pytest.raises(TypeError):
            s.faults["trap"] = 0  # type: ignore[index]
        plugin.reset()
        plugin.call("add", 1, 2)
        after = host.stats().get("faulty")
        assert after is not None
        assert (after.calls, after.restarts, after.quarantines) == (2, 2, 1)
        assert (s.calls, s.restarts) == (1, 1)  # a snapshot: it does not change
        assert stats.get("nope") is None


def test_http_span_names_the_host_only(host: PluginHost, otel: Otel) -> None:
    with running_server() as server:
        origin = server.url
        plugin = host.load(
            HTTP_COMPONENT,
            allow_unsigned=True,
            manifest=Manifest(
                name="fetcher",
                host_interfaces=("wasmplug:host/http@0.1.0",),
                allowed_outbound_hosts=(origin,),
            ),
            grants=Grants(allowed_outbound_hosts=(origin,)),
            # A loaded 2-core machine can take most of a second per request: the
            # spans are what is tested here, not the time limit.
            limits=Limits(timeout_ms=30_000),
        )
        otel.spans.clear()
        assert send(plugin, f"{origin}/json?token=s3cret").status == 200
        denied = send_err(plugin, "http://example.com/x?token=s3cret")
    assert denied.case == "denied"
    trees = otel.tree()
    assert trees == [
        (0, "wasmplug.call"),
        (1, "wasmplug.host_call"),
        (2, "wasmplug.http"),
        (1, "wasmplug.lift"),  # the response record becomes Python values
        (0, "wasmplug.call"),
        (1, "wasmplug.host_call"),
        (2, "wasmplug.http"),
        (1, "wasmplug.lift"),
    ]
    ok, refused = [s for s in otel.finished() if s.name == "wasmplug.http"]
    assert attrs_of(ok) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "url.scheme": "http",
        "http.response.status_code": 200,
    }
    assert attrs_of(refused)["server.address"] == "example.com"
    assert refused.status.status_code is StatusCode.ERROR
    for span in otel.finished():  # no path, query string or token anywhere
        text = repr(span.to_json())
        assert "s3cret" not in text
        assert "/json" not in text


def test_process_tier_call_with_host_call(host: PluginHost, otel: Otel) -> None:
    """Host calls of a process-isolated plugin run here, under the call's span."""

    def cb(x: int) -> int:
        with otel.tracer.start_as_current_span("app.lookup"):
            return x + 1

    plugin = load(host, otel, cb, isolation="process")
    assert plugin.call("call-cb", 1) == 2
    with pytest.raises(PluginTrapped):
        plugin.call("boom")
    assert otel.tree() == [
        (0, "wasmplug.call"),
        (1, "wasmplug.host_call"),
        (2, "app.lookup"),
        (0, "wasmplug.call"),
    ]
    ok, trapped = [s for s in otel.finished() if s.name == "wasmplug.call"]
    assert attrs_of(ok)["wasmplug.isolation"] == "process"
    assert (attrs_of(trapped)["wasmplug.outcome"], attrs_of(trapped)["wasmplug.fault"]) == (
        "fault",
        "trap",
    )


@pytest.fixture
def process_host(otel: Otel, tmp_path: Path) -> Iterator[PluginHost]:
    """A process-tier host with no warm spare: every worker starts when it is needed."""
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as h:
        yield h


def test_process_tier_load_span_tree(process_host: PluginHost, otel: Otel) -> None:
    """The worker's own stages (link, instantiate) nest under the span of its start."""
    process_host.provide("cb", lambda x: x)
    manifest = Manifest(name="faulty", version="1.2.3", host_interfaces=("cb",))
    process_host.load(FAULTY_WAT.encode(), allow_unsigned=True, manifest=manifest)
    assert otel.tree() == [
        (0, "wasmplug.load"),
        (1, "wasmplug.load.verify"),
        (1, "wasmplug.load.compile"),
        (1, "wasmplug.worker.start"),
        (2, "wasmplug.load.link"),
        (2, "wasmplug.instantiate"),
    ]
    by_name = {s.name: s for s in otel.finished()}
    start, inst = by_name["wasmplug.worker.start"], by_name["wasmplug.instantiate"]
    assert attrs_of(inst) == {
        "wasmplug.plugin.name": "faulty",
        "wasmplug.plugin.version": "1.2.3",
        "wasmplug.isolation": "process",
    }
    # Timed in the worker, on the clock both processes share: inside its start.
    assert start.start_time is not None
    assert start.end_time is not None
    assert start.start_time <= (inst.start_time or 0) <= (inst.end_time or 0) <= start.end_time
    assert otel.points("wasmplug.instantiate.duration")[0].count == 1


def test_a_warm_spare_start_is_a_trace_of_its_own(otel: Otel, tmp_path: Path) -> None:
    """A spare starts in the background, for no load or call: a root
    ``wasmplug.worker.start`` span marked ``wasmplug.worker.spare``, holding the
    worker's own stages, as a start in a load or a call does."""
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=1) as h:
        h.provide("cb", lambda x: x)
        manifest = Manifest(name="faulty", version="1.2.3", host_interfaces=("cb",))
        plugin = h.load(FAULTY_WAT.encode(), allow_unsigned=True, manifest=manifest)
        backend = plugin._backend
        assert backend is not None
        deadline = time.monotonic() + 60
        while len(backend.worker_pids()) < 2:  # the spare is ready (its span has ended)
            assert time.monotonic() < deadline, "no spare started"
            time.sleep(0.01)
        spare_trace = [s for s in otel.finished() if s.context.trace_id != _load_trace(otel)]
        assert sorted(s.name for s in spare_trace) == [
            "wasmplug.instantiate",
            "wasmplug.load.link",
            "wasmplug.worker.start",
        ]
        (start,) = [s for s in spare_trace if s.name == "wasmplug.worker.start"]
        assert start.parent is None
        assert attrs_of(start) == {
            "wasmplug.plugin.name": "faulty",
            "wasmplug.plugin.version": "1.2.3",
            "wasmplug.isolation": "process",
            "wasmplug.worker.spare": True,
        }
        assert all(s.parent is not None for s in spare_trace if s is not start)
        (load_start,) = [
            s
            for s in otel.finished()
            if s.name == "wasmplug.worker.start" and s.context.trace_id == _load_trace(otel)
        ]
        assert "wasmplug.worker.spare" not in attrs_of(load_start)


def _load_trace(otel: Otel) -> int:
    (load,) = [s for s in otel.finished() if s.name == "wasmplug.load"]
    return load.context.trace_id


def test_process_tier_trap_crash_and_restarts(process_host: PluginHost, otel: Otel) -> None:
    """Faults have the in-process shape: a trapping call's span, the instance made
    again in the next call, and a crashed worker (PluginCrashed) replaced in the next."""
    plugin = load(process_host, otel, limits=Limits(timeout_ms=None), isolation="process")
    with pytest.raises(PluginTrapped):
        plugin.call("boom")
    assert plugin.call("add", 1, 2) == 3  # the worker instantiates again, in this call
    assert otel.tree() == [
        (0, "wasmplug.call"),
        (0, "wasmplug.call"),
        (1, "wasmplug.instantiate"),
    ]
    otel.spans.clear()
    backend = plugin._backend
    assert backend is not None
    [pid] = backend.worker_pids()
    errors: list[BaseException] = []

    def spin() -> None:
        try:
            plugin.call("spin")
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=spin)
    thread.start()
    # Kill it mid-call: once the worker is spinning, not between the lock and the
    # CALL (an undelivered call is made again on a new worker, which spins for ever).
    try:
        spinning = _worker_is_spinning(backend, pid, deadline=time.monotonic() + 30)
    finally:
        os.kill(pid, signal.SIGKILL)
    thread.join(10)
    assert spinning, "the worker never started the call"
    assert not thread.is_alive()
    assert [type(e) for e in errors] == [PluginCrashed]
    assert plugin.call("add", 1, 2) == 3  # a new worker
    assert otel.tree() == [
        (0, "wasmplug.call"),
        (0, "wasmplug.call"),
        (1, "wasmplug.worker.start"),
        (2, "wasmplug.load.link"),
        (2, "wasmplug.instantiate"),
    ]
    crashed = next(s for s in otel.finished() if attrs_of(s).get("wasmplug.export") == "spin")
    assert (attrs_of(crashed)["wasmplug.outcome"], attrs_of(crashed)["wasmplug.fault"]) == (
        "fault",
        "crash",
    )
    assert crashed.status.status_code is StatusCode.ERROR

    def value(name: str, **match: str) -> Any:
        want = {"wasmplug.plugin.name": "faulty", **match}
        (point,) = [p for p in otel.points(name) if want.items() <= dict(p.attributes).items()]
        return point

    assert value("wasmplug.faults", **{"wasmplug.fault": "trap"}).value == 1
    assert value("wasmplug.faults", **{"wasmplug.fault": "crash"}).value == 1
    assert value("wasmplug.restarts").value == 2
    assert value("wasmplug.calls").value == 2
    assert value("wasmplug.instances").value == 1
    assert value("wasmplug.instances").attributes["wasmplug.isolation"] == "process"
    assert value("wasmplug.instantiate.duration").count == 3  # load, after the trap, the crash
    assert value("wasmplug.memory.linear").value == 65536  # the worker's (memory 1)
    assert value("wasmplug.memory.linear").attributes["wasmplug.isolation"] == "process"


def _worker_is_spinning(backend: Any, pid: int, *, deadline: float) -> bool:
    """Wait until a call holds a worker (its lock) and worker ``pid`` has then used
    0.1 s of CPU time: only a running ``spin`` does (an idle worker sleeps in recv);
    False at ``deadline`` (``time.monotonic()``)."""
    start = None
    while time.monotonic() < deadline:
        if start is None:
            if any(w.lock.locked() for w in list(backend.pool._live)):
                start = _cpu_ticks(pid)
        elif _cpu_ticks(pid) - start >= os.sysconf("SC_CLK_TCK") // 10:
            return True
        time.sleep(0.005)
    return False


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of process ``pid`` in clock ticks (/proc/PID/stat
    fields 14 and 15, counted after the parenthesised command name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def test_call_thread_tier_propagates_the_context(host: PluginHost, otel: Otel) -> None:
    """A plugin that can block in WASI runs calls on a call thread: the host function
    still sees the call's span as current."""
    poll = '(import "wasi:io/poll@0.2.0" (instance (export "pollable" (type (sub resource)))))'
    threaded = FAULTY_WAT.replace("(component\n", f"(component {poll}\n", 1)

    def cb(x: int) -> int:
        with otel.tracer.start_as_current_span("app.lookup"):
            return x + 1

    host.provide("cb", cb)
    plugin = host.load(
        threaded.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="faulty", host_interfaces=("cb",)),
    )
    assert plugin._threaded
    otel.spans.clear()
    assert plugin.call("call-cb", 1) == 2
    assert otel.tree() == [(0, "wasmplug.call"), (1, "wasmplug.host_call"), (2, "app.lookup")]


# A string result: the guest returns a pointer to (ptr=16, len=2) and the host lifts it.
HELLO_WAT = r"""
(component
  (core module $m
    (memory (export "mem") 1)
    (data (i32.const 16) "hi")
    (func (export "hello") (result i32)
      (i32.store (i32.const 100) (i32.const 16))
      (i32.store (i32.const 104) (i32.const 2))
      i32.const 100))
  (core instance $i (instantiate $m))
  (func (export "hello") (result string)
    (canon lift (core func $i "hello") (memory (core memory $i "mem"))))
)
"""


def test_lifting_has_its_own_span(host: PluginHost, otel: Otel) -> None:
    plugin = host.load(HELLO_WAT.encode(), allow_unsigned=True, manifest=Manifest(name="hello"))
    otel.spans.clear()
    assert plugin.call("hello") == "hi"
    assert otel.tree() == [(0, "wasmplug.call"), (1, "wasmplug.lift")]


def test_no_opentelemetry_import_unless_the_application_imported_it() -> None:
    """Creating a host and calling a plugin imports no OpenTelemetry module when the
    application has not imported one (an SDK cannot be configured then)."""
    code = (
        "import sys\n"
        "from wasmplug import Manifest, PluginHost\n"
        "with PluginHost(cache_dir=False) as h:\n"
        "    p = h.load(sys.argv[1].encode(), allow_unsigned=True, manifest=Manifest(name='x'))\n"
        "    assert p.call('hello') == 'hi'\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, HELLO_WAT], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

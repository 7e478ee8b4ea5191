"""Log records: guest output and fault lines carry ``plugin`` (and ``export``,
``fault``) as structured ``extra`` fields, and the trace and span ids of the call
while one is traced, in both isolation tiers (docs/observability.md, "Logs")."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the dev extra installs opentelemetry-sdk")

from support.stdout_wat import STDOUT_WAT
from wasmplug import Manifest, Plugin, PluginHost, PluginTrapped, RestartPolicy, _telemetry

from .test_faults import FAULTY_WAT
from .test_telemetry import Otel, otel  # noqa: F401 - the fixture

TIERS = ["inprocess", "process"]


@pytest.fixture
def host(otel: Otel, tmp_path: Path) -> Iterator[PluginHost]:  # noqa: F811
    with PluginHost(
        cache_dir=tmp_path / "cache",
        spare_workers=0,
        restart_policy=RestartPolicy(max_faults=2),
    ) as h:
        yield h


def _guest_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "wasmplug.plugin.printer"]


def _printer(host: PluginHost, isolation: str) -> Plugin:
    """A guest that writes to WASI stdout: wasmtime hands the output to the host on a
    thread of its own, not the calling one."""
    return host.load(
        STDOUT_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="printer"),
        isolation=isolation,  # type: ignore[arg-type]
    )


def _print_a_line(plugin: Plugin) -> None:
    assert plugin.call("write-blocking", 1, 21, 4096) == 21  # 20 x and a newline


@pytest.mark.parametrize("isolation", TIERS)
def test_guest_output_carries_the_plugin_and_the_calls_trace_ids(
    host: PluginHost,
    otel: Otel,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    isolation: str,
) -> None:
    plugin = _printer(host, isolation)
    caplog.set_level(logging.INFO, logger="wasmplug")
    otel.spans.clear()
    _print_a_line(plugin)
    (record,) = _guest_lines(caplog)
    assert record.getMessage() == "x" * 20
    (call,) = otel.finished()
    assert record.plugin == "printer"  # type: ignore[attr-defined]
    assert record.trace_id == f"{call.context.trace_id:032x}"  # type: ignore[attr-defined]
    assert record.span_id == f"{call.context.span_id:016x}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("isolation", TIERS)
def test_guest_output_without_tracing_has_no_trace_ids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, isolation: str
) -> None:
    _telemetry.refresh()
    with PluginHost(cache_dir=tmp_path / "cache", spare_workers=0) as host:
        plugin = _printer(host, isolation)
        caplog.set_level(logging.INFO, logger="wasmplug")
        _print_a_line(plugin)
    (record,) = _guest_lines(caplog)
    assert record.plugin == "printer"  # type: ignore[attr-defined]
    assert not hasattr(record, "trace_id")


@pytest.mark.parametrize("isolation", TIERS)
def test_fault_and_quarantine_records(
    host: PluginHost,
    otel: Otel,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    isolation: str,
) -> None:
    """One record per fault, from the application, with the structured fields and the
    call's ids; a process-tier worker's own fault line is not passed off as guest output."""
    host.provide("cb", lambda x: x)
    plugin = host.load(
        FAULTY_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="faulty", host_interfaces=("cb",)),
        isolation=isolation,  # type: ignore[arg-type]
    )
    caplog.set_level(logging.DEBUG, logger="wasmplug")
    otel.spans.clear()
    for _ in range(2):
        with pytest.raises(PluginTrapped):
            plugin.call("boom")
    assert [r for r in caplog.records if r.name.startswith("wasmplug.plugin.")] == []
    records = [r for r in caplog.records if getattr(r, "plugin", None) == "faulty"]
    calls = [s for s in otel.finished() if s.name == "wasmplug.call"]
    assert [(r.levelno, r.export, r.fault) for r in records] == [  # type: ignore[attr-defined]
        (logging.INFO, "boom", "trap"),
        (logging.INFO, "boom", "trap"),
        (logging.WARNING, "boom", "trap"),  # quarantined
    ]
    assert [r.span_id for r in records] == [  # type: ignore[attr-defined]
        f"{calls[0].context.span_id:016x}",
        f"{calls[1].context.span_id:016x}",
        f"{calls[1].context.span_id:016x}",
    ]
    assert records[2].getMessage() == "plugin 'faulty', export 'boom': quarantined (trap fault)"

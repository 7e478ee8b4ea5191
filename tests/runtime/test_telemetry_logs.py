"""Log records: guest output and fault lines carry ``plugin`` (and ``export``,
``fault``) as structured ``extra`` fields, and the trace and span ids of the call
while one is traced, in both isolation tiers (docs/observability.md, "Logs")."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the dev extra installs opentelemetry-sdk")

from wasmplug import Manifest, PluginHost, PluginTrapped, RestartPolicy, _telemetry

from .test_faults import FAULTY_WAT
from .test_telemetry import Otel, otel  # noqa: F401 - the fixture

# A guest that writes one line to WASI stdout (wasmtime hands it to the host's
# stdout callback on a thread of its own, not the calling one).
PRINT_WAT = r"""
(component
  (import "wasi:io/error@0.2.0" (instance $err (export "error" (type (sub resource)))))
  (alias export $err "error" (type $error))
  (import "wasi:io/streams@0.2.0" (instance $streams
    (alias outer 1 $error (type))
    (export "error" (type (eq 0)))
    (export "output-stream" (type (sub resource)))
    (type (own 1))
    (type (variant (case "last-operation-failed" 3) (case "closed")))
    (export "stream-error" (type (eq 4)))
    (type (borrow 2))
    (type (list u8))
    (type (result (error 5)))
    (export "[method]output-stream.blocking-write-and-flush"
      (func (param "self" 6) (param "contents" 7) (result 8)))))
  (alias export $streams "output-stream" (type $ostream))
  (import "wasi:cli/stdout@0.2.0" (instance $stdout
    (alias outer 1 $ostream (type))
    (export "output-stream" (type (eq 0)))
    (type (own 1))
    (export "get-stdout" (func (result 2)))))
  (core module $mem (memory (export "mem") 1))
  (core instance $m (instantiate $mem))
  (alias core export $m "mem" (core memory $memory))
  (core func $get (canon lower (func $stdout "get-stdout")))
  (core func $write (canon lower
    (func $streams "[method]output-stream.blocking-write-and-flush") (memory $memory)))
  (core func $drop (canon resource.drop $ostream))
  (core module $main
    (import "m" "mem" (memory 1))
    (import "h" "get" (func $get (result i32)))
    (import "h" "write" (func $write (param i32 i32 i32 i32)))
    (import "h" "drop" (func $drop (param i32)))
    (data (i32.const 16) "hello from the guest\n")
    (func (export "hello") (local $s i32)
      (local.set $s (call $get))
      (call $write (local.get $s) (i32.const 16) (i32.const 21) (i32.const 64))
      (call $drop (local.get $s))))
  (core instance $i (instantiate $main
    (with "m" (instance $m))
    (with "h" (instance
      (export "get" (func $get)) (export "write" (func $write)) (export "drop" (func $drop))))))
  (func (export "hello") (canon lift (core func $i "hello")))
)
"""

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


@pytest.mark.parametrize("isolation", TIERS)
def test_guest_output_carries_the_plugin_and_the_calls_trace_ids(
    host: PluginHost,
    otel: Otel,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    isolation: str,
) -> None:
    plugin = host.load(
        PRINT_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="printer"),
        isolation=isolation,  # type: ignore[arg-type]
    )
    caplog.set_level(logging.INFO, logger="wasmplug")
    otel.spans.clear()
    plugin.call("hello")
    (record,) = _guest_lines(caplog)
    assert record.getMessage() == "hello from the guest"
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
        plugin = host.load(
            PRINT_WAT.encode(),
            allow_unsigned=True,
            manifest=Manifest(name="printer"),
            isolation=isolation,  # type: ignore[arg-type]
        )
        caplog.set_level(logging.INFO, logger="wasmplug")
        plugin.call("hello")
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

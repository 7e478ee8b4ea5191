"""The caller's context (contextvars, and so the current OpenTelemetry span) reaches
host functions, sync and ``async def``, under ``plugin.call`` and ``await
plugin.acall``, in every tier: the guest's own thread, a call thread (a plugin that
can block in WASI) and a worker process.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the dev extra installs opentelemetry-sdk")

from wasmplug import Manifest, Plugin, PluginHost

from .test_faults import FAULTY_WAT
from .test_telemetry import Otel, otel  # noqa: F401 - the fixture

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST", default="unset")

POLL = '(import "wasi:io/poll@0.2.0" (instance (export "pollable" (type (sub resource)))))'
# FAULTY_WAT importing a WASI interface that can block: its calls run on a call thread.
THREADED_WAT = FAULTY_WAT.replace("(component\n", f"(component {POLL}\n", 1)

TIERS = [
    pytest.param("inprocess", FAULTY_WAT, id="inprocess"),
    pytest.param("inprocess", THREADED_WAT, id="call-thread"),
    pytest.param("process", FAULTY_WAT, id="process"),
]


@pytest.fixture
def host(otel: Otel, tmp_path: Path) -> Iterator[PluginHost]:  # noqa: F811
    # No warm spare: its start, in the background, is a trace of its own.
    with PluginHost(cache_dir=tmp_path / "cache", spare_workers=0) as h:
        yield h


def _load(host: PluginHost, otel: Otel, wat: str, isolation: str, cb: Any) -> Plugin:  # noqa: F811
    host.provide("cb", cb)
    plugin = host.load(
        wat.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="faulty", host_interfaces=("cb",)),
        isolation=isolation,  # type: ignore[arg-type]
    )
    otel.spans.clear()
    return plugin


def _lookup(otel: Otel | None, seen: list[str], kind: str) -> Any:  # noqa: F811
    """A host function ``cb`` (sync or ``async def``) that records the caller's
    ``REQUEST`` in ``seen``, inside an ``app.lookup`` span when ``otel`` is given."""

    def lookup(x: int) -> int:
        if otel is None:
            seen.append(REQUEST.get())
        else:
            with otel.tracer.start_as_current_span("app.lookup"):
                seen.append(REQUEST.get())
        return x + 1

    async def alookup(x: int) -> int:
        await asyncio.sleep(0)
        return lookup(x)

    return lookup if kind == "sync" else alookup


EXPECTED = [
    (0, "app.request"),
    (1, "wasmplug.call"),
    (2, "wasmplug.host_call"),
    (3, "app.lookup"),
]


@pytest.mark.parametrize(("isolation", "wat"), TIERS)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_host_function_under_call(
    host: PluginHost,
    otel: Otel,  # noqa: F811
    isolation: str,
    wat: str,
    kind: str,
) -> None:
    seen: list[str] = []
    plugin = _load(host, otel, wat, isolation, _lookup(otel, seen, kind))

    def request() -> Any:
        REQUEST.set("req-2")
        with otel.tracer.start_as_current_span("app.request"):
            return plugin.call("call-cb", 1)

    assert contextvars.copy_context().run(request) == 2
    assert seen == ["req-2"]
    assert otel.tree() == EXPECTED


@pytest.mark.parametrize(("isolation", "wat"), TIERS)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_host_function_under_acall(
    host: PluginHost,
    otel: Otel,  # noqa: F811
    isolation: str,
    wat: str,
    kind: str,
) -> None:
    seen: list[str] = []
    plugin = _load(host, otel, wat, isolation, _lookup(otel, seen, kind))

    async def request() -> int:
        REQUEST.set("req-1")
        with otel.tracer.start_as_current_span("app.request"):
            result: int = await plugin.acall("call-cb", 1)
            return result

    assert asyncio.run(request()) == 2
    assert seen == ["req-1"]
    assert otel.tree() == EXPECTED


@pytest.mark.parametrize(("isolation", "wat"), TIERS)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_contextvars_under_acall_without_opentelemetry(
    tmp_path: Path, isolation: str, wat: str, kind: str
) -> None:
    seen: list[str] = []

    async def request(plugin: Plugin) -> int:
        REQUEST.set("req-3")
        result: int = await plugin.acall("call-cb", 1)
        return result

    with PluginHost(cache_dir=tmp_path / "cache") as host:
        host.provide("cb", _lookup(None, seen, kind))
        plugin = host.load(
            wat.encode(),
            allow_unsigned=True,
            manifest=Manifest(name="faulty", host_interfaces=("cb",)),
            isolation=isolation,  # type: ignore[arg-type]
        )
        assert plugin._tel is None
        assert asyncio.run(request(plugin)) == 2
    assert seen == ["req-3"]

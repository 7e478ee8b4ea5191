"""Async host functions (``async def``), awaiting real I/O on 127.0.0.1.

Under ``acall`` the coroutine runs on the caller's event loop while a worker
thread holds the guest; under ``call`` it runs on the host's own loop. The
call's time limit bounds the wait, and cancelling the ``acall`` task cancels
the coroutine and fails the guest's call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import wat as w
from wasmplug import (
    Err,
    ErrorResult,
    HostFunctionError,
    Limits,
    Manifest,
    Plugin,
    PluginHost,
    PluginTimeout,
    WasmplugError,
)

IFACE = "demo:aio/host@0.1.0"
STR = w.P("string")
ASK = w.Func("ask", (("q", STR),), STR)
TRY_ASK = w.Func("try-ask", (("q", STR),), w.Result(STR, STR))
SPIN = w.Func("spin", (), None, "(loop $l (br $l))")
COMPONENT = w.component([SPIN], {IFACE: [ASK, TRY_ASK]}).encode()
# The same, importing a WASI interface that can block: its calls run on a call thread.
POLL_IMPORT = '(import "wasi:io/poll@0.2.0" (instance (export "pollable" (type (sub resource)))))'
THREADED = (
    w.component([SPIN], {IFACE: [ASK, TRY_ASK]})
    .replace("(component", f"(component\n  {POLL_IMPORT}", 1)
    .encode()
)
MANIFEST = Manifest(name="aio", host_interfaces=(IFACE,))


_CONNECTIONS: set[asyncio.StreamWriter] = set()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Upper-cases each line; a line ``hang`` gets no answer (until the client goes)."""
    _CONNECTIONS.add(writer)
    try:
        while line := await reader.readline():
            if line.strip() == b"hang":
                await reader.read()  # wait for EOF
                break
            writer.write(line.upper())
            await writer.drain()
    finally:
        _CONNECTIONS.discard(writer)
        writer.close()


async def _ask(port: int, q: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(q.encode() + b"\n")
        await writer.drain()
        return (await reader.readline()).decode().rstrip("\n")
    finally:
        writer.close()


class Server:
    """An asyncio line server on 127.0.0.1, on its own thread and loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        self.server: asyncio.Server | None = None

        async def start() -> None:
            self.server = await asyncio.start_server(_serve, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(start(), self.loop)
        assert ready.wait(5)

    def close(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            for writer in list(_CONNECTIONS):  # connections a hanging test left open
                if writer.transport.get_extra_info("sockname")[1] == self.port:
                    writer.close()
            await self.server.wait_closed()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture(params=["inprocess", "process"])
def any_host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PluginHost]:
    """A host of either isolation tier: host functions run in this process in both."""
    with PluginHost(cache_dir=tmp_path / "cache", isolation=request.param, spare_workers=0) as host:
        yield host


def provide(host: PluginHost, ask: Callable[[str], Awaitable[str]]) -> None:
    async def try_ask(q: str) -> str:
        if q == "no":
            raise Err("refused")
        return await ask(q)

    host.provide(IFACE, {"ask": ask, "try-ask": try_ask})


def load(host: PluginHost, timeout_ms: float = 2000, *, threaded: bool = False) -> Plugin:
    plugin = host.load(
        THREADED if threaded else COMPONENT,
        allow_unsigned=True,
        manifest=MANIFEST,
        limits=Limits(timeout_ms=timeout_ms),
    )
    assert bool(plugin.blocking_wasi) is threaded
    return plugin


def test_sync_call_runs_the_coroutine_on_the_hosts_loop(
    any_host: PluginHost, server: Server
) -> None:
    loops: list[Any] = []

    async def ask(q: str) -> str:
        loops.append(asyncio.get_running_loop())
        return await _ask(server.port, q)

    provide(any_host, ask)
    plugin = load(any_host)
    assert plugin.call("call-ask", "hello") == "HELLO"
    assert plugin.call("call-try-ask", "again") == "AGAIN"
    with pytest.raises(ErrorResult) as info:
        plugin.call("call-try-ask", "no")
    assert info.value.value == "refused"
    assert loops[0] is loops[1]  # one loop, owned by the host
    assert loops[0] is not server.loop


@pytest.mark.parametrize("threaded", [False, True], ids=["direct", "call-thread"])
def test_acall_runs_the_coroutine_on_the_callers_loop(any_host: PluginHost, threaded: bool) -> None:
    async def main() -> tuple[list[str], bool]:
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        here = asyncio.get_running_loop()
        on_caller_loop = []

        async def ask(q: str) -> str:
            on_caller_loop.append(asyncio.get_running_loop() is here)
            return await _ask(port, q)

        provide(any_host, ask)
        plugin = load(any_host, threaded=threaded)
        async with server:
            # The server runs on this loop too: the guest's host call can only be
            # answered if the loop stays free while the worker thread waits.
            results = await asyncio.gather(*(plugin.acall("call-ask", f"q{i}") for i in range(3)))
        return list(results), all(on_caller_loop) and len(on_caller_loop) == 3

    results, on_caller_loop = asyncio.run(main())
    assert results == ["Q0", "Q1", "Q2"]
    assert on_caller_loop


def test_a_sync_call_inside_a_running_loop_does_not_deadlock(
    host: PluginHost, server: Server
) -> None:
    async def ask(q: str) -> str:
        return await _ask(server.port, q)

    provide(host, ask)
    plugin = load(host)

    async def main() -> str:
        return plugin.call("call-ask", "inside")  # blocks this loop; the host's loop runs ask

    assert asyncio.run(main()) == "INSIDE"


@pytest.mark.parametrize("how", ["call", "acall"])
def test_the_time_limit_bounds_the_wait(any_host: PluginHost, server: Server, how: str) -> None:
    cancelled = threading.Event()

    async def ask(q: str) -> str:
        try:
            return await _ask(server.port, q)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    provide(any_host, ask)
    plugin = load(any_host, timeout_ms=200)
    start = time.monotonic()

    def hang() -> Any:
        if how == "call":
            return plugin.call("call-ask", "hang")
        return asyncio.run(plugin.acall("call-ask", "hang"))

    with pytest.raises(PluginTimeout, match="did not finish within"):
        hang()
    elapsed = time.monotonic() - start
    assert elapsed < 2.0, elapsed  # the budget (0.2 s) plus polling slack, not the server
    assert cancelled.wait(10)
    assert plugin.metrics().faults == {"timeout": 1}
    assert plugin.call("call-ask", "after") == "AFTER"  # a fresh instance


@pytest.mark.parametrize("threaded", [False, True], ids=["direct", "call-thread"])
def test_cancelling_acall_cancels_the_host_coroutine(
    host: PluginHost, server: Server, threaded: bool
) -> None:
    entered = threading.Event()
    cancelled = threading.Event()

    async def ask(q: str) -> str:
        entered.set()
        try:
            return await _ask(server.port, q)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    provide(host, ask)
    plugin = load(host, timeout_ms=30_000, threaded=threaded)

    async def main() -> float:
        task = asyncio.create_task(plugin.acall("call-ask", "hang"))
        deadline = time.monotonic() + 30
        while not entered.is_set():
            assert time.monotonic() < deadline, "the host function was never entered"
            await asyncio.sleep(0.005)
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - start

    assert asyncio.run(main()) < 1.0
    assert cancelled.wait(10)  # the coroutine saw the cancellation
    # The guest's call failed and its instance went away; the plugin still works.
    deadline = time.monotonic() + 5
    while plugin.metrics().instances and time.monotonic() < deadline:
        time.sleep(0.01)
    assert plugin.call("call-ask", "after") == "AFTER"


@pytest.mark.parametrize("threaded", [False, True], ids=["direct", "call-thread"])
def test_cancelling_acall_interrupts_a_spinning_guest(host: PluginHost, threaded: bool) -> None:
    async def ask(q: str) -> str:
        return q

    provide(host, ask)
    plugin = load(host, timeout_ms=60_000, threaded=threaded)

    async def main() -> None:
        task = asyncio.create_task(plugin.acall("spin"))
        deadline = time.monotonic() + 5
        while not host._services.ticker.running() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert host._services.ticker.running()  # the guest is now looping in its own code
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    # The guest was ended within a deadline slice, not at its 60 s limit: the
    # next call gets an instance at once (pool_size=1).
    start = time.monotonic()
    assert plugin.call("tick") == 1  # a fresh instance
    assert time.monotonic() - start < 5.0
    # The worker thread records the fault just after it discards the instance.
    deadline = time.monotonic() + 5
    while not plugin.metrics().faults and time.monotonic() < deadline:
        time.sleep(0.01)
    assert plugin.metrics().faults == {"interrupted": 1}


def test_an_async_host_function_that_raises(any_host: PluginHost) -> None:
    async def ask(q: str) -> str:
        await asyncio.sleep(0)
        raise LookupError(q)

    provide(any_host, ask)
    plugin = load(any_host)
    with pytest.raises(HostFunctionError) as info:
        plugin.call("call-ask", "boom")
    assert isinstance(info.value.__cause__, LookupError)
    with pytest.raises(HostFunctionError):
        asyncio.run(plugin.acall("call-ask", "boom"))


def test_closing_the_host_ends_a_wait_on_its_loop(tmp_path: Path, server: Server) -> None:
    """An untimed plugin waiting on the host's loop does not outlive the host's close()."""
    entered = threading.Event()

    async def ask(q: str) -> str:
        entered.set()
        return await _ask(server.port, q)

    host = PluginHost(cache_dir=tmp_path / "cache", limits=Limits.unlimited())
    provide(host, ask)
    plugin = host.load(COMPONENT, allow_unsigned=True, manifest=MANIFEST)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            plugin.call("call-ask", "hang")
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    assert entered.wait(5)
    start = time.monotonic()
    host.close()
    t.join(5)
    assert not t.is_alive()
    assert time.monotonic() - start < 3.0
    # The call failed with an ordinary error (the host function's coroutine was
    # cancelled), not asyncio.CancelledError, and did not hang.
    assert len(errors) == 1
    assert isinstance(errors[0], WasmplugError), repr(errors[0])

"""Outbound HTTP limits: the overall deadline of a request (a server that trickles
bytes cannot stretch it), the plugin's call budget, and the body size cap."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from support.http import Loader, Server, send, send_err
from support.timing import LOAD_SLACK_S
from wasmplug import Limits, Variant
from wasmplug._sandbox.http import (
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT_MS,
    HttpCapability,
)


def test_timeout(load: Loader, server: Server) -> None:
    start = time.monotonic()
    assert send_err(load(), f"{server.url}/slow?ms=3000", timeout_ms=100).case == "timeout"
    assert time.monotonic() - start < 1.5


def test_capability_ceiling_caps_the_request_timeout(load: Loader, server: Server) -> None:
    plugin = load(capability=HttpCapability(max_timeout_ms=100))
    start = time.monotonic()
    assert send_err(plugin, f"{server.url}/slow?ms=3000", timeout_ms=60_000).case == "timeout"
    assert time.monotonic() - start < 1.5


def test_a_fast_enough_response_is_not_a_timeout(load: Loader, server: Server) -> None:
    assert send(load(), f"{server.url}/slow?ms=10", timeout_ms=2000).body == b"late"


@pytest.mark.parametrize("length", ["yes", "no"])
def test_body_over_the_cap_is_too_large(load: Loader, server: Server, length: str) -> None:
    plugin = load(capability=HttpCapability(max_response_bytes=100_000))
    err = send_err(plugin, f"{server.url}/big?n=300000&length={length}")
    assert err == Variant("too-large", 100_000)
    assert len(send(plugin, f"{server.url}/big?n=100000&length={length}").body) == 100_000


def test_default_limits() -> None:
    cap = HttpCapability()
    assert (cap.max_timeout_ms, cap.max_response_bytes, cap.max_redirects) == (
        DEFAULT_TIMEOUT_MS,
        DEFAULT_MAX_RESPONSE_BYTES,
        DEFAULT_MAX_REDIRECTS,
    )
    assert (DEFAULT_TIMEOUT_MS, DEFAULT_MAX_RESPONSE_BYTES) == (10_000, 8 * 2**20)


def test_plugin_call_timeout_caps_the_budget(load: Loader, server: Server) -> None:
    # The plugin's per-call timeout is wall-clock time, host calls included: a
    # request may not outlive the call that made it.
    plugin = load(limits=Limits(timeout_ms=100))
    start = time.monotonic()
    assert send_err(plugin, f"{server.url}/slow?ms=3000").case == "timeout"
    assert time.monotonic() - start < 1.5


# ---------------------------------------------------------------------------
# One overall deadline: a server that trickles bytes cannot stretch a request
# ---------------------------------------------------------------------------

BUDGET_MS = 300
# The promise: err(timeout) within the budget + 100 ms (idle); plus room for a loaded machine.
SLACK_S = 0.100 + LOAD_SLACK_S
DRIP_S = 0.02  # one byte every 20 ms (3 s in all): far inside any per-read timeout


class Trickler:
    """A raw TCP server on 127.0.0.1 that answers in slow motion, one byte at a time,
    at the stage of the exchange the request path names (``/status``, ``/headers``,
    ``/chunk-size``, ``/body``, ``/silent``)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            path = request.split(b" ")[1].decode()
            head = b"HTTP/1.1 200 OK\r\n"
            if path == "/status":
                prefix, drip = b"", head + b"X-" + b"a" * 150
            elif path == "/headers":
                prefix, drip = head, b"X-Slow: " + b"a" * 150
            elif path == "/chunk-size":
                prefix = head + b"Transfer-Encoding: chunked\r\n\r\n1;ext="
                drip = b"e" * 150
            elif path == "/body":
                prefix, drip = head + b"Content-Length: 150\r\n\r\n", b"x" * 150
            else:  # /silent: never answers
                prefix, drip = b"", b""
            try:
                conn.sendall(prefix)
                for byte in drip:
                    if self.stop.wait(DRIP_S):
                        return
                    conn.sendall(bytes([byte]))
                self.stop.wait(30)
            except OSError:
                return  # the client closed the connection: what the tests want

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def trickler() -> Iterator[Trickler]:
    server = Trickler()
    yield server
    server.close()


@pytest.mark.parametrize("stage", ["status", "headers", "chunk-size", "body", "silent"])
def test_a_trickling_server_cannot_stretch_the_deadline(
    load: Loader, trickler: Trickler, stage: str
) -> None:
    plugin = load((trickler.url,))
    start = time.monotonic()
    err = send_err(plugin, f"{trickler.url}/{stage}", timeout_ms=BUDGET_MS)
    elapsed = time.monotonic() - start
    assert err.case == "timeout"
    assert elapsed < BUDGET_MS / 1000 + SLACK_S, f"took {elapsed * 1000:.0f} ms"


def test_the_call_budget_bounds_a_trickled_response_too(load: Loader, trickler: Trickler) -> None:
    plugin = load((trickler.url,), limits=Limits(timeout_ms=BUDGET_MS))
    start = time.monotonic()
    assert send_err(plugin, f"{trickler.url}/headers").case == "timeout"
    assert time.monotonic() - start < BUDGET_MS / 1000 + SLACK_S


def test_the_connection_is_closed_at_the_deadline(load: Loader, trickler: Trickler) -> None:
    """The server sees the client go away (its next write fails), and the
    capability works normally afterwards."""
    capability = HttpCapability()
    plugin = load((trickler.url, "http://127.0.0.1:*"), capability=capability)
    assert send_err(plugin, f"{trickler.url}/body", timeout_ms=BUDGET_MS).case == "timeout"
    # No connection is left half-read in the pool: a fresh one serves the next request.
    assert send_err(plugin, f"{trickler.url}/silent", timeout_ms=100).case == "timeout"


def test_transport_pins_httpx_private_pool() -> None:
    """``httpdeadline.transport`` swaps httpx's connection pool (``_pool``, private)
    for one on the deadline backend: pin that httpx still sends through it."""
    import httpcore
    import httpx

    from wasmplug._sandbox import httpdeadline

    t = httpdeadline.transport(httpx.create_ssl_context())
    assert isinstance(t._pool, httpcore.ConnectionPool)
    assert isinstance(t._pool._network_backend, httpdeadline._Backend)
    assert "self._pool.handle_request" in __import__("inspect").getsource(
        httpx.HTTPTransport.handle_request
    )

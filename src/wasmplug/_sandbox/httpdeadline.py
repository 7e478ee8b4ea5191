"""One overall deadline per outbound HTTP request, down to every socket operation.

httpx's timeouts are per operation: each read may wait the whole read timeout,
so a server that trickles its status line, its headers or its chunk-size lines
one byte at a time keeps a request alive as long as it keeps trickling. Here
the deadline is absolute. :func:`deadline` sets it for the requests the current
thread makes; the network backend below (an ``httpcore`` backend, the layer
under httpx's transport) caps every DNS lookup, connect, TLS handshake, read
and write at the time left, and once it has passed closes the connection and
raises httpcore's timeout. So nothing the server does, at any point of the
exchange (connect, headers, chunk framing, body, redirects), outlasts it.

DNS is resolved on a daemon thread the caller waits for with the time left:
``getaddrinfo`` has no timeout of its own, and a lookup that outlives the
deadline is abandoned (the thread ends when the resolver gives up).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

__all__ = ["deadline", "transport"]

_local = threading.local()


@contextlib.contextmanager
def deadline(at: float) -> Iterator[None]:
    """Every request this thread sends inside the block ends by ``at`` (``time.monotonic()``)."""
    prev = getattr(_local, "at", None)
    _local.at = at
    try:
        yield
    finally:
        _local.at = prev


def _left(timeout: float | None, error: type[Exception], stream: Any = None) -> float | None:
    """``timeout`` capped at the time left before the thread's deadline.

    Raises:
        error: the deadline has passed (``stream``, if given, is closed first).
    """
    at: float | None = getattr(_local, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        if stream is not None:
            stream.close()
        raise error("the request's overall deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout, self._inner))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout, self._inner))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout, self._inner)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's sync backend, with lookups, connects and streams bound by the deadline."""

    def __init__(self) -> None:
        self._sync = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _resolve(host, port, _left(timeout, httpcore.ConnectTimeout))
        last: Exception | None = None
        for address in addresses:
            try:
                stream = self._sync.connect_tcp(
                    address,
                    port,
                    _left(timeout, httpcore.ConnectTimeout),
                    local_address,
                    socket_options,
                )
            except httpcore.ConnectError as e:
                last = e
                continue
            return _Stream(stream)
        raise last or httpcore.ConnectError(f"no address for {host!r}")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:  # pragma: no cover - never configured (no uds)
        raise httpcore.ConnectError("unix sockets are not used for plugin requests")

    def sleep(self, seconds: float) -> None:  # pragma: no cover - no retries configured
        time.sleep(seconds)


def _resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """The addresses of ``host`` (IP literals as they are), looked up within ``timeout`` s."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [host.strip("[]")]
    box: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as e:
            box.append(e)
        finally:
            done.set()

    threading.Thread(target=lookup, name="wasmplug-dns", daemon=True).start()
    if not done.wait(timeout):
        raise httpcore.ConnectTimeout(f"looking up {host!r} took past the request's deadline")
    result = box[0]
    if isinstance(result, OSError):
        raise httpcore.ConnectError(str(result))
    seen: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in result:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def transport(ssl_context: ssl.SSLContext) -> httpx.HTTPTransport:
    """httpx's own transport (its exception mapping and response streams), over the
    deadline backend.

    ``HTTPTransport`` takes no network backend, so its connection pool is rebuilt
    with the same settings and this backend; ``tests/sandbox`` pins that
    ``_pool`` is what it sends through.
    """
    t = httpx.HTTPTransport(verify=ssl_context, trust_env=False)
    t._pool = httpcore.ConnectionPool(  # httpx's defaults (DEFAULT_LIMITS)
        ssl_context=ssl_context,
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=_Backend(),
    )
    return t

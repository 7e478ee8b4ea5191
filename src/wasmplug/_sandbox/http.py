"""Outbound HTTP for plugins: the ``wasmplug:host/http@0.1.0`` interface, with an allow-list.

``wasi:http`` is never linked for plugins: wasmtime's implementation has no
host allow-list. Plugins instead import this wasmplug-owned interface (WIT in
``wasmplug/wit/http.wit``), and :class:`HttpCapability` implements it in
Python on httpx. Every request, and every redirect hop, is checked against the
calling plugin's effective ``allowed_outbound_hosts`` (declared ∩ granted,
Spin syntax, see :mod:`wasmplug._sandbox.urlpattern`) *before* anything goes on the
wire. A denied request returns ``err(denied(...))`` to the plugin; it is never
dropped silently.

Conventions: durations are in milliseconds (as in :class:`~wasmplug.Limits`),
sizes in bytes. Header names in responses are lowercase.
"""

from __future__ import annotations

import functools
import http.cookiejar
import importlib.resources
import logging
import re
import ssl
import threading
import time
from collections.abc import Iterable
from importlib.resources.abc import Traversable
from typing import Any, NoReturn

import httpx

from wasmplug import _telemetry
from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge.values import Err, Variant

from .capabilities import HTTP_INTERFACE
from .httpdeadline import deadline as _deadline
from .httpdeadline import transport as _deadline_transport
from .urlpattern import DEFAULT_PORTS, HostPattern, compile_patterns, first_match

__all__ = [
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT_MS",
    "HTTP_INTERFACE",
    "HttpCapability",
    "wit_file",
]

log = logging.getLogger("wasmplug.http")

DEFAULT_TIMEOUT_MS = 10_000
"""Longest a request may take, everything included, unless configured (10 s)."""

DEFAULT_MAX_RESPONSE_BYTES = 8 * 2**20
"""Largest response body returned to a plugin unless configured (8 MiB)."""

DEFAULT_MAX_REDIRECTS = 5
"""Redirects followed for one request unless configured."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Request headers the host owns: the connection (hop-by-hop headers, RFC 9110
# §7.6.1), the framing (Content-Length, Transfer-Encoding) and the target
# (Host: overriding it would send the request to another virtual host than the
# one the allow-list checked). They are dropped from the plugin's request.
_HOST_OWNED_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "host",
        "http2-settings",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Dropped when a redirect leaves the origin (scheme, host, port), as browsers do.
_CREDENTIAL_HEADERS = frozenset({b"authorization", b"cookie", b"proxy-authorization"})

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token; use fullmatch
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")


def wit_file() -> Traversable:
    """The shipped WIT text of :data:`HTTP_INTERFACE`, for building plugins against it."""
    return importlib.resources.files("wasmplug") / "wit" / "http.wit"


class _Denied(Exception):
    pass


def _short(text: str, limit: int = 200) -> str:
    """``repr(text)``, cut to about ``limit`` characters for error messages."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _fail(case: str, value: Any = None) -> NoReturn:
    raise Err(Variant(case, value))


@functools.lru_cache(maxsize=256)
def _compiled(texts: tuple[str, ...]) -> tuple[HostPattern, ...]:
    patterns, problems = compile_patterns(texts)
    for problem in problems:
        log.warning("ignoring invalid allowed-outbound-hosts pattern %s", problem)
    return patterns


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS settings, built once per process (building one costs ~50 ms)."""
    return httpx.create_ssl_context(trust_env=False)


def _no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that never stores anything, so no cookie crosses from one request
    (or one plugin) to the next."""
    policy = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
    return http.cookiejar.CookieJar(policy=policy)


def _origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    return url.scheme, url.raw_host, url.port or DEFAULT_PORTS.get(url.scheme)


class HttpCapability:
    """The host side of ``wasmplug:host/http@0.1.0``: outbound HTTP through an allow-list.

    Provide it to a host (``host.provide(HTTP_INTERFACE, HttpCapability())``);
    a plugin that declares the interface, and whose manifest declares
    ``allowed-outbound-hosts`` that the application also grants, can then send
    requests to those hosts, and only those.

    Per request:

    * The URL must be absolute ``http``/``https``; otherwise ``err(invalid-url)``.
    * Scheme, host and effective port must match one of the calling plugin's
      effective patterns; otherwise ``err(denied)``, naming the URL and the
      plugin, and nothing is sent. Called outside any plugin call, every
      request is denied.
    * Redirects (301, 302, 303, 307, 308) are followed by the host, at most
      ``max_redirects`` of them, and every hop is checked like the first
      request; a hop to a place off the allow-list is ``err(denied)``. 303,
      and 301/302 after a ``POST``, continue as a body-less ``GET``.
      ``Authorization`` and ``Cookie`` are dropped when a hop changes origin.
    * The whole exchange (DNS lookup, connecting, TLS, every hop, status line,
      headers, chunk framing and body) gets one budget: the smallest of the
      request's ``timeout-ms``, ``max_timeout_ms`` and the plugin's per-call
      ``Limits.timeout_ms`` (past which the plugin would be interrupted
      anyway). It is an absolute deadline: every socket operation waits at most
      the time left, and at the deadline the connection is closed, so a server
      that trickles bytes cannot stretch it. Running out is ``err(timeout)``.
      (With a custom ``transport``, its own timeouts apply instead, and the
      budget is checked between hops and body chunks.)
    * The body is read as a stream, and a response whose body exceeds
      ``max_response_bytes`` is ``err(too-large(max_response_bytes))``: it is
      never held in full.
    * The body is returned as sent: the host asks for ``Accept-Encoding:
      identity`` unless the plugin sets that header, and never decompresses.
    * Host-owned request headers (``Host``, ``Content-Length``, ``Connection``,
      ``Transfer-Encoding`` and other hop-by-hop headers) are dropped; invalid
      header names or values, and the ``CONNECT`` method, are
      ``err(invalid-request)``.
    * No proxy, ``.netrc`` credentials or CA settings are taken from the
      environment (``trust_env=False``), and no cookies are stored between
      requests, so nothing leaks from one plugin to another.

    The connection pool is shared and thread-safe: plugins may call from many
    threads at once.

    Args:
        max_timeout_ms: Ceiling of any request's budget, in milliseconds.
        max_response_bytes: Largest response body returned, in bytes.
        max_redirects: Redirects followed per request (0 returns 3xx responses
            to the plugin as they are).
        user_agent: ``User-Agent`` sent when the plugin sets none.
        ssl_context: TLS settings; by default httpx's (certifi's CA bundle,
            certificates verified).
        transport: An httpx transport to send through instead of httpx's own
            (for a custom network setup; the allow-list is still applied).
    """

    interface = HTTP_INTERFACE

    def __init__(
        self,
        *,
        max_timeout_ms: float = DEFAULT_TIMEOUT_MS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        user_agent: str = "wasmplug",
        ssl_context: ssl.SSLContext | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not max_timeout_ms > 0:
            raise ValueError(f"max_timeout_ms must be positive, got {max_timeout_ms!r}")
        if max_response_bytes < 0:
            raise ValueError(f"max_response_bytes must be >= 0, got {max_response_bytes!r}")
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, got {max_redirects!r}")
        self.max_timeout_ms = max_timeout_ms
        self.max_response_bytes = max_response_bytes
        self.max_redirects = max_redirects
        self.user_agent = user_agent
        self._ssl_context = ssl_context
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- the WIT function ----------------------------------------------------------------

    def send(self, req: Any) -> dict[str, Any]:
        """``send: func(req: request) -> result<response, http-error>``.

        Args:
            req: The WIT ``request`` record (attributes ``method``, ``url``,
                ``headers``, ``body``, ``timeout_ms``).

        Returns:
            The ``response`` record: ``status``, ``headers`` (lowercase names,
            in order, repeats kept) and ``body`` (bytes).

        Raises:
            Err: carrying a ``Variant`` of ``http-error``; the plugin receives
                it as the ``err`` case.
        """
        inst = _callctx.current()
        plugin = getattr(inst, "plugin", None)
        name = getattr(plugin, "name", None)
        sandbox = getattr(plugin, "sandbox", None)
        texts: tuple[str, ...] = tuple(getattr(sandbox, "allowed_outbound_hosts", ()))
        patterns = _compiled(texts)
        budget_ms = self.max_timeout_ms
        if req.timeout_ms is not None:
            budget_ms = min(budget_ms, req.timeout_ms)
        call_ms = getattr(getattr(plugin, "limits", None), "timeout_ms", None)
        if call_ms is not None:
            budget_ms = min(budget_ms, call_ms)
        deadline = time.monotonic() + budget_ms / 1000
        who = f"plugin {name!r}" if name is not None else "code outside any plugin call"

        url = self._parse_url(req.url)
        method = self._check_method(req.method)
        headers = self._headers(req.headers)
        body = None if req.body is None else bytes(req.body)
        # The span names the host only: never the path, the query or a body.
        where = {
            "http.request.method": method,
            "server.address": url.host,
            "url.scheme": url.scheme,
        }
        try:
            with (
                _telemetry.span("wasmplug.http", where, messages=False) as span,
                _deadline(deadline),
            ):
                response = self._exchange(who, patterns, method, url, headers, body, deadline)
                if span is not None:
                    span.set_attribute("http.response.status_code", response["status"])
                return response
        except _Denied as e:
            log.info("%s", e)
            _fail("denied", str(e))
        except httpx.TimeoutException:
            _fail("timeout")
        except httpx.UnsupportedProtocol as e:
            _fail("invalid-url", str(e))
        except httpx.LocalProtocolError as e:
            _fail("invalid-request", str(e))
        except httpx.TransportError as e:
            if time.monotonic() >= deadline:
                _fail("timeout")  # the connection was cut at the deadline
            _fail("transport", f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        except httpx.InvalidURL as e:
            _fail("invalid-url", str(e))

    # -- validation ----------------------------------------------------------------------

    @staticmethod
    def _parse_url(text: str) -> httpx.URL:
        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, TypeError, ValueError) as e:
            _fail("invalid-url", f"{_short(text)}: {e}")
        if url.scheme not in DEFAULT_PORTS:
            _fail(
                "invalid-url",
                f"{_short(text)}: only absolute http:// and https:// URLs are supported",
            )
        if not url.raw_host:
            _fail("invalid-url", f"{_short(text)}: the URL has no host")
        if url.port is not None and not 0 < url.port < 65536:
            _fail("invalid-url", f"{_short(text)}: port {url.port} is outside 1-65535")
        return url.copy_with(fragment=None)

    @staticmethod
    def _check_method(method: str) -> str:
        if not _TOKEN_RE.fullmatch(method):
            _fail("invalid-request", f"{_short(method)} is not a valid HTTP method")
        if method.upper() == "CONNECT":
            _fail("invalid-request", "the CONNECT method (tunnels) is not supported")
        return method

    @staticmethod
    def _headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
        out = []
        for name, value in pairs:
            if not _TOKEN_RE.fullmatch(name):
                _fail("invalid-request", f"{_short(name)} is not a valid header name")
            if _BAD_VALUE_RE.search(value):
                _fail("invalid-request", f"header {name!r}: value contains CR, LF or NUL")
            if name.lower() in _HOST_OWNED_HEADERS:
                continue
            out.append((name.encode("ascii"), value.encode("utf-8")))
        return out

    # -- the exchange ----------------------------------------------------------------------

    def _client_for_use(self) -> httpx.Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                _fail("transport", "the HTTP capability was closed by the application")
            if self._client is None:
                transport = self._transport
                if transport is None:
                    transport = _deadline_transport(self._ssl_context or _default_ssl_context())
                self._client = httpx.Client(
                    transport=transport,
                    trust_env=False,
                    follow_redirects=False,
                    cookies=_no_cookies(),
                    headers={
                        "user-agent": self.user_agent,
                        "accept-encoding": "identity",
                    },
                )
            return self._client

    def _exchange(
        self,
        who: str,
        patterns: tuple[HostPattern, ...],
        method: str,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        deadline: float,
    ) -> dict[str, Any]:
        client = self._client_for_use()
        hop = 0
        while True:
            host = url.raw_host.decode("ascii", errors="replace")
            if first_match(patterns, url.scheme, host, url.port) is None:
                where = f"{url} (redirect {hop})" if hop else str(url)
                granted = ", ".join(p.text for p in patterns) or "none"
                raise _Denied(
                    f"{who} may not send requests to {where}: its scheme, host and port "
                    f"match none of its allowed outbound hosts ({granted})"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _fail("timeout")
            request = client.build_request(
                method, url, headers=headers, content=body, timeout=httpx.Timeout(remaining)
            )
            try:
                response = client.send(request, stream=True)
            except RuntimeError as e:  # closed by the application meanwhile
                _fail("transport", str(e))
            try:
                status = response.status_code
                location = response.headers.get("location")
                if status not in _REDIRECTS or location is None or self.max_redirects == 0:
                    return {
                        "status": status,
                        "headers": response.headers.multi_items(),
                        "body": self._read_body(response, deadline),
                    }
            finally:
                response.close()
            if hop >= self.max_redirects:
                _fail("transport", f"more than {self.max_redirects} redirects, the last from {url}")
            try:
                target = url.join(location)
            except httpx.InvalidURL as e:
                _fail("invalid-url", f"redirect from {url} to {location!r}: {e}")
            next_url = self._parse_url(str(target))
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, body = "GET", None
                headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
            if _origin(next_url) != _origin(url):
                headers = [(k, v) for k, v in headers if k.lower() not in _CREDENTIAL_HEADERS]
            url = next_url
            hop += 1

    def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        cap = self.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            _fail("too-large", cap)
        chunks = []
        total = 0
        for chunk in response.iter_raw():
            total += len(chunk)
            if total > cap:
                _fail("too-large", cap)
            chunks.append(chunk)
            if time.monotonic() > deadline:
                _fail("timeout")
        return b"".join(chunks)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool. Later requests fail with ``err(transport)``. Idempotent."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> HttpCapability:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<wasmplug.HttpCapability timeout<={self.max_timeout_ms} ms, "
            f"body<={self.max_response_bytes} bytes, redirects<={self.max_redirects}>"
        )

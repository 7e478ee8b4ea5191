"""Shared pieces of the outbound-HTTP tests: a real HTTP server on 127.0.0.1 and a
component that imports ``wasmplug:host/http`` and forwards ``call-send`` to it.

The fixtures that use them are in ``tests/sandbox/conftest.py``.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import wat as w
from wasmplug import ErrorResult, Plugin, Variant
from wasmplug._sandbox.http import HTTP_INTERFACE

# ---------------------------------------------------------------------------
# A real HTTP server on 127.0.0.1
# ---------------------------------------------------------------------------


class Server:
    """The test server: its base URL, port, and a log of the requests it received."""

    def __init__(self, httpd: ThreadingHTTPServer, stop: threading.Event) -> None:
        self.httpd = httpd
        self.stop = stop
        self.port: int = httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def paths(self) -> list[str]:
        with self.lock:
            return [entry["path"] for entry in self.log]


GZIP_PLAIN = b"hello, " * 100
GZIPPED = gzip.compress(GZIP_PLAIN, mtime=0)


class Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        srv: Server = self.server.owner
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": [(k.lower(), v) for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        with srv.lock:
            srv.log.append(entry)
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = parts.path
        if route == "/json":
            self._send(200, json.dumps({"ok": True}).encode(), [("X-Test", "a"), ("X-Test", "b")])
        elif route == "/echo":
            self._send(200, json.dumps(entry).encode())
        elif route == "/big":
            n = int(query["n"])
            if query.get("length") == "no":
                self.send_response(200)
                self.end_headers()
                for i in range(0, n, 65536):
                    self.wfile.write(b"x" * min(65536, n - i))
            else:
                self._send(200, b"x" * n)
        elif route == "/redirect":
            code = int(query.get("code", "302"))
            self._send(code, b"", [("Location", query["to"])])
        elif route == "/loop":
            self._send(302, b"", [("Location", "/loop")])
        elif route == "/slow":
            srv.stop.wait(int(query["ms"]) / 1000)
            self._send(200, b"late")
        elif route == "/gzip":  # a compressed body, whatever the client asked for
            self._send(200, GZIPPED, [("Content-Encoding", "gzip")])
        elif route == "/set-cookie":
            self._send(200, b"", [("Set-Cookie", "session=secret; Path=/")])
        else:
            self._send(404, b"no such route")

    def _send(self, code: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815


# ---------------------------------------------------------------------------
# A component that imports wasmplug:host/http and forwards to it
# ---------------------------------------------------------------------------

S = w.P("string")
HEADERS = w.List(w.Tuple((S, S)))
BYTES = w.List(w.P("u8"))
REQUEST = w.Record(
    "request",
    (
        ("method", S),
        ("url", S),
        ("headers", HEADERS),
        ("body", w.Option(BYTES)),
        ("timeout-ms", w.Option(w.P("u32"))),
    ),
)
RESPONSE = w.Record("response", (("status", w.P("u16")), ("headers", HEADERS), ("body", BYTES)))
HTTP_ERROR = w.Variant(
    "http-error",
    (
        ("denied", S),
        ("invalid-url", S),
        ("timeout", None),
        ("too-large", w.P("u64")),
        ("transport", S),
        ("invalid-request", S),
    ),
)
SEND = w.Func("send", (("req", REQUEST),), w.Result(RESPONSE, HTTP_ERROR))
COMPONENT = w.component([], {HTTP_INTERFACE: [SEND]}).encode()

Loader = Callable[..., Plugin]


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    """The test server on 127.0.0.1 (a free port), serving on a thread until the block ends."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    stop = threading.Event()
    srv = Server(httpd, stop)
    httpd.owner = srv  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def send(
    plugin: Plugin,
    url: str,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    timeout_ms: int | None = None,
) -> Any:
    return plugin.call(
        "call-send",
        {
            "method": method,
            "url": url,
            "headers": headers or [],
            "body": body,
            "timeout-ms": timeout_ms,
        },
    )


def send_err(plugin: Plugin, url: str, **kwargs: Any) -> Variant:
    with pytest.raises(ErrorResult) as info:
        send(plugin, url, **kwargs)
    assert isinstance(info.value.value, Variant)
    return info.value.value


# ---------------------------------------------------------------------------
# TLS: a self-signed certificate and a one-route HTTPS server on loopback
# ---------------------------------------------------------------------------


def self_signed(directory: Path, ip: str) -> tuple[Path, Path]:
    """Write a self-signed certificate for ``ip`` (and its key) as PEM files; return them."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextlib.contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """The test server's routes over HTTPS on 127.0.0.1; yields its port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.owner = Server(httpd, threading.Event())  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

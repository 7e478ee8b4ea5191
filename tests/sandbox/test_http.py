"""Outbound HTTP: the allow-list patterns, and the ``wasmplug:host/http`` capability end to end.

The capability is driven through a real component (a WAT component that
imports ``wasmplug:host/http@0.1.0`` and exports ``call-send``, which forwards
its argument to the host's ``send`` and returns the result), so every request
crosses the canonical ABI both ways. The server is a real
``ThreadingHTTPServer`` on 127.0.0.1; no test contacts any other address
(denied requests never leave the host, which the server's request log proves).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wat as w
from wasmplug import (
    Err,
    ErrorResult,
    Grants,
    Limits,
    LinkError,
    Manifest,
    Plugin,
    PluginHost,
    Variant,
)
from wasmplug._sandbox.http import (
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT_MS,
    HTTP_INTERFACE,
    HttpCapability,
    wit_file,
)
from wasmplug._sandbox.manifest import _check_host_pattern
from wasmplug._sandbox.urlpattern import (
    PatternError,
    compile_patterns,
    first_match,
    normalize_host,
    parse_pattern,
)

# ---------------------------------------------------------------------------
# Patterns: parsing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "host", "subdomains", "port"),
    [
        ("https://api.example.com", "https", "api.example.com", False, 443),
        ("http://api.example.com", "http", "api.example.com", False, 80),
        ("https://api.example.com/", "https", "api.example.com", False, 443),
        ("HTTPS://API.Example.COM", "https", "api.example.com", False, 443),
        ("https://*.example.org:8443", "https", "example.org", True, 8443),
        ("http://127.0.0.1:8080", "http", "127.0.0.1", False, 8080),
        ("https://[::1]:8443", "https", "::1", False, 8443),
        ("https://[0:0:0:0:0:0:0:1]", "https", "::1", False, 443),
        ("*://api.example.com:*", None, "api.example.com", False, "*"),
        ("*://api.example.com", None, "api.example.com", False, "default"),
        ("*://*:*", None, None, False, "*"),
        ("https://*", "https", None, False, 443),
        ("http://localhost:3000", "http", "localhost", False, 3000),
        ("https://example.com.", "https", "example.com", False, 443),
        ("https://xn--bcher-kva.example", "https", "xn--bcher-kva.example", False, 443),
    ],
)
def test_valid_patterns(
    text: str, scheme: str | None, host: str | None, subdomains: bool, port: object
) -> None:
    p = parse_pattern(text)
    assert (p.scheme, p.host, p.subdomains, p.port) == (scheme, host, subdomains, port)
    assert str(p) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("api.example.com", "no scheme"),
        ("*", "no scheme"),
        ("", "no scheme"),
        ("ftp://example.com", "scheme may only be"),
        ("postgres://db.example.com:5432", "scheme may only be"),
        ("https://example.com/api", "not a path"),
        ("https://example.com?q=1", "not a path"),
        ("https://example.com#x", "not a path"),
        ("https://user@example.com", "user info"),
        ("https://", "host is empty"),
        ("https://:443", "host is empty"),
        ("https://a*.example.com", "only as the whole host"),
        ("https://api.*.example.com", "only as the whole host"),
        ("https://*.*", "only as the whole host"),
        ("https://*.127.0.0.1", "in front of an IP address"),
        ("https://127.1", "neither a dotted IPv4"),
        ("https://1.2.3.999", "neither a dotted IPv4"),
        ("https://0x7f.1", "neither a dotted IPv4"),
        ("https://-bad-.example.com", "not a valid host name"),
        ("https://a..b", "not a valid host name"),
        ("https://under_score.example.com", "not a valid host name"),
        ("https://bücher.example", "IDNA"),
        ("https://::1", "in brackets"),
        ("https://[::1", "closed with"),
        ("https://[nope]", "not an IPv6 address"),
        ("https://[fe80::1%eth0]", "zone index"),
        ("https://[::1]x", "after the IPv6"),
        ("https://example.com:", "not a number"),
        ("https://example.com:0", "outside 1-65535"),
        ("https://example.com:65536", "outside 1-65535"),
        ("https://example.com:8000..8999", "not a number"),
        ("https://example.com:-1", "not a number"),
        ("https://exa mple.com", "whitespace"),
        ("https://example.com\n", "whitespace"),
    ],
)
def test_invalid_patterns(text: str, why: str) -> None:
    with pytest.raises(PatternError, match=re.escape(why)):
        parse_pattern(text)


def test_compile_patterns_keeps_the_valid_ones() -> None:
    patterns, problems = compile_patterns(["https://a.example", "nope", "http://b.example:81"])
    assert [p.text for p in patterns] == ["https://a.example", "http://b.example:81"]
    assert len(problems) == 1
    assert "'nope'" in problems[0]


# ---------------------------------------------------------------------------
# Patterns: matching
# ---------------------------------------------------------------------------

MATCHES = [
    # pattern, url (scheme, host, explicit port or None), allowed
    ("https://api.example.com", ("https", "api.example.com", None), True),
    ("https://api.example.com", ("https", "API.EXAMPLE.COM", None), True),
    ("https://api.example.com", ("https", "api.example.com.", None), True),
    ("https://api.example.com", ("https", "api.example.com", 443), True),
    ("https://api.example.com", ("http", "api.example.com", None), False),
    ("https://api.example.com", ("https", "api.example.com", 8443), False),
    ("https://api.example.com", ("https", "example.com", None), False),
    ("https://api.example.com", ("https", "x.api.example.com", None), False),
    ("https://api.example.com", ("https", "api.example.com.evil.net", None), False),
    ("https://api.example.com", ("https", "evilapi.example.com", None), False),
    ("https://*.example.org:8443", ("https", "a.example.org", 8443), True),
    ("https://*.example.org:8443", ("https", "a.b.example.org", 8443), True),
    ("https://*.example.org:8443", ("https", "example.org", 8443), False),
    ("https://*.example.org:8443", ("https", "badexample.org", 8443), False),
    ("https://*.example.org:8443", ("https", "a.example.org", None), False),
    ("https://*.example.org:8443", ("http", "a.example.org", 8443), False),
    ("https://*.example.org:8443", ("https", ".example.org", 8443), False),
    ("https://*.example.org:8443", ("https", "a..example.org", 8443), False),
    ("https://*.example.org:8443", ("https", "a.example.org\n", 8443), False),
    ("http://127.0.0.1:8080", ("http", "127.0.0.1", 8080), True),
    ("http://127.0.0.1:8080", ("http", "localhost", 8080), False),
    ("http://127.0.0.1:8080", ("http", "127.1", 8080), False),
    ("http://127.0.0.1:8080", ("http", "127.0.0.1", 8081), False),
    ("http://localhost:8080", ("http", "127.0.0.1", 8080), False),
    ("https://[::1]:8443", ("https", "::1", 8443), True),
    ("https://[::1]:8443", ("https", "[0:0::1]", 8443), True),
    ("https://[::1]:8443", ("https", "127.0.0.1", 8443), False),
    ("*://api.example.com", ("http", "api.example.com", None), True),
    ("*://api.example.com", ("https", "api.example.com", None), True),
    ("*://api.example.com", ("https", "api.example.com", 80), False),
    ("*://api.example.com", ("ftp", "api.example.com", None), False),
    ("*://api.example.com:*", ("http", "api.example.com", 8000), True),
    ("http://api.example.com:*", ("http", "api.example.com", 1), True),
    ("http://api.example.com:*", ("https", "api.example.com", 1), False),
    ("*://*:*", ("https", "anything.example", 1234), True),
    ("*://*:*", ("http", "10.0.0.1", None), True),
    ("*://*:*", ("file", "localhost", None), False),
    ("https://*", ("https", "anything.example", None), True),
    ("https://*", ("https", "anything.example", 8443), False),
    ("https://*.example.org", ("https", "1.2.3.4", None), False),
]


@pytest.mark.parametrize(("pattern", "url", "allowed"), MATCHES, ids=lambda v: str(v))
def test_matching(pattern: str, url: tuple[str, str, int | None], allowed: bool) -> None:
    assert parse_pattern(pattern).matches(*url) is allowed


def test_first_match_returns_the_matching_pattern() -> None:
    patterns, _ = compile_patterns(["https://a.example", "https://*.b.example"])
    assert first_match(patterns, "https", "x.b.example", None) is patterns[1]
    assert first_match(patterns, "https", "c.example", None) is None
    assert first_match((), "https", "a.example", None) is None


def test_normalize_host() -> None:
    assert normalize_host("[0:0::1]") == "::1"
    assert normalize_host("Example.COM.") == "example.com"
    assert normalize_host("127.0.0.1") == "127.0.0.1"
    assert normalize_host("a..") == "a.."


def test_the_manifest_validates_patterns_with_the_same_parser() -> None:
    for text in ["https://*.example.org:8443", "*://*:*", "http://[::1]:80", "https://a-b.c"]:
        assert _check_host_pattern(text) is None
        parse_pattern(text)
    for text in ["http://127.1", "https://a..b", "http://x:0", "ftp://x", "https://x/path"]:
        problem = _check_host_pattern(text)
        assert problem is not None
        assert text in problem


_LABEL = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_IPV4 = st.ip_addresses(v=4).map(str)
_IPV6 = st.ip_addresses(v=6).map(str)
_HOSTISH = st.one_of(
    _DOMAIN,
    _IPV4,
    _IPV6,
    _IPV6.map(lambda a: f"[{a}]"),
    st.builds(lambda a, b: f"{a}.{b}", _LABEL, _DOMAIN),
    st.text(alphabet="abcxyz.-_*:[]%@/0123456789ABC", max_size=30),
    st.text(max_size=20),
)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_parse_pattern_never_crashes(text: str) -> None:
    try:
        p = parse_pattern(text)
    except PatternError:
        return
    assert p.scheme in (None, "http", "https")
    assert p.port == "*" or p.port == "default" or 1 <= int(p.port) <= 65535


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["http", "https", "*"]),
    st.one_of(_DOMAIN, _IPV4, _IPV6.map(lambda a: f"[{a}]"), st.just("*")),
    st.booleans(),
    st.one_of(st.none(), st.just("*"), st.integers(1, 65535)),
    st.sampled_from(["http", "https", "ftp", "HTTPS"]),
    _HOSTISH,
    st.one_of(st.none(), st.integers(0, 70000)),
)
def test_a_pattern_never_matches_a_different_host(
    scheme: str,
    host: str,
    wildcard: bool,
    port: int | str | None,
    url_scheme: str,
    url_host: str,
    url_port: int | None,
) -> None:
    wildcard = wildcard and host != "*" and not host.startswith("[") and "." in host
    wildcard = wildcard and not all(c.isdigit() or c == "." for c in host)
    text = f"{scheme}://{'*.' if wildcard else ''}{host}{'' if port is None else f':{port}'}"
    p = parse_pattern(text)
    allowed = p.matches(url_scheme, url_host, url_port)
    if not allowed:
        return
    got = normalize_host(url_host)
    if host == "*":
        assert p.host is None
    elif wildcard:
        assert got.endswith("." + host)
        assert got != host
        assert not _is_ip(got)
    else:
        assert got == normalize_host(host)
    assert url_scheme.lower() in ("http", "https")
    if scheme != "*":
        assert url_scheme.lower() == scheme
    if isinstance(port, int):
        assert url_port == port or (url_port is None and port == {"http": 80, "https": 443}[scheme])


def test_a_pattern_matches_its_own_target() -> None:
    @settings(max_examples=30, deadline=None)
    @given(
        st.sampled_from(["http", "https"]),
        st.one_of(_DOMAIN, _IPV4, _IPV6.map(lambda a: f"[{a}]")),
        st.integers(1, 65535),
    )
    def check(scheme: str, host: str, port: int) -> None:
        assert parse_pattern(f"{scheme}://{host}:{port}").matches(scheme, host, port)

    check()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------
# The WIT file
# ---------------------------------------------------------------------------


def test_wit_file_is_shipped_and_declares_the_interface() -> None:
    text = wit_file().read_text(encoding="utf-8")
    assert "package wasmplug:host@0.1.0;" in text
    assert HTTP_INTERFACE == "wasmplug:host/http@0.1.0"
    for name in ["record request", "record response", "variant http-error", "send: func"]:
        assert name in text


def test_wit_file_parses_and_matches_the_test_component(tmp_path: Path) -> None:
    wit = tmp_path / "wit"
    wit.mkdir()
    (wit / "http.wit").write_text(wit_file().read_text(encoding="utf-8"))
    (wit / "world.wit").write_text("package wasmplug:host@0.1.0;\nworld t { import http; }\n")
    subprocess.run(
        ["componentize-py", "-d", str(wit), "-w", "t", "bindings", str(tmp_path / "out")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    generated = (tmp_path / "out" / "wit_world" / "imports" / "http.py").read_text()
    fields = re.findall(r"^    (\w+): ", generated, re.MULTILINE)
    assert fields[:8] == [
        "method",
        "url",
        "headers",
        "body",
        "timeout_ms",
        "status",
        "headers",
        "body",
    ]
    cases = re.findall(r"^class HttpError_(\w+):", generated, re.MULTILINE)
    assert cases == [w_case.title().replace("-", "") for w_case, _ in HTTP_ERROR.cases]


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


@pytest.fixture(scope="module")
def server_instance() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    stop = threading.Event()
    srv = Server(httpd, stop)
    httpd.owner = srv  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield srv
    stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def server(server_instance: Server) -> Server:
    with server_instance.lock:
        server_instance.log.clear()
    return server_instance


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


@pytest.fixture(scope="module")
def http_host() -> Iterator[PluginHost]:
    """One host for the module: the component compiles once (no disk cache)."""
    with PluginHost(cache_dir=False) as h:
        yield h


@pytest.fixture
def load(http_host: PluginHost, server: Server) -> Iterator[Loader]:
    """``load(allowed, granted=allowed, capability=None, limits=None)`` -> Plugin.

    ``allowed`` is what the manifest declares (default: the test server's
    origin); ``granted`` what the application grants (default: the same).
    """
    loaded: list[Plugin] = []
    capabilities: list[HttpCapability] = []

    def load_(
        allowed: tuple[str, ...] | None = None,
        granted: tuple[str, ...] | None = None,
        capability: HttpCapability | None = None,
        limits: Limits | None = None,
        pool_size: int = 1,
    ) -> Plugin:
        allowed = (server.url,) if allowed is None else allowed
        capability = capability or HttpCapability()
        capabilities.append(capability)
        http_host.provide(HTTP_INTERFACE, capability)
        plugin = http_host.load(
            COMPONENT,
            allow_unsigned=True,
            manifest=Manifest(
                name="fetcher", host_interfaces=(HTTP_INTERFACE,), allowed_outbound_hosts=allowed
            ),
            grants=Grants(allowed_outbound_hosts=allowed if granted is None else granted),
            limits=limits,
            pool_size=pool_size,
        )
        loaded.append(plugin)
        return plugin

    yield load_
    for plugin in loaded:
        plugin.close()
    for capability in capabilities:
        capability.close()


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
# The capability
# ---------------------------------------------------------------------------


def test_allowed_get_returns_status_headers_and_body(load: Loader, server: Server) -> None:
    resp = send(load(), f"{server.url}/json")
    assert resp.status == 200
    assert json.loads(resp.body) == {"ok": True}
    assert [v for k, v in resp.headers if k == "x-test"] == ["a", "b"]
    assert ("content-length", "12") in resp.headers
    assert server.paths() == ["/json"]


def test_post_sends_method_headers_and_body(load: Loader, server: Server) -> None:
    resp = send(
        load(),
        f"{server.url}/echo",
        method="POST",
        headers=[("Content-Type", "text/plain"), ("X-A", "1"), ("X-A", "2")],
        body=b"hello",
    )
    seen = json.loads(resp.body)
    assert seen["method"] == "POST"
    assert seen["body"] == "hello"
    names = [k for k, _ in seen["headers"]]
    assert ("content-type", "text/plain") in [tuple(h) for h in seen["headers"]]
    assert names.count("x-a") == 2
    assert ("accept-encoding", "identity") in [tuple(h) for h in seen["headers"]]


def test_host_owned_headers_are_dropped(load: Loader, server: Server) -> None:
    resp = send(
        load(),
        f"{server.url}/echo",
        headers=[("Host", "evil.example"), ("Connection", "upgrade"), ("Transfer-Encoding", "x")],
    )
    headers = dict(tuple(h) for h in json.loads(resp.body)["headers"])
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert "transfer-encoding" not in headers
    assert headers.get("connection") != "upgrade"


def test_url_off_the_allow_list_is_denied_and_never_sent(load: Loader, server: Server) -> None:
    plugin = load()
    err = send_err(plugin, f"http://localhost:{server.port}/json")
    assert err.case == "denied"
    assert f"http://localhost:{server.port}/json" in err.value
    assert "'fetcher'" in err.value
    assert server.paths() == []


@pytest.mark.parametrize(
    ("pattern", "url"),
    [
        ("https://127.0.0.1:{port}", "http://127.0.0.1:{port}/json"),  # scheme
        ("http://127.0.0.1", "http://127.0.0.1:{port}/json"),  # default port 80
        ("http://127.0.0.1:{other}", "http://127.0.0.1:{port}/json"),  # another port
        ("http://*.localhost:{port}", "http://127.0.0.1:{port}/json"),  # wildcard vs IP
        ("http://localhost:{port}", "http://127.0.0.1:{port}/json"),  # name vs address
    ],
)
def test_scheme_port_and_host_must_all_match(
    load: Loader, server: Server, pattern: str, url: str
) -> None:
    fill = {"port": server.port, "other": server.port % 60000 + 1}
    plugin = load((pattern.format(**fill),))
    assert send_err(plugin, url.format(**fill)).case == "denied"
    assert server.paths() == []


def test_wildcard_port_allows_any_port(load: Loader, server: Server) -> None:
    assert send(load(("http://127.0.0.1:*",)), f"{server.url}/json").status == 200


def test_declared_but_not_granted_is_denied(load: Loader, server: Server) -> None:
    plugin = load((server.url,), granted=())
    err = send_err(plugin, f"{server.url}/json")
    assert err.case == "denied"
    assert "none" in err.value
    assert server.paths() == []


def test_granted_but_not_declared_is_denied(load: Loader, server: Server) -> None:
    plugin = load((), granted=(server.url,))
    assert send_err(plugin, f"{server.url}/json").case == "denied"
    assert server.paths() == []


def test_catch_all_needs_the_exact_grant(load: Loader, server: Server) -> None:
    plugin = load(("*://*:*",), granted=(server.url,))
    assert send_err(plugin, f"{server.url}/json").case == "denied"
    plugin = load(("*://*:*",), granted=("*://*:*",))
    assert send(plugin, f"{server.url}/json").status == 200


def test_redirect_to_an_allowed_place_is_followed(load: Loader, server: Server) -> None:
    resp = send(load(), f"{server.url}/redirect?to=/json")
    assert resp.status == 200
    assert json.loads(resp.body) == {"ok": True}
    assert server.paths() == ["/redirect?to=/json", "/json"]


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:{port}/json",  # another name for the same loopback server
        "http://127.0.0.1:{other}/json",  # another port
        "https://127.0.0.1:{port}/json",  # another scheme
    ],
)
def test_redirect_off_the_allow_list_is_denied(load: Loader, server: Server, target: str) -> None:
    to = target.format(port=server.port, other=server.port % 60000 + 1)
    err = send_err(load(), f"{server.url}/redirect?to={to}")
    assert err.case == "denied"
    assert to in err.value
    assert server.paths() == [f"/redirect?to={to}"]


def test_redirect_to_another_scheme_is_invalid(load: Loader, server: Server) -> None:
    err = send_err(load(), f"{server.url}/redirect?to=file:///etc/passwd")
    assert err.case == "invalid-url"


def test_too_many_redirects(load: Loader, server: Server) -> None:
    err = send_err(load(), f"{server.url}/loop")
    assert err.case == "transport"
    assert "redirects" in err.value
    assert len(server.paths()) == DEFAULT_MAX_REDIRECTS + 1


def test_no_redirects_returns_the_3xx(load: Loader, server: Server) -> None:
    resp = send(load(capability=HttpCapability(max_redirects=0)), f"{server.url}/loop")
    assert resp.status == 302
    assert ("location", "/loop") in resp.headers


def test_303_continues_as_get_without_body(load: Loader, server: Server) -> None:
    resp = send(
        load(),
        f"{server.url}/redirect?code=303&to=/echo",
        method="POST",
        headers=[("Content-Type", "text/plain")],
        body=b"payload",
    )
    seen = json.loads(resp.body)
    assert (seen["method"], seen["body"]) == ("GET", "")
    assert "content-type" not in [k for k, _ in seen["headers"]]


def test_307_keeps_method_and_body(load: Loader, server: Server) -> None:
    resp = send(load(), f"{server.url}/redirect?code=307&to=/echo", method="PUT", body=b"x")
    seen = json.loads(resp.body)
    assert (seen["method"], seen["body"]) == ("PUT", "x")


def test_credentials_are_dropped_when_a_redirect_changes_origin(
    load: Loader, server: Server
) -> None:
    plugin = load((server.url, f"http://localhost:{server.port}"))
    resp = send(
        plugin,
        f"{server.url}/redirect?to=http://localhost:{server.port}/echo",
        headers=[("Authorization", "Bearer t"), ("X-Keep", "1")],
    )
    names = [k for k, _ in json.loads(resp.body)["headers"]]
    assert "authorization" not in names
    assert "x-keep" in names
    resp = send(plugin, f"{server.url}/redirect?to=/echo", headers=[("Authorization", "Bearer t")])
    assert "authorization" in [k for k, _ in json.loads(resp.body)["headers"]]


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


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "/relative/path",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "http://",
        "http://127.0.0.1:99999/",
        "http://[::1/",
        "http://127.0.0.1\r\n/",
    ],
)
def test_invalid_url(load: Loader, server: Server, url: str) -> None:
    assert send_err(load(("*://*:*",)), url).case == "invalid-url"
    assert server.paths() == []


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET POST", []),
        ("GET\n", []),
        ("GET", [("X-A\n", "x")]),
        ("", []),
        ("CONNECT", []),
        ("GET", [("bad name", "x")]),
        ("GET", [("X-Injected", "a\r\nHost: evil.example")]),
    ],
)
def test_invalid_request(
    load: Loader, server: Server, method: str, headers: list[tuple[str, str]]
) -> None:
    err = send_err(load(), f"{server.url}/json", method=method, headers=headers)
    assert err.case == "invalid-request"
    assert server.paths() == []


def test_connection_refused_is_a_transport_error(load: Loader, server: Server) -> None:
    # A port on 127.0.0.1 with no listener: bind one, note its number, close it.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = send_err(load((f"http://127.0.0.1:{port}",)), f"http://127.0.0.1:{port}/")
    assert err.case == "transport"


def test_no_cookies_are_kept_between_requests(load: Loader, server: Server) -> None:
    capability = HttpCapability()
    first = load(capability=capability)
    send(first, f"{server.url}/set-cookie")
    second = load(capability=capability)
    for plugin in (first, second):
        seen = json.loads(send(plugin, f"{server.url}/echo").body)
        assert "cookie" not in [k for k, _ in seen["headers"]]


def test_proxies_from_the_environment_are_ignored(
    load: Loader, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were they used, the request would go to this (closed) loopback port and fail.
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert send(load(), f"{server.url}/json").status == 200


def test_outside_a_plugin_call_everything_is_denied(server: Server) -> None:
    from types import SimpleNamespace

    req = SimpleNamespace(method="GET", url=f"{server.url}/json", headers=[], body=None)
    req.timeout_ms = None
    with HttpCapability() as cap, pytest.raises(Err, match="outside any plugin") as info:
        cap.send(req)
    assert info.value.value.case == "denied"
    assert server.paths() == []


def test_closed_capability_fails_with_transport(load: Loader, server: Server) -> None:
    capability = HttpCapability()
    plugin = load(capability=capability)
    assert send(plugin, f"{server.url}/json").status == 200
    capability.close()
    capability.close()
    assert send_err(plugin, f"{server.url}/json").case == "transport"


def test_concurrent_calls_from_many_threads(load: Loader, server: Server) -> None:
    plugin = load(pool_size=4)

    def one(i: int) -> int:
        resp = send(plugin, f"{server.url}/big?n={i}")
        assert resp.body == b"x" * i
        return int(resp.status)

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(one, range(24))) == [200] * 24
    assert len(server.paths()) == 24


def test_plugin_call_timeout_caps_the_budget(load: Loader, server: Server) -> None:
    # The plugin's per-call timeout is wall-clock time, host calls included: a
    # request may not outlive the call that made it.
    plugin = load(limits=Limits(timeout_ms=100))
    start = time.monotonic()
    assert send_err(plugin, f"{server.url}/slow?ms=3000").case == "timeout"
    assert time.monotonic() - start < 1.5


# ---------------------------------------------------------------------------
# Built into the host
# ---------------------------------------------------------------------------


def test_the_host_provides_http_to_plugins_that_declare_outbound_hosts(
    server: Server, tmp_path: Path
) -> None:
    """No provide() and no host-interfaces entry: declaring hosts declares the interface."""
    with PluginHost(cache_dir=tmp_path / "cache") as host:
        plugin = host.load(
            COMPONENT,
            allow_unsigned=True,
            manifest=Manifest(name="fetcher", allowed_outbound_hosts=(server.url,)),
            grants=Grants(allowed_outbound_hosts=(server.url,)),
        )
        assert send(plugin, f"{server.url}/json").status == 200
        denied = host.load(
            COMPONENT,
            allow_unsigned=True,
            manifest=Manifest(name="fetcher", allowed_outbound_hosts=(server.url,)),
        )
        assert send_err(denied, f"{server.url}/json").case == "denied"


def test_a_plugin_without_declared_hosts_cannot_import_http(tmp_path: Path) -> None:
    with PluginHost(cache_dir=tmp_path / "cache") as host, pytest.raises(LinkError):
        host.load(COMPONENT, allow_unsigned=True, manifest=Manifest(name="fetcher"))

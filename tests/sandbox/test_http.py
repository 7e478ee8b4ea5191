"""Outbound HTTP: the ``wasmplug:host/http`` capability end to end (the allow-list, redirects,
request checks). Patterns are in test_urlpattern.py, limits in test_http_limits.py.

The capability is driven through a real component (a WAT component that
imports ``wasmplug:host/http@0.1.0`` and exports ``call-send``, which forwards
its argument to the host's ``send`` and returns the result), so every request
crosses the canonical ABI both ways. The server is a real
``ThreadingHTTPServer`` on 127.0.0.1; no test contacts any other address
(denied requests never leave the host, which the server's request log proves).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from support.http import (
    COMPONENT,
    GZIPPED,
    HTTP_ERROR,
    Loader,
    Server,
    self_signed,
    send,
    send_err,
    tls_server,
)
from wasmplug import (
    Err,
    Grants,
    Limits,
    LinkError,
    Manifest,
    PluginHost,
)
from wasmplug._sandbox.http import (
    DEFAULT_MAX_REDIRECTS,
    HTTP_INTERFACE,
    HttpCapability,
    wit_file,
)

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


CREDENTIALS = [("Authorization", "Bearer t"), ("Cookie", "session=s"),
               ("Proxy-Authorization", "Basic cA==")]  # fmt: skip


def _forwarded(resp: Any) -> dict[str, str]:
    return dict(json.loads(resp.body)["headers"])


def test_credentials_are_dropped_when_a_redirect_changes_origin(
    load: Loader, server: Server
) -> None:
    """Authorization, Cookie and Proxy-Authorization never follow a redirect to another
    origin (here: another host name for the same server); other headers do."""
    plugin = load((server.url, f"http://localhost:{server.port}"))
    resp = send(
        plugin,
        f"{server.url}/redirect?to=http://localhost:{server.port}/echo",
        headers=[*CREDENTIALS, ("X-Keep", "1")],
    )
    forwarded = _forwarded(resp)
    for name, _ in CREDENTIALS:
        assert name.lower() not in forwarded, name
    assert forwarded["x-keep"] == "1"
    assert server.paths()[-1] == "/echo", "the redirect was followed"


@pytest.mark.parametrize("name", ["Authorization", "Cookie"])
def test_credentials_follow_a_redirect_within_the_origin(
    load: Loader, server: Server, name: str
) -> None:
    value = dict(CREDENTIALS)[name]
    resp = send(load(), f"{server.url}/redirect?to=/echo", headers=[(name, value)])
    assert _forwarded(resp)[name.lower()] == value


def test_proxy_authorization_is_never_sent(load: Loader, server: Server) -> None:
    """Proxy-Authorization is host-owned (no proxy is ever used): dropped on every hop."""
    for url in (f"{server.url}/echo", f"{server.url}/redirect?to=/echo"):
        resp = send(load(), url, headers=[("Proxy-Authorization", "Basic cA==")])
        assert "proxy-authorization" not in _forwarded(resp)


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


def test_a_denied_request_is_logged_at_info(
    load: Loader, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """security.md: "a denied request is also logged at INFO on wasmplug.http"."""
    caplog.set_level(logging.INFO, logger="wasmplug.http")
    url = f"http://localhost:{server.port}/json"
    assert send_err(load(), url).case == "denied"
    denied = [r for r in caplog.records if r.name == "wasmplug.http" and url in r.getMessage()]
    assert [r.levelno for r in denied] == [logging.INFO]


def test_response_bodies_are_never_decompressed(load: Loader, server: Server) -> None:
    """security.md: "Response bodies ... are never decompressed" (no zip bombs)."""
    resp = send(load(), f"{server.url}/gzip", headers=[("Accept-Encoding", "gzip")])
    assert bytes(resp.body) == GZIPPED
    assert ("content-encoding", "gzip") in [(k.lower(), v) for k, v in resp.headers]


def test_netrc_credentials_are_ignored(
    load: Loader, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """security.md: "No proxy, .netrc credentials or CA settings are read from the
    environment"."""
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login user password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(netrc))
    resp = send(load(), f"{server.url}/echo")
    assert "authorization" not in _forwarded(resp)


def test_ca_settings_from_the_environment_are_ignored(
    load: Loader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-signed server whose certificate SSL_CERT_FILE/SSL_CERT_DIR point at is still
    refused: were the variables read, the request would succeed."""
    cert, key = self_signed(tmp_path, "127.0.0.1")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    with tls_server(cert, key) as port:
        origin = f"https://127.0.0.1:{port}"
        plugin = load((origin,), limits=Limits(timeout_ms=20_000))  # a loaded machine
        err = send_err(plugin, f"{origin}/json", timeout_ms=15_000)
    assert err.case == "transport", err


def test_outside_a_plugin_call_everything_is_denied(server: Server) -> None:
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

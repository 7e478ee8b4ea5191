"""A real OCI registry for tests: Debian's ``docker-registry`` (CNCF distribution 2.8).

:func:`start_registry` runs ``docker-registry serve config.yml`` on 127.0.0.1 with
a free port and its own storage directory, optionally behind htpasswd (bcrypt)
auth, and waits (with a deadline) until ``GET /v2/`` answers. ``scripts/test.sh``
installs the package.

As a pytest plugin (listed in ``tests/conftest.py``) it provides three session
fixtures, each a separate process stopped at the end of the session:
``oci_registry`` (anonymous), ``oci_mirror`` (a second anonymous one, the other
site) and ``oci_auth_registry`` (htpasswd: user ``fleet``, password ``s3cret-pw``).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest

READY_DEADLINE_S = 15.0


@attrs.define
class RunningRegistry:
    """A started registry: ``host`` is ``127.0.0.1:PORT``; ``storage`` its filesystem root."""

    host: str
    storage: Path
    process: subprocess.Popen[bytes]
    log: Path
    username: str | None = None
    password: str | None = None

    def blob_path(self, digest: str) -> Path:
        """Where the registry keeps a blob on disk (``docker/registry/v2/blobs/...``)."""
        hexdigest = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def registry_binary() -> str | None:
    return shutil.which("docker-registry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(
    workdir: Path,
    *,
    username: str | None = None,
    password: str | None = None,
    token_server: TokenServer | None = None,
) -> RunningRegistry:
    """Start ``docker-registry`` in ``workdir``: htpasswd auth when ``username`` is given,
    token (Bearer) auth through ``token_server`` when that is given.

    The port is free when chosen but may be taken before the registry binds it (by
    another test session on the machine, maybe another registry): a registry that
    cannot bind is started again on a new port, and readiness is checked on a header
    only this registry sends, never on whatever answers at the port."""
    binary = registry_binary()
    assert binary is not None, "docker-registry is not installed (scripts/test.sh installs it)"
    workdir.mkdir(parents=True, exist_ok=True)
    auth = ""
    if username is not None:
        import bcrypt

        assert password is not None
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        (workdir / "htpasswd").write_text(f"{username}:{hashed}\n")
        auth = f"auth:\n  htpasswd:\n    realm: wasmplug-test\n    path: {workdir / 'htpasswd'}\n"
    if token_server is not None:
        auth = (
            f"auth:\n  token:\n    realm: {token_server.realm}\n"
            f"    service: {token_server.SERVICE}\n    issuer: {token_server.ISSUER}\n"
            f"    rootcertbundle: {token_server.bundle}\n"
        )
    for _ in range(BIND_ATTEMPTS - 1):
        try:
            return _serve(binary, workdir, auth, username, password)
        except PortTaken:
            continue
    return _serve(binary, workdir, auth, username, password)


BIND_ATTEMPTS = 5


class PortTaken(Exception):
    """The chosen port was taken before the registry could bind it."""


def _serve(
    binary: str, workdir: Path, auth: str, username: str | None, password: str | None
) -> RunningRegistry:
    storage = workdir / "storage"
    port = free_port()
    marker = secrets.token_hex(8)
    (workdir / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"  headers:\n    {MARKER_HEADER}: [{marker}]\n" + auth
    )
    log = workdir / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(workdir / "config.yml")], stdout=out, stderr=subprocess.STDOUT
        )
    running = RunningRegistry(f"127.0.0.1:{port}", storage, process, log, username, password)
    deadline = time.monotonic() + READY_DEADLINE_S
    while True:
        if process.poll() is not None:
            text = log.read_text()
            if "address already in use" in text:
                raise PortTaken(port)
            raise RuntimeError(f"docker-registry exited: {text[-2000:]}")
        try:
            resp = httpx.get(f"http://{running.host}/v2/", timeout=1.0)
            if resp.status_code in (200, 401) and resp.headers.get(MARKER_HEADER) == marker:
                return running
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            running.stop()
            raise RuntimeError(f"docker-registry not ready after {READY_DEADLINE_S} s")
        time.sleep(0.05)


MARKER_HEADER = "X-Wasmplug-Test-Registry"


def plugin_bytes(name: str, version: str, *, n: int = 1, pair: object | None = None) -> bytes:
    """A tiny packed component (export ``one() -> u32`` returning ``n``), signed by
    ``pair`` (a ``KeyPair``, with its key id) if given."""
    import wasmtime

    from wasmplug._sandbox.manifest import MANIFEST_SECTION
    from wasmplug._trust import signing
    from wasmplug._trust import wasm_sections as ws

    component = bytes(
        wasmtime.wat2wasm(f"""
(component
  (core module $m (func (export "one") (result i32) i32.const {n}))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)""")
    )
    manifest = (
        f'[plugin]\nname = "{name}"\nversion = "{version}"\ndescription = "test {name}"\n'
    ).encode()
    data = ws.with_custom_section(component, MANIFEST_SECTION, manifest)
    if pair is None:
        return data
    assert isinstance(pair, signing.KeyPair)
    return signing.sign(data, pair.secret_key, key_id=pair.key_id)


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, **auth: str) -> RunningRegistry:
    if registry_binary() is None:
        pytest.skip("docker-registry is not installed (scripts/test.sh installs it)")
    return start_registry(tmp_path_factory.mktemp(name), **auth)


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """An anonymous registry on 127.0.0.1."""
    running = _start(tmp_path_factory, "oci-registry")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def oci_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A second anonymous registry (the mirror / the other site)."""
    running = _start(tmp_path_factory, "oci-mirror")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def oci_token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningRegistry, TokenServer]]:
    """A registry behind token (Bearer) auth, and its token service (user ``fleet``,
    password ``t0ken-pw``)."""
    if registry_binary() is None:
        pytest.skip("docker-registry is not installed (scripts/test.sh installs it)")
    workdir = tmp_path_factory.mktemp("oci-token")
    tokens = TokenServer(workdir, "fleet", "t0ken-pw")
    running = start_registry(workdir, token_server=tokens)
    running.username, running.password = "fleet", "t0ken-pw"
    yield running, tokens
    running.stop()
    tokens.stop()


@pytest.fixture(scope="session")
def oci_auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A registry behind htpasswd (bcrypt) basic auth: user ``fleet``, password ``s3cret-pw``."""
    running = _start(tmp_path_factory, "oci-auth", username="fleet", password="s3cret-pw")
    yield running
    running.stop()


class TokenServer:
    """A minimal token service for distribution's token auth (``docs/spec/auth/token.md``).

    ``GET /token?service=S&scope=repository:NAME:ACTIONS`` with HTTP Basic credentials
    answers ``{"token": JWT}``: an ES256 JWT whose ``x5c`` header carries a self-signed
    certificate that the registry trusts (``rootcertbundle``). It grants what was asked
    to the one user, and answers 401 to anyone else.
    """

    ISSUER = "wasmplug-test-issuer"
    SERVICE = "wasmplug-test"

    def __init__(self, workdir: Path, username: str, password: str) -> None:
        import datetime
        import http.server
        import threading

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wasmplug test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = workdir / "token-root.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[str] = []
        server_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server_self.requests.append(self.path)
                expected = "Basic " + _b64(f"{username}:{password}".encode(), url=False)
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": server_self.token(self.path)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, path: str) -> str:
        import secrets
        import urllib.parse

        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else ("", "", "")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.ISSUER, "sub": "fleet", "aud": self.SERVICE, "exp": now + 300,
            "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [_b64(der, url=False)]}
        signing_input = (
            _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        ).encode()
        r, s = decode_dss_signature(self.key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input.decode() + "." + _b64(signature)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _b64(data: bytes, *, url: bool = True) -> str:
    import base64

    if not url:
        return base64.b64encode(data).decode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

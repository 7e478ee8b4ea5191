"""The distribution-API client's auth, retry, resume and size rules, on a scripted transport.

The real-registry tests (test_registry_e2e.py) cover anonymous, htpasswd (Basic) and
token (Bearer) access end to end; here each rule is driven into its corner cases:
token caching and where credentials go, backoff timings, cut and poisoned downloads,
oversized answers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from wasmplug import (
    ArtifactFormatError,
    DigestMismatchError,
    RegistryAuthError,
    RegistryUnavailableError,
)
from wasmplug._distribution.artifact import Descriptor
from wasmplug._distribution.client import RegistryClient, TransportOptions
from wasmplug._distribution.credentials import Credentials

BLOB = bytes(range(256)) * 64
DIGEST = f"sha256:{hashlib.sha256(BLOB).hexdigest()}"
DESC = Descriptor("application/wasm", DIGEST, len(BLOB))
CREDS = Credentials("ci", "tok3n", "test")


def client(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    registry: str = "registry.example.com",
    credentials: Credentials | None = CREDS,
    sleeps: list[float] | None = None,
    **options: object,
) -> RegistryClient:
    record = sleeps if sleeps is not None else []
    return RegistryClient(
        registry,
        options=TransportOptions(**options),  # type: ignore[arg-type]
        credentials=credentials,
        transport=httpx.MockTransport(handler),
        sleep=record.append,
    )


def test_bearer_token_flow_sends_credentials_only_to_the_token_service() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("Authorization")))
        if request.url.host == "auth.example.com":
            expected = "Basic " + base64.b64encode(b"ci:tok3n").decode()
            assert request.headers["Authorization"] == expected
            assert request.url.params["service"] == "registry.example.com"
            assert request.url.params["scope"] == "repository:acme/tool:pull"
            return httpx.Response(200, json={"token": "T1"})
        if request.headers.get("Authorization") != "Bearer T1":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://auth.example.com/token",'
                    'service="registry.example.com",scope="repository:acme/tool:pull"'
                },
            )
        return httpx.Response(200, json={"tags": ["1.0.0", "1.1.0"]})

    with client(handler) as c:
        assert c.list_tags("acme/tool") == ["1.0.0", "1.1.0"]
        assert c.list_tags("acme/tool") == ["1.0.0", "1.1.0"]  # the token is reused
    registry_calls = [auth for url, auth in seen if "registry.example.com/v2/" in url]
    assert registry_calls == [None, "Bearer T1", "Bearer T1"]
    assert all("tok3n" not in (auth or "") for url, auth in seen if "auth.example.com" not in url)


def test_token_realm_over_plain_http_on_a_remote_host_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host != "auth.example.com", "credentials must not be sent"
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example.com/token"'}
        )

    with client(handler) as c, pytest.raises(RegistryAuthError, match="not HTTPS"):
        c.list_tags("acme/tool")


def test_token_service_rejecting_the_credentials() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return httpx.Response(401)
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example.com/t"'}
        )

    with client(handler) as c, pytest.raises(RegistryAuthError, match="rejected the credentials"):
        c.list_tags("acme/tool")


def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    answers = iter([503, 502, 200])
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return httpx.Response(status, json={"tags": ["1.0.0"]} if status == 200 else None)

    with client(handler, sleeps=sleeps, backoff_s=0.5) as c:
        assert c.list_tags("a/b") == ["1.0.0"]
    assert sleeps == [0.5, 1.0]


def test_retry_after_is_honoured_with_a_cap() -> None:
    answers = iter([(429, {"Retry-After": "3"}), (429, {"Retry-After": "999"}), (200, {})])
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status, headers = next(answers)
        return httpx.Response(status, headers=headers, json={"tags": []})

    with client(handler, sleeps=sleeps) as c:
        c.list_tags("a/b")
    assert sleeps == [3.0, 30.0]


def test_unreachable_after_the_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sleeps: list[float] = []
    with (
        client(handler, sleeps=sleeps, retries=2) as c,
        pytest.raises(RegistryUnavailableError, match=r"unreachable.*after 3 attempts"),
    ):
        c.list_tags("a/b")
    assert len(sleeps) == 2


class _CutStream(httpx.SyncByteStream):
    """Serves ``data`` then fails as a dropped connection would."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        raise httpx.ReadError("connection reset by peer")


def test_a_cut_download_resumes_with_a_range_request(tmp_path: Path) -> None:
    ranges: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("Range"))
        if len(ranges) == 1:
            return httpx.Response(200, stream=_CutStream(BLOB[:5000]))
        start = int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))
        return httpx.Response(
            206,
            content=BLOB[start:],
            headers={"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"},
        )

    partial = tmp_path / "blob.partial"
    with client(handler) as c:
        c.fetch_blob("a/b", DESC, partial)
    assert ranges == [None, "bytes=5000-"]
    assert partial.read_bytes() == BLOB


def test_a_server_ignoring_range_restarts_the_hash(tmp_path: Path) -> None:
    partial = tmp_path / "blob.partial"
    partial.write_bytes(BLOB[:1000])  # left by an earlier, interrupted process

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Range"] == "bytes=1000-"
        return httpx.Response(200, content=BLOB)  # the whole blob again

    with client(handler) as c:
        c.fetch_blob("a/b", DESC, partial)
    assert partial.read_bytes() == BLOB


def test_a_poisoned_partial_file_cannot_smuggle_bytes(tmp_path: Path) -> None:
    partial = tmp_path / "blob.partial"
    partial.write_bytes(b"\x00" * 1000)  # not the blob's first 1000 bytes

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(206, content=BLOB[1000:])

    with client(handler) as c, pytest.raises(DigestMismatchError):
        c.fetch_blob("a/b", DESC, partial)
    assert not partial.exists()


def test_declared_size_above_the_maximum_is_refused_before_downloading(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be downloaded")

    with (
        client(handler, max_blob_bytes=1024) as c,
        pytest.raises(ArtifactFormatError, match="more than the 1024-byte maximum"),
    ):
        c.fetch_blob("a/b", DESC, tmp_path / "p")


def test_an_endless_blob_stops_at_the_declared_size(tmp_path: Path) -> None:
    class Endless(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            while True:
                yield b"\x00" * 65536

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Endless())

    with client(handler) as c, pytest.raises(DigestMismatchError, match="more than"):
        c.fetch_blob("a/b", DESC, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_remote_registries_are_never_spoken_to_in_plain_http() -> None:
    schemes: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        schemes.append(request.url.scheme)
        raise httpx.ConnectError("tls failed", request=request)

    with client(handler, retries=1) as c, pytest.raises(RegistryUnavailableError):
        c.list_tags("a/b")
    assert set(schemes) == {"https"}
    schemes.clear()
    with client(handler, registry="registry.example.com", retries=0, insecure=True) as c:
        with pytest.raises(RegistryUnavailableError):
            c.list_tags("a/b")
    assert schemes == ["https", "http"]  # --insecure: HTTPS first, then plain HTTP


def test_credentials_never_follow_an_upload_location_to_another_host() -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[f"{request.method} {request.url.host}"] = request.headers.get("Authorization")
        if request.url.host == "registry.example.com":
            if request.headers.get("Authorization") is None:
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
            if request.method == "HEAD":
                return httpx.Response(404)
            return httpx.Response(202, headers={"Location": "https://uploads.evil.example/u/1"})
        return httpx.Response(201)

    with client(handler) as c:
        c.upload_blob("acme/tool", BLOB, DIGEST)
    assert seen["POST registry.example.com"] is not None
    assert seen["PUT uploads.evil.example"] is None


def test_a_tag_page_link_to_another_host_is_refused() -> None:
    from wasmplug import DistributionError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"tags": ["1.0.0"]},
            headers={"Link": '<https://evil.example/v2/a/b/tags/list?last=x>; rel="next"'},
        )

    with client(handler) as c, pytest.raises(DistributionError, match="leaves the registry"):
        c.list_tags("a/b")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_answers_are_refused(declared: bool) -> None:
    big = b'{"tags": [' + b'"1.0.0",' * 700_000 + b'"1.0.0"]}'

    class Chunked(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]

    def handler(request: httpx.Request) -> httpx.Response:
        if declared:
            return httpx.Response(200, content=big)
        return httpx.Response(200, stream=Chunked())

    with client(handler) as c, pytest.raises(ArtifactFormatError, match="4194304"):
        c.list_tags("a/b")


def test_an_oversized_token_answer_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return httpx.Response(200, content=b'{"token": "' + b"x" * 2_000_000 + b'"}')
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example.com/t"'}
        )

    with client(handler) as c, pytest.raises(ArtifactFormatError, match="token service"):
        c.list_tags("a/b")


def test_credential_helper_names_cannot_be_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from wasmplug._distribution.credentials import CredentialStore, lookup_credentials

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "../../bin/evil"}))
    with pytest.raises(RegistryAuthError, match="not a credential helper name"):
        lookup_credentials("r.example.com", store=CredentialStore(tmp_path / "none.json"))


def test_a_dripping_download_stops_at_the_deadline(tmp_path: Path) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 100.0  # every chunk arrives 100 s after the previous one
        return now[0]

    class Drip(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for i in range(len(BLOB)):
                yield BLOB[i : i + 1]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Drip())

    c = RegistryClient(
        "registry.example.com",
        options=TransportOptions(deadline_s=600.0),
        credentials=None,
        transport=httpx.MockTransport(handler),
        clock=clock,
    )
    with c, pytest.raises(RegistryUnavailableError, match=r"longer than 600 s"):
        c.fetch_blob("a/b", DESC, tmp_path / "p")
    assert (tmp_path / "p").stat().st_size < 10  # stopped after a few bytes, kept for resume

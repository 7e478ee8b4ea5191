"""A client for the OCI distribution API (``/v2/``), on httpx.

Endpoints used (OCI distribution-spec v1.1, ``spec.md``): ``GET /v2/``,
``HEAD|GET|PUT /v2/<name>/manifests/<reference>``, ``HEAD|GET /v2/<name>/blobs/<digest>``,
``POST /v2/<name>/blobs/uploads/`` then ``PUT <location>?digest=`` (monolithic
upload), and ``GET /v2/<name>/tags/list`` with ``Link`` pagination.

Requests go out anonymously first; a 401 is answered by :mod:`.auth` (Basic, or
the Bearer token flow). Authorization headers are sent only to the registry's own
origin, never to an upload ``Location`` or a page ``Link`` on another host.

Transport policy:

- TLS (certificate-verified) by default. Plain HTTP only for loopback hosts
  (``localhost``, 127.0.0.0/8, ``::1``) or with ``insecure=True``; for those
  HTTPS is tried first and plain HTTP used if it fails, as Docker does for
  insecure registries. Credentials are never sent to a plain-HTTP token realm
  on a non-loopback host;
- connection errors, timeouts and 429/502/503/504 answers are retried with
  exponential backoff (``Retry-After`` honoured up to 30 s); a blob download cut
  short resumes with ``Range: bytes=N-``, also from a ``.partial`` file left by
  an earlier process;
- a blob's bytes are hashed as they arrive. More bytes than the manifest
  declares, fewer, or another digest raise :class:`DigestMismatchError`; a
  declared size above ``max_blob_bytes`` is refused before downloading;
- every body (layer, manifest, tag list, token) is capped in size and must
  arrive within ``deadline_s``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import attrs
import httpx

from wasmplug._errors import (
    ArtifactFormatError,
    ArtifactNotFoundError,
    DigestMismatchError,
    DistributionError,
    RegistryAuthError,
    RegistryUnavailableError,
)

from .artifact import IMAGE_INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES, Descriptor
from .auth import LOOKUP, Lookup, RegistryAuth
from .credentials import Credentials
from .reference import DIGEST_RE, is_loopback

__all__ = ["DEFAULT_MAX_BLOB_BYTES", "RegistryClient", "TransportOptions"]

DEFAULT_MAX_BLOB_BYTES = 256 * 1024 * 1024
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_ACCEPT = ", ".join([MANIFEST_MEDIA_TYPE, IMAGE_INDEX_MEDIA_TYPE, _DOCKER_MANIFEST, _DOCKER_LIST])
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_MAX_RETRY_AFTER_S = 30.0
_MAX_TAG_PAGES = 100
_MAX_TAGS_BYTES = 4 * 1024 * 1024
_CHUNK = 256 * 1024
_LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@attrs.frozen
class TransportOptions:
    """How a :class:`RegistryClient` talks to a registry.

    Attributes:
        insecure: Allow plain HTTP (after HTTPS fails) for a non-loopback registry.
        retries: Retries after the first attempt, for transient failures.
        backoff_s: First backoff in seconds; doubled after each retry.
        timeout_s: Connect timeout, and the longest wait for each read, seconds.
        deadline_s: Longest time one body may take to arrive, seconds (a layer
            download, resumed ones included, or a manifest, tag list or token), so a
            server that drips bytes just under ``timeout_s`` cannot hold an install forever.
        max_blob_bytes: Largest layer accepted (bytes), whatever the manifest declares.
    """

    insecure: bool = False
    retries: int = 3
    backoff_s: float = 0.25
    timeout_s: float = 30.0
    deadline_s: float = 600.0
    max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES


def _past(deadline: float, clock: Callable[[], float], what: str, limit_s: float) -> None:
    if clock() > deadline:
        raise RegistryUnavailableError(
            f"{what}: the transfer took longer than {limit_s:g} s (deadline_s); giving up"
        )


def _error_text(resp: httpx.Response) -> str:
    """The registry's error message (distribution's ``{"errors": [...]}``), if any."""
    try:
        doc = json.loads(resp.content[:65536])
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code, message = errors[0].get("code", ""), errors[0].get("message", "")
            return f"{code}: {message}".strip(": ")
    except (ValueError, RecursionError, httpx.ResponseNotRead):
        pass
    return ""


class RegistryClient:
    """One registry (``host[:port]``), one connection pool, cached auth tokens.

    Args:
        registry: ``host[:port]`` as in a :class:`~.reference.Reference`.
        options: Transport policy; see :class:`TransportOptions`.
        credentials: Credentials to use, ``None`` for anonymous only, or (default)
            looked up with :func:`~.credentials.lookup_credentials` on the first challenge.
        transport: An httpx transport (tests inject one); default: real network.
        sleep: Called with the backoff delay, seconds (tests pass a no-op).
        clock: Monotonic seconds, for ``deadline_s`` (tests pass a fake one).

    Every method raises :class:`RegistryUnavailableError` when the registry
    cannot be reached, :class:`RegistryAuthError` on 401/403, and
    :class:`ArtifactNotFoundError` on 404; other failures are
    :class:`DistributionError` naming the HTTP status and the registry's message.
    """

    def __init__(
        self,
        registry: str,
        *,
        options: TransportOptions | None = None,
        credentials: Credentials | Lookup | None = LOOKUP,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.options = options or TransportOptions()
        self._sleep = sleep
        self._clock = clock
        host = registry[1 : registry.index("]")] if registry.startswith("[") else registry
        host = host.rsplit(":", 1)[0] if not registry.startswith("[") else host
        self._plain_allowed = self.options.insecure or is_loopback(host)
        self._transport = transport
        self._client: httpx.Client | None = None
        self._base: str | None = None
        self._auth = RegistryAuth(registry, credentials, plain_allowed=self._plain_allowed)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def _http(self) -> httpx.Client:
        """The connection pool, made on first use: loading the CA bundle costs ~0.1 s,
        which an install served from the blob cache never needs to pay."""
        if self._client is None:
            self._client = httpx.Client(
                transport=self._transport,
                timeout=httpx.Timeout(self.options.timeout_s),
                headers={"User-Agent": "wasmplug"},
                follow_redirects=False,
            )
        return self._client

    # -- plumbing ----------------------------------------------------------------------

    def _base_url(self) -> str:
        if self._base is None:
            self._base = f"https://{self.registry}"
            if self._plain_allowed:
                try:
                    self._http.get(f"{self._base}/v2/", timeout=min(5.0, self.options.timeout_s))
                except httpx.TransportError:
                    self._base = f"http://{self.registry}"
        return self._base

    def _same_origin(self, url: str) -> bool:
        base, target = httpx.URL(self._base_url()), httpx.URL(url)
        return (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)

    def _delay(self, attempt: int, resp: httpx.Response | None = None) -> None:
        delay = self.options.backoff_s * (2**attempt)
        if resp is not None and resp.headers.get("Retry-After", "").isdigit():
            delay = min(float(resp.headers["Retry-After"]), _MAX_RETRY_AFTER_S)
        self._sleep(delay)

    def _send(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send with auth and retries; returns the final response (any status)."""
        if url.startswith("/"):
            url = self._base_url() + url
        # Credentials and tokens go only to the registry itself: an upload Location or
        # a pagination Link naming another host gets no Authorization header.
        same_origin = self._same_origin(url)
        authenticated = False
        last: Exception | None = None
        attempt = 0
        while attempt <= self.options.retries:
            request = self._http.build_request(
                method,
                url,
                headers={**(headers or {}), **(self._auth.header(scope) if same_origin else {})},
                content=content,
            )
            try:
                resp = self._http.send(request, stream=stream, follow_redirects=follow_redirects)
            except httpx.TransportError as e:
                last = e
                if attempt < self.options.retries:
                    self._delay(attempt)
                attempt += 1
                continue
            if resp.status_code == 401 and not authenticated and same_origin:
                resp.read()
                resp.close()
                self._auth.answer(resp, scope, self._http, self._read_capped)
                authenticated = True
                continue  # the retry with credentials is not a transient-failure retry
            if resp.status_code in _RETRY_STATUS and attempt < self.options.retries:
                resp.close()
                self._delay(attempt, resp)
                attempt += 1
                last = DistributionError(f"HTTP {resp.status_code}")
                continue
            return resp
        if isinstance(last, httpx.TransportError):
            raise RegistryUnavailableError(
                f"registry {self.registry} is unreachable ({type(last).__name__}: {last}) "
                f"after {self.options.retries + 1} attempts"
            ) from last
        raise RegistryUnavailableError(
            f"registry {self.registry} kept failing ({last}) after "
            f"{self.options.retries + 1} attempts"
        )

    def _read_capped(self, resp: httpx.Response, limit: int, what: str) -> bytes:
        """The body of a streamed response, refusing more than ``limit`` bytes or
        taking longer than ``deadline_s``."""
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ArtifactFormatError(f"{what}: the answer declares {declared} bytes, over {limit}")
        deadline = self._clock() + self.options.deadline_s
        body = bytearray()
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise ArtifactFormatError(f"{what}: the answer is larger than {limit} bytes")
            _past(deadline, self._clock, what, self.options.deadline_s)
        return bytes(body)

    def _check(self, resp: httpx.Response, what: str) -> httpx.Response:
        """Raise the typed error for a failed response; return it otherwise."""
        if resp.status_code < 400:
            return resp
        if resp.is_stream_consumed is False:
            resp.read()
        detail = _error_text(resp)
        detail = f" ({detail})" if detail else ""
        if resp.status_code == 404:
            raise ArtifactNotFoundError(f"{what}: not found in registry {self.registry}{detail}")
        if resp.status_code in (401, 403):
            creds = self._auth.credentials
            if creds is None:
                raise self._auth.no_credentials()
            if resp.status_code == 401:
                raise self._auth.rejected(creds)
            raise RegistryAuthError(
                f"{what}: user {creds.username!r} is not allowed this on registry "
                f"{self.registry}{detail}"
            )
        raise DistributionError(
            f"{what}: registry {self.registry} answered HTTP {resp.status_code}{detail}"
        )

    # -- the API -----------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/`` with authentication: checks reachability and credentials."""
        self._check(self._send("GET", "/v2/", scope="registry:catalog:*"), "login")

    def resolve(self, repository: str, reference: str) -> str | None:
        """The manifest digest a tag points to (``HEAD``), or ``None`` if not given.

        Raises:
            ArtifactNotFoundError: no such repository or tag.
        """
        resp = self._send(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": _ACCEPT},
        )
        self._check(resp, f"{self.registry}/{repository}:{reference}")
        digest = resp.headers.get("Docker-Content-Digest")
        return digest if digest and DIGEST_RE.match(digest) else None

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """Fetch a manifest by tag or digest: ``(raw bytes, sha256 digest, content type)``.

        The digest is computed from the bytes received; when ``reference`` is a
        digest it must match.

        Raises:
            DigestMismatchError: fetched by digest, and the bytes hash differently.
            ArtifactFormatError: larger than 4 MiB.
        """
        where = f"{self.registry}/{repository}{'@' if ':' in reference else ':'}{reference}"
        resp = self._send(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": _ACCEPT},
            stream=True,
        )
        try:
            self._check(resp, where)
            raw = self._read_capped(resp, MAX_MANIFEST_BYTES, f"{where} (manifest)")
        finally:
            resp.close()
        digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
        if DIGEST_RE.match(reference) and digest != reference:
            raise DigestMismatchError(
                f"{where}: the registry served a manifest with digest {digest}; refusing it"
            )
        return raw, digest, resp.headers.get("Content-Type", "")

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (following ``Link`` pagination, at most 100 pages)."""
        url = f"/v2/{repository}/tags/list?n=1000"
        tags: list[str] = []
        where = f"{self.registry}/{repository} (tags)"
        for _ in range(_MAX_TAG_PAGES):
            resp = self._send("GET", url, scope=f"repository:{repository}:pull", stream=True)
            try:
                self._check(resp, where)
                raw = self._read_capped(resp, _MAX_TAGS_BYTES, where)
            finally:
                resp.close()
            try:
                page = json.loads(raw).get("tags") or []
                tags += [t for t in page if isinstance(t, str)]
            except (ValueError, RecursionError, AttributeError, TypeError):
                raise DistributionError(f"{where}: not a tag list") from None
            match = _LINK_RE.search(resp.headers.get("Link", ""))
            if match is None:
                break
            url = str(httpx.URL(self._base_url()).join(match.group(1)))
            if not self._same_origin(url):
                raise DistributionError(f"{where}: the next-page link leaves the registry: {url}")
        return tags

    def fetch_blob(self, repository: str, desc: Descriptor, partial: Path) -> int:
        """Download a blob into ``partial``, verifying size and digest as it arrives.

        An existing ``partial`` file is resumed (``Range`` request); a server that
        ignores ranges restarts the download. On success ``partial`` holds exactly
        the blob; on a digest or size mismatch it is deleted.

        Returns:
            The bytes received over the network (less than ``desc.size`` when resumed).

        Raises:
            ArtifactFormatError: ``desc.size`` exceeds ``max_blob_bytes``.
            DigestMismatchError: too many or too few bytes, or another digest.
        """
        where = f"{self.registry}/{repository}@{desc.digest}"
        if desc.size > self.options.max_blob_bytes:
            raise ArtifactFormatError(
                f"{where}: the layer declares {desc.size} bytes, more than the "
                f"{self.options.max_blob_bytes}-byte maximum (distribution max-blob-bytes)"
            )
        hasher = hashlib.sha256()
        with open(partial, "a+b") as fh:
            fh.seek(0)
            while block := fh.read(_CHUNK):
                hasher.update(block)
            received = fh.tell()
            if received > desc.size:
                fh.truncate(0)
                hasher, received = hashlib.sha256(), 0
            attempt = 0
            fetched = 0
            deadline = self._clock() + self.options.deadline_s
            while received < desc.size or desc.size == 0:
                # identity encoding: Range offsets and the digest are over the raw bytes
                headers = {"Accept-Encoding": "identity"}
                if received:
                    headers["Range"] = f"bytes={received}-"
                resp = self._send(
                    "GET",
                    f"/v2/{repository}/blobs/{desc.digest}",
                    scope=f"repository:{repository}:pull",
                    headers=headers,
                    stream=True,
                    follow_redirects=True,
                )
                try:
                    self._check(resp, where)
                    if received and resp.status_code != 206:  # range ignored: start over
                        fh.seek(0)
                        fh.truncate(0)
                        hasher, received = hashlib.sha256(), 0
                    for chunk in resp.iter_bytes():  # as it arrives: nothing buffered is lost
                        _past(deadline, self._clock, where, self.options.deadline_s)
                        received += len(chunk)
                        if received > desc.size:
                            raise DigestMismatchError(
                                f"{where}: the registry sent more than the {desc.size} bytes "
                                "the manifest declares for this digest; refusing it"
                            )
                        hasher.update(chunk)
                        fh.write(chunk)
                        fetched += len(chunk)
                except httpx.TransportError as e:
                    if attempt >= self.options.retries:
                        raise RegistryUnavailableError(
                            f"{where}: download failed after {attempt + 1} attempts: {e}"
                        ) from e
                    self._delay(attempt)
                    attempt += 1
                    continue
                except DigestMismatchError:
                    fh.close()
                    partial.unlink(missing_ok=True)
                    raise
                finally:
                    resp.close()
                break
        actual = f"sha256:{hasher.hexdigest()}"
        if received != desc.size or actual != desc.digest:
            partial.unlink(missing_ok=True)
            raise DigestMismatchError(
                f"{where}: the registry served {received} bytes with digest {actual}, not the "
                f"{desc.size} bytes with digest {desc.digest} that the manifest names: the "
                "content was altered in the registry or on the way; nothing was installed"
            )
        return fetched

    def blob_exists(self, repository: str, digest: str) -> bool:
        """Whether the registry already has the blob (``HEAD``), scoped for push."""
        resp = self._send(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            scope=f"repository:{repository}:pull,push",
            follow_redirects=True,
        )
        if resp.status_code == 404:
            return False
        self._check(resp, f"{self.registry}/{repository}@{digest}")
        return True

    def upload_blob(self, repository: str, data: bytes, digest: str) -> None:
        """Upload a blob (monolithic POST + PUT), unless the registry already has it."""
        if self.blob_exists(repository, digest):
            return
        scope = f"repository:{repository}:pull,push"
        where = f"{self.registry}/{repository} (upload {digest})"
        resp = self._send("POST", f"/v2/{repository}/blobs/uploads/", scope=scope)
        self._check(resp, where)
        location = resp.headers.get("Location")
        if not location:
            raise DistributionError(f"{where}: the registry gave no upload location")
        url = httpx.URL(self._base_url() + "/").join(location)
        url = url.copy_merge_params({"digest": digest})
        resp = self._send(
            "PUT",
            str(url),
            scope=scope,
            headers={"Content-Type": "application/octet-stream"},
            content=data,
        )
        self._check(resp, where)

    def put_manifest(self, repository: str, tag: str, raw: bytes, media_type: str) -> str:
        """Store a manifest under ``tag``; returns its digest (checked against the registry's)."""
        where = f"{self.registry}/{repository}:{tag}"
        resp = self._send(
            "PUT",
            f"/v2/{repository}/manifests/{tag}",
            scope=f"repository:{repository}:pull,push",
            headers={"Content-Type": media_type},
            content=raw,
        )
        self._check(resp, where)
        digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
        served = resp.headers.get("Docker-Content-Digest")
        if served and served != digest:
            raise DigestMismatchError(
                f"{where}: the registry stored the manifest as {served}, not {digest}"
            )
        return digest

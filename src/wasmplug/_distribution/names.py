"""Package names to OCI repositories, and version selection among tags.

``wasmplug install acme:tool@1.2`` follows the wasm-pkg-tools conventions
(bytecodealliance/wasm-pkg-tools: ``wasm-pkg-common`` ``config`` and
``metadata.rs``, ``wasm-pkg-client`` ``oci/mod.rs``):

- the namespace (``acme``) is looked up in ``[namespace-registries]`` of
  ``platformdirs.user_config_dir("wasmplug")/distribution.toml``. A value is one of

  - a registry domain (``"example.com"``): its metadata is discovered at
    ``https://example.com/.well-known/wasm-pkg/registry.json`` (RFC 8615;
    ``{"oci": {"registry": R, "namespacePrefix": P}}``, or the older
    ``ociRegistry``/``ociNamespacePrefix`` keys), and the repository is
    ``R/P<namespace>/<name>`` as wkg builds it. No metadata (404) means
    ``R`` = the domain and ``P`` = ``""``;
  - a table ``{ registry = "host:port", namespace-prefix = "team/" }``: the same,
    without discovery;
  - a repository prefix with a ``/`` (``"127.0.0.1:5000/demo"``), a wasmplug
    shorthand: the repository is ``<prefix>/<name>``;

- tags are versions. Among a repository's tags that are semantic versions, the
  highest one matching the spec wins, under the same Cargo-style rules as
  :meth:`Registry.get` (``"1.2"`` is ``>=1.2.0, <2.0.0``; ``"=1.2.3"`` exactly;
  no spec: the highest release). A ``+build`` suffix is written ``_build`` in a
  tag, since OCI tags cannot hold ``+``.

Plain HTTP is used for discovery only on loopback hosts or with ``insecure``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import httpx
import platformdirs

from wasmplug._errors import (
    ArtifactNotFoundError,
    DistributionError,
    InvalidReferenceError,
    RegistryUnavailableError,
)
from wasmplug._semver import SEMVER_RE, matches_spec, version_key

from .client import DEFAULT_MAX_BLOB_BYTES
from .reference import Reference, is_loopback, parse_reference

__all__ = [
    "DistributionConfig",
    "default_config_path",
    "discover_registry",
    "select_tag",
    "split_package",
    "tag_for_version",
    "version_of_tag",
]

WELL_KNOWN_PATH = "/.well-known/wasm-pkg/registry.json"
_LABEL = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
_PACKAGE_RE = re.compile(rf"^({_LABEL}):({_LABEL})(?:@(\S+))?$")
_MAX_METADATA_BYTES = 64 * 1024


def default_config_path() -> Path:
    """``platformdirs.user_config_dir("wasmplug")/distribution.toml``."""
    return Path(platformdirs.user_config_dir("wasmplug")) / "distribution.toml"


@attrs.frozen
class NamespaceTarget:
    """Where one namespace's packages live (see the module doc for the three forms)."""

    domain: str | None = None
    registry: str | None = None
    namespace_prefix: str = ""
    repository_prefix: str | None = None


@attrs.frozen
class DistributionConfig:
    """The user's distribution settings (``distribution.toml``).

    Attributes:
        namespace_registries: Namespace -> where its packages live.
        max_blob_bytes: Largest layer accepted, bytes (``max-blob-bytes``).
        insecure_registries: ``host[:port]`` allowed over plain HTTP (``insecure``).
    """

    namespace_registries: Mapping[str, NamespaceTarget] = attrs.field(factory=dict)
    max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES
    insecure_registries: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> DistributionConfig:
        """Read ``path`` (default :func:`default_config_path`); a missing file is empty.

        Raises:
            DistributionError: the file is not TOML, or has unknown keys or bad values
                (every problem is listed).
        """
        file = Path(path) if path is not None else default_config_path()
        try:
            doc = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:
            raise DistributionError(f"cannot read {file}: {e}") from None
        problems: list[str] = []
        for key in set(doc) - {"namespace-registries", "max-blob-bytes", "insecure"}:
            problems.append(f"{key}: unknown key")
        targets: dict[str, NamespaceTarget] = {}
        mapping = doc.get("namespace-registries", {})
        if not isinstance(mapping, dict):
            problems.append("namespace-registries: must be a table")
            mapping = {}
        for ns, value in mapping.items():
            target = _target(value)
            if target is None:
                problems.append(
                    f"namespace-registries.{ns}: use a domain, a 'host[:port]/prefix', or "
                    "{ registry = 'host[:port]', namespace-prefix = '...' }"
                )
            else:
                targets[ns] = target
        max_bytes = doc.get("max-blob-bytes", DEFAULT_MAX_BLOB_BYTES)
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
            problems.append("max-blob-bytes: must be a positive integer (bytes)")
        insecure = doc.get("insecure", [])
        if not isinstance(insecure, list) or not all(isinstance(h, str) for h in insecure):
            problems.append("insecure: must be a list of 'host[:port]' strings")
        if problems:
            raise DistributionError(f"{file}: " + "; ".join(sorted(problems)))
        return cls(targets, max_bytes, tuple(insecure))


def _target(value: Any) -> NamespaceTarget | None:
    if isinstance(value, str) and value:
        if "/" in value:
            try:
                parse_reference(value.rstrip("/") + ":x")
            except InvalidReferenceError:
                return None
            return NamespaceTarget(repository_prefix=value.rstrip("/"))
        return NamespaceTarget(domain=value)
    if isinstance(value, dict) and set(value) <= {"registry", "namespace-prefix"}:
        registry, prefix = value.get("registry"), value.get("namespace-prefix", "")
        if isinstance(registry, str) and registry and isinstance(prefix, str):
            return NamespaceTarget(registry=registry, namespace_prefix=prefix)
    return None


def split_package(text: str) -> tuple[str, str, str | None] | None:
    """``"acme:tool@1.2"`` -> ``("acme", "tool", "1.2")``; ``None`` if not a package name."""
    match = _PACKAGE_RE.match(text)
    return (match.group(1), match.group(2), match.group(3)) if match else None


def discover_registry(
    domain: str, *, insecure: bool = False, transport: httpx.BaseTransport | None = None
) -> tuple[str, str]:
    """``(registry, namespace prefix)`` from ``https://DOMAIN/.well-known/wasm-pkg/registry.json``.

    A 404 means "no metadata": the domain itself, no prefix.

    Raises:
        RegistryUnavailableError: the domain cannot be reached.
        DistributionError: the metadata is malformed, or names no OCI registry.
    """
    host = domain[1 : domain.index("]")] if domain.startswith("[") else domain.rsplit(":", 1)[0]
    schemes = ["https"] + (["http"] if insecure or is_loopback(host) else [])
    last: Exception | None = None
    with httpx.Client(transport=transport, timeout=10.0, follow_redirects=True) as http:
        for scheme in schemes:
            url = f"{scheme}://{domain}{WELL_KNOWN_PATH}"
            try:
                resp = http.get(url)
            except httpx.TransportError as e:
                last = e
                continue
            if resp.status_code == 404:
                return domain, ""
            if resp.status_code != 200:
                raise DistributionError(f"{url}: HTTP {resp.status_code}")
            if len(resp.content) > _MAX_METADATA_BYTES:
                raise DistributionError(f"{url}: larger than {_MAX_METADATA_BYTES} bytes")
            return _parse_metadata(resp.content, url, domain)
    raise RegistryUnavailableError(f"cannot fetch registry metadata from {domain}: {last}")


def _parse_metadata(raw: bytes, url: str, domain: str) -> tuple[str, str]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise DistributionError(f"{url}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise DistributionError(f"{url}: not a JSON object")
    oci = doc.get("oci")
    if not isinstance(oci, dict):
        oci = {"registry": doc.get("ociRegistry"), "namespacePrefix": doc.get("ociNamespacePrefix")}
    registry = oci.get("registry") or (domain if "oci" in doc else None)
    if registry is None and oci.get("namespacePrefix") is not None:
        registry = domain
    if registry is None:
        protocols = doc.get("preferredProtocol") or ", ".join(k for k in doc if k != "oci")
        raise DistributionError(
            f"{url} names no OCI registry (protocols: {protocols or 'none'}); wasmplug "
            "installs from OCI registries only"
        )
    prefix = oci.get("namespacePrefix") or ""
    if not isinstance(registry, str) or not isinstance(prefix, str):
        raise DistributionError(f"{url}: 'registry' and 'namespacePrefix' must be strings")
    return registry, prefix


def package_repository(
    namespace: str,
    name: str,
    config: DistributionConfig,
    *,
    transport: httpx.BaseTransport | None = None,
) -> Reference | None:
    """The repository (no tag) for package ``namespace:name``; ``None`` if not mapped."""
    target = config.namespace_registries.get(namespace)
    if target is None:
        return None
    if target.repository_prefix is not None:
        text = f"{target.repository_prefix}/{name}"
    else:
        registry, prefix = target.registry, target.namespace_prefix
        if target.domain is not None:
            insecure = target.domain in config.insecure_registries
            registry, prefix = discover_registry(
                target.domain, insecure=insecure, transport=transport
            )
        text = f"{registry}/{prefix}{namespace}/{name}"
    try:
        return parse_reference(text)
    except InvalidReferenceError as e:
        raise InvalidReferenceError(f"{namespace}:{name} maps to {text!r}, which {e}") from None


def tag_for_version(version: str) -> str:
    """The tag a version is pushed under (``+`` is not allowed in tags: written ``_``)."""
    return version.replace("+", "_")


def version_of_tag(tag: str) -> str | None:
    """The semantic version a tag names, or ``None``."""
    version = tag.replace("_", "+")
    return version if SEMVER_RE.match(version) else None


def select_tag(tags: list[str], spec: str | None, where: str) -> str:
    """The tag of the highest version matching ``spec`` (``None``: highest release).

    Raises:
        ArtifactNotFoundError: no tag matches (the message lists the versions seen).
        InvalidReferenceError: ``spec`` is not a version spec.
    """
    versions = {v: t for t in tags if (v := version_of_tag(t)) is not None}
    try:
        if spec is None:
            pool = [v for v in versions if version_key(v)[3] == 1] or list(versions)
        else:
            pool = [v for v in versions if matches_spec(v, spec)]
    except ValueError as e:
        raise InvalidReferenceError(str(e)) from None
    if not pool:
        seen = ", ".join(sorted(versions, key=version_key)) or "none"
        wanted = f" matching {spec!r}" if spec else ""
        raise ArtifactNotFoundError(f"{where}: no version tag{wanted} (versions: {seen})")
    return versions[max(pool, key=version_key)]

"""Push, pull and install plugins through OCI registries.

``install`` is a file install with a different source: the reference resolves
to a manifest digest (a tag through ``HEAD``, a version spec through the tag
list), the one ``application/wasm`` layer is downloaded with its digest checked
as it arrives (or read from the blob cache, re-verified), and the bytes then go
through :meth:`Registry.install` unchanged: signature and trust scope, declared
imports, name pinning, rollback and version conflicts. The index records the
reference and the manifest digest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs
import httpx

from wasmplug._errors import (
    ArtifactFormatError,
    InvalidReferenceError,
    LockfileError,
    ManifestError,
)
from wasmplug._sandbox.manifest import MANIFEST_SECTION, Manifest
from wasmplug._trust import wasm_sections as ws
from wasmplug._trust.keys import PublicKey
from wasmplug._trust.registry import OciOrigin, PluginInfo, Registry
from wasmplug._trust.store import TrustedKey, TrustStore

from .artifact import (
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    build_artifact,
    digest_of,
    parse_manifest,
)
from .cache import BlobCache
from .client import RegistryClient, TransportOptions
from .names import (
    DistributionConfig,
    package_repository,
    select_tag,
    split_package,
    tag_for_version,
)
from .reference import Reference, looks_like_reference, parse_reference

__all__ = [
    "PackageName",
    "PullResult",
    "PushResult",
    "Session",
    "embedded_manifest",
    "install_source",
    "pull_plugin",
    "push_plugin",
    "resolve_source",
]


@attrs.frozen
class PushResult:
    """What :func:`wasmplug.push_plugin` published.

    Attributes:
        reference: The reference written, ``host[:port]/repo:tag``.
        manifest_digest, layer_digest: ``sha256:...`` of the manifest and of the
            layer (the component file).
    """

    reference: str
    manifest_digest: str
    layer_digest: str


@attrs.frozen
class PullResult:
    """A component fetched from a registry, verified against its digests
    (:func:`wasmplug.pull_plugin`). Its signature is checked when it is installed
    or loaded, not by the pull.

    Attributes:
        reference: What was pulled: ``host[:port]/repo:tag``, or ``...@sha256:DIGEST``
            when pulled by digest.
        manifest_digest, layer_digest: ``sha256:...`` of the manifest and the layer.
        data: The component bytes (the layer, byte for byte).
        downloaded: Bytes fetched over the network for manifest and layer (0
            when both came from the cache).
    """

    reference: str
    manifest_digest: str
    layer_digest: str
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    downloaded: int


def embedded_manifest(data: bytes, where: str) -> Manifest:
    """The manifest embedded in a packed component (read without verifying anything).

    Raises:
        ManifestError: no ``wasmplug-manifest`` section, or it is invalid.
    """
    raw = ws.get_custom_section(data, MANIFEST_SECTION)
    if raw is None:
        raise ManifestError(
            where,
            [f"no embedded {MANIFEST_SECTION} section: pack the plugin before pushing it"],
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{where} (embedded)", ["not UTF-8 text"]) from None
    return Manifest.from_toml(text, source=f"{where} (embedded)")


@attrs.frozen
class PackageName:
    """A package name, ``namespace:name[@spec]`` (``acme:tool@1.2``)."""

    namespace: str
    name: str
    spec: str | None = None

    def __str__(self) -> str:
        return f"{self.namespace}:{self.name}" + (f"@{self.spec}" if self.spec else "")


def resolve_source(text: str, config: DistributionConfig) -> Reference | PackageName | None:
    """Whether ``text`` names something in an OCI registry, and what.

    Returns the parsed OCI reference, or the package name when its namespace is
    mapped in ``config``; ``None`` when ``text`` is an existing path or neither
    (the caller then treats it as a path or a local plugin name).

    Raises:
        InvalidReferenceError: ``text`` starts with ``oci://`` but is malformed.
    """
    if os.path.exists(text):
        return None
    if looks_like_reference(text):
        return parse_reference(text)
    package = split_package(text)
    if package is not None and package[0] in config.namespace_registries:
        return PackageName(*package)
    return None


class Session:
    """Registry clients, the blob cache and settings for a run of operations.

    Args:
        config: Namespace mapping and limits; default: the user's ``distribution.toml``.
        cache: The blob cache; default: under the user cache dir.
        insecure: Allow plain HTTP for every registry (else only loopback and
            the config's ``insecure`` list).
        options: Retries, timeouts; ``max_blob_bytes`` defaults to the config's.
        transport: An httpx transport for every client (tests).

    Use as a context manager (closes the connection pools).
    """

    def __init__(
        self,
        *,
        config: DistributionConfig | None = None,
        cache: BlobCache | None = None,
        insecure: bool = False,
        options: TransportOptions | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config if config is not None else DistributionConfig.load()
        self.cache = cache if cache is not None else BlobCache()
        self.insecure = insecure
        self.options = options or TransportOptions(max_blob_bytes=self.config.max_blob_bytes)
        self._transport = transport
        self._clients: dict[str, RegistryClient] = {}

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def client(self, registry: str) -> RegistryClient:
        """The (cached) client for ``registry``."""
        if registry not in self._clients:
            insecure = self.insecure or registry in self.config.insecure_registries
            self._clients[registry] = RegistryClient(
                registry,
                options=attrs.evolve(self.options, insecure=insecure or self.options.insecure),
                transport=self._transport,
            )
        return self._clients[registry]

    # -- references ----------------------------------------------------------------------

    def reference_for(self, text: str) -> Reference:
        """Resolve an OCI reference or a mapped package name (see :meth:`resolve`).

        Raises:
            InvalidReferenceError: neither a reference nor a mapped package name.
            ArtifactNotFoundError: no tag matches.
        """
        found = resolve_source(text, self.config)
        if found is None:
            raise InvalidReferenceError(
                f"{text!r} is neither an OCI reference ([oci://]HOST[:PORT]/REPO[:TAG]"
                "[@sha256:DIGEST]) nor a package name whose namespace is mapped in "
                "distribution.toml [namespace-registries]"
            )
        return self.resolve(found)

    def resolve(self, target: Reference | PackageName) -> Reference:
        """A reference with a tag or a digest.

        A package name goes to its namespace's repository; a reference without tag
        or digest, and a package name, then take the highest version tag matching
        the spec (see :func:`~.names.select_tag`).

        Raises:
            InvalidReferenceError: the package's namespace is not mapped.
            ArtifactNotFoundError: no tag matches.
        """
        spec: str | None = None
        if isinstance(target, PackageName):
            mapped = package_repository(target.namespace, target.name, self.config)
            if mapped is None:
                raise InvalidReferenceError(
                    f"{target}: namespace {target.namespace!r} is not mapped to a registry "
                    "in distribution.toml [namespace-registries]"
                )
            ref, spec = mapped, target.spec
        else:
            ref = target
        if ref.tag is None and ref.digest is None:
            tags = self.client(ref.registry).list_tags(ref.repository)
            ref = ref.with_tag(select_tag(tags, spec, str(ref)))
        return ref

    # -- operations ----------------------------------------------------------------------

    def push(self, data: bytes, target: str | Reference, *, where: str = "<bytes>") -> PushResult:
        """Publish a packed component as a Wasm OCI artifact.

        Args:
            data: The component file (packed, normally signed); uploaded unchanged.
            target: ``host/repo[:tag]``; without a tag, the plugin's version is the tag.
            where: The file name, for messages.

        Raises:
            ManifestError: no embedded manifest. InvalidComponentError: not a component.
            InvalidReferenceError: bad ``target`` (a digest cannot be pushed to).
            DistributionError and subclasses: the registry refused or failed.
        """
        manifest = embedded_manifest(data, where)
        ref = target if isinstance(target, Reference) else parse_reference(target)
        if ref.digest is not None:
            raise InvalidReferenceError(f"{ref}: push to a tag, not a digest")
        if ref.tag is None:
            ref = ref.with_tag(tag_for_version(manifest.version))
        artifact = build_artifact(
            data, name=manifest.name, version=manifest.version, description=manifest.description
        )
        client = self.client(ref.registry)
        client.upload_blob(ref.repository, artifact.config, digest_of(artifact.config))
        client.upload_blob(ref.repository, artifact.layer, artifact.layer_digest)
        tag = ref.tag or tag_for_version(manifest.version)
        digest = client.put_manifest(ref.repository, tag, artifact.manifest, MANIFEST_MEDIA_TYPE)
        return PushResult(str(ref), digest, artifact.layer_digest)

    def pull(self, source: str | Reference, *, expect_layer: str | None = None) -> PullResult:
        """Fetch a component by reference, verifying manifest and layer digests.

        Args:
            source: An OCI reference or a mapped package name (see :meth:`reference_for`).
            expect_layer: Refuse unless the manifest names this layer digest (lockfiles).

        Raises:
            ArtifactFormatError: not a Wasm OCI artifact, or the layer is too large.
            DigestMismatchError: manifest or layer bytes differ from their digests.
            LockfileError: the layer digest is not ``expect_layer``.
            DistributionError and subclasses: the registry failed.
        """
        ref = self.resolve(source) if isinstance(source, Reference) else self.reference_for(source)
        return self._pull(ref, expect_layer)

    def _pull(self, ref: Reference, expect_layer: str | None) -> PullResult:
        """Pull a resolved reference (it has a digest, or a tag)."""
        client = self.client(ref.registry)
        downloaded = 0
        tag_or_digest = ref.digest or ref.tag or ""
        # a tag: HEAD names its digest (registries answer Docker-Content-Digest), so a
        # cached manifest costs one small request; without the header, GET by tag
        known = ref.digest or client.resolve(ref.repository, tag_or_digest)
        content_type = MANIFEST_MEDIA_TYPE
        cached = self.cache.get(known) if known is not None else None
        if known is not None and cached is not None:
            raw, digest = cached, known
        else:
            raw, digest, content_type = client.get_manifest(ref.repository, known or tag_or_digest)
            downloaded += len(raw)
        manifest = parse_manifest(raw, str(ref), content_type)
        if manifest.layer.media_type != LAYER_MEDIA_TYPE:  # pragma: no cover - parse checks
            raise ArtifactFormatError(f"{ref}: no {LAYER_MEDIA_TYPE} layer")
        if expect_layer is not None and manifest.layer.digest != expect_layer:
            raise LockfileError(
                f"{ref.pinned(digest)}: layer is {manifest.layer.digest}, but the lockfile "
                f"pins {expect_layer}"
            )
        self.cache.put(digest, raw)
        data = self.cache.get(manifest.layer.digest)
        if data is None:
            # The process downloading it gives up after its own deadline_s.
            wait_s = client.options.deadline_s + client.options.timeout_s
            with self.cache.downloading(manifest.layer.digest, timeout_s=wait_s) as partial:
                data = self.cache.get(manifest.layer.digest)  # another process may have done it
                if data is None:
                    downloaded += client.fetch_blob(ref.repository, manifest.layer, partial)
                    data = self.cache.adopt(manifest.layer.digest, partial)
        return PullResult(str(ref), digest, manifest.layer.digest, data, downloaded)

    def install(
        self,
        source: str | Reference,
        *,
        registry: Registry,
        trust_store: TrustStore,
        trusted_keys: Iterable[TrustedKey | PublicKey | bytes] = (),
        allow_unsigned: bool = False,
        force: bool = False,
        compile: Callable[[bytes], None] | None = None,
        expect_layer: str | None = None,
    ) -> tuple[PluginInfo, PullResult]:
        """Pull ``source``, then install it exactly as a file install does.

        Returns:
            The installed plugin (its ``reference``/``manifest_digest`` set) and the pull.

        Raises:
            Everything :meth:`pull` and :meth:`Registry.install` raise. Nothing is
            installed when any check fails.
        """
        ref = self.resolve(source) if isinstance(source, Reference) else self.reference_for(source)
        pulled = self._pull(ref, expect_layer)
        shown = ref if ref.tag else ref.pinned(pulled.manifest_digest)
        info = registry.install(
            pulled.data,
            trust_store=trust_store,
            trusted_keys=trusted_keys,
            allow_unsigned=allow_unsigned,
            force=force,
            compile=compile,
            oci=OciOrigin(str(shown), pulled.manifest_digest),
        )
        return info, pulled


def push_plugin(
    source: str | os.PathLike[str] | bytes, ref: str, *, insecure: bool = False
) -> PushResult:
    """Publish a packed (normally signed) plugin to an OCI registry.

    The artifact follows the CNCF TAG-Runtime Wasm OCI layout: an image manifest,
    a ``application/vnd.wasm.config.v0+json`` config listing the component's
    imports and exports, and one ``application/wasm`` layer holding the file
    byte for byte. Pushes are reproducible: the same file gives the same digests.

    Args:
        source: The ``.wasm`` file (path) or its bytes, with an embedded manifest.
        ref: ``[oci://]host[:port]/repo[:tag]``; without a tag, the plugin's version.
        insecure: Allow plain HTTP to a non-loopback registry.

    Returns:
        The reference written and the manifest and layer digests.

    Raises:
        ManifestError: no embedded manifest. InvalidComponentError: not a component.
        InvalidReferenceError: ``ref`` is malformed or names a digest.
        DistributionError: the registry is unreachable, refuses the credentials
            (see "Distributing plugins" for where they come from) or the upload.
        OSError: ``source`` cannot be read.
    """
    if isinstance(source, bytes | bytearray):
        data, where = bytes(source), "<bytes>"
    else:
        data, where = Path(source).read_bytes(), os.fspath(source)
    with Session(insecure=insecure) as session:
        return session.push(data, ref, where=where)


def install_source(
    source: str | os.PathLike[str] | bytes,
    *,
    registry: Registry,
    trust_store: TrustStore,
    trusted_keys: Iterable[TrustedKey | PublicKey | bytes] = (),
    allow_unsigned: bool = False,
    force: bool = False,
    compile: Callable[[bytes], None] | None = None,
    insecure: bool = False,
) -> PluginInfo:
    """Install a file, component bytes, or what an OCI reference or mapped package name
    (:func:`resolve_source`) names: pulled first, then installed exactly as a file is.

    Raises:
        DistributionError: (references) as for :meth:`Session.install`.
        LoadError: and the other refusals of :meth:`Registry.install`.
    """
    if isinstance(source, str) and not os.path.exists(source):
        config = DistributionConfig.load()
        if resolve_source(source, config) is not None:
            with Session(config=config, insecure=insecure) as session:
                info, _ = session.install(
                    source,
                    registry=registry,
                    trust_store=trust_store,
                    trusted_keys=trusted_keys,
                    allow_unsigned=allow_unsigned,
                    force=force,
                    compile=compile,
                )
            return info
    return registry.install(
        source,
        trust_store=trust_store,
        trusted_keys=trusted_keys,
        allow_unsigned=allow_unsigned,
        force=force,
        compile=compile,
    )


def pull_plugin(ref: str, *, insecure: bool = False) -> PullResult:
    """Fetch a plugin from an OCI registry, checking the manifest and layer digests.

    Uses and fills the blob cache (``platformdirs.user_cache_dir("wasmplug")/oci``):
    pulling a digest already cached downloads nothing.

    Args:
        ref: An OCI reference (``...:tag``, ``...@sha256:DIGEST``, or no tag for the
            highest version tag) or a package name ``ns:name[@spec]`` whose namespace
            is mapped in ``distribution.toml``.
        insecure: Allow plain HTTP to a non-loopback registry.

    Raises:
        DistributionError: and its subclasses, as for :meth:`PluginHost.install`.
    """
    with Session(insecure=insecure) as session:
        return session.pull(ref)

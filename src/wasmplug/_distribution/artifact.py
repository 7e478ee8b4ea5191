"""The Wasm OCI artifact: what ``push`` writes and what ``pull`` accepts.

Layout of the CNCF TAG-Runtime Wasm working group's "Wasm OCI Artifact"
(https://tag-runtime.cncf.io/wgs/wasm/deliverables/wasm-oci-artifact/), as the
Bytecode Alliance's ``oci-wasm`` crate (``src/lib.rs``, ``src/config.rs``) and
wasm-pkg-tools' ``wkg oci push`` write it::

    image manifest  application/vnd.oci.image.manifest.v1+json, schemaVersion 2
    ├── config      application/vnd.wasm.config.v0+json
    │     {"created": RFC 3339, "architecture": "wasm", "os": "wasip2",
    │      "layerDigests": ["sha256:..."],                 (the layers, in order)
    │      "component": {"exports": [...], "imports": [...]}}
    └── layers[0]   application/wasm: the packed, signed component, byte for byte
                    (annotated org.opencontainers.image.title = "<ns>_<name>.wasm",
                    the file name ``oras pull`` writes it to)

The signature travels inside the layer (the component's ``signature`` section),
so nothing about trust depends on the registry or on the manifest.

``created`` follows the reproducible-builds convention: ``SOURCE_DATE_EPOCH``
when set, else the Unix epoch. Pushing the same file twice, to any registry,
gives the same config and manifest digests, which is what lets a mirror serve
the digests a lockfile pins.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from typing import Any

import attrs

from wasmplug._errors import ArtifactFormatError
from wasmplug._trust.component_info import read_component_info

from .reference import DIGEST_RE

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "IMAGE_INDEX_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "MAX_MANIFEST_BYTES",
    "Artifact",
    "Descriptor",
    "WasmManifest",
    "build_artifact",
    "digest_of",
    "parse_manifest",
]

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
IMAGE_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.wasm.config.v0+json"
LAYER_MEDIA_TYPE = "application/wasm"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Manifests larger than this are refused (distribution's own limit is 4 MiB)."""

_TITLE = "org.opencontainers.image.title"
_VERSION = "org.opencontainers.image.version"
_DESCRIPTION = "org.opencontainers.image.description"


def digest_of(data: bytes) -> str:
    """``"sha256:<hex>"`` of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@attrs.frozen
class Descriptor:
    """An OCI content descriptor: media type, digest and size (bytes)."""

    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@attrs.frozen
class WasmManifest:
    """A parsed Wasm artifact manifest.

    Attributes:
        config: The config descriptor (media type ``application/vnd.wasm.config.v0+json``).
        layer: The one ``application/wasm`` layer.
        annotations: The manifest's annotations (title, version...).
    """

    config: Descriptor
    layer: Descriptor
    annotations: dict[str, str]


@attrs.frozen
class Artifact:
    """Everything ``push`` uploads for one component: config, layer, manifest bytes."""

    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def manifest_digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def layer_digest(self) -> str:
        return digest_of(self.layer)


def _file_name(name: str) -> str:
    """``acme:tool`` -> ``acme_tool.wasm`` (no ``:``, which some file systems refuse)."""
    return f"{name.replace(':', '_') or 'plugin'}.wasm"


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    seconds = int(epoch) if epoch.isdigit() else 0
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_artifact(
    component: bytes, *, name: str = "", version: str = "", description: str = ""
) -> Artifact:
    """The config, layer and manifest for a packed (and normally signed) component.

    Args:
        component: The component file's bytes; they become the layer unchanged.
        name, version, description: Manifest annotations
            (``org.opencontainers.image.title/version/description``); empty ones are left out.

    Raises:
        InvalidComponentError: ``component`` is not a component binary.
    """
    info = read_component_info(component)
    layer_digest = digest_of(component)
    config_doc = {
        "created": _created(),
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
        "component": {"exports": info.export_names, "imports": info.import_names},
    }
    config = json.dumps(config_doc, separators=(",", ":")).encode()
    annotations = {
        key: value
        for key, value in ((_TITLE, name), (_VERSION, version), (_DESCRIPTION, description))
        if value
    }
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": Descriptor(CONFIG_MEDIA_TYPE, digest_of(config), len(config)).to_json(),
        "layers": [
            {
                **Descriptor(LAYER_MEDIA_TYPE, layer_digest, len(component)).to_json(),
                # the file name `oras pull` writes the layer to
                "annotations": {_TITLE: _file_name(name)},
            }
        ],
    }
    if annotations:
        manifest_doc["annotations"] = annotations
    manifest = json.dumps(manifest_doc, separators=(",", ":")).encode()
    return Artifact(config, component, manifest)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ArtifactFormatError(f"{where}: a descriptor must be a JSON object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str):
        raise ArtifactFormatError(f"{where}: mediaType is missing")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise ArtifactFormatError(f"{where}: digest {digest!r} is not sha256:<64 hex digits>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArtifactFormatError(f"{where}: size {size!r} is not a byte count")
    return Descriptor(media_type, digest, size)


def parse_manifest(raw: bytes, where: str, content_type: str | None = None) -> WasmManifest:
    """Check that ``raw`` is a Wasm OCI artifact manifest and return its parts.

    Args:
        raw: The manifest bytes as served.
        where: The reference, for messages.
        content_type: The response's Content-Type, used when the manifest has no
            ``mediaType`` field.

    Raises:
        ArtifactFormatError: not JSON, not an image manifest (an image index, a
            Docker manifest...), a config media type other than
            ``application/vnd.wasm.config.v0+json``, not exactly one
            ``application/wasm`` layer, or a malformed descriptor.
    """
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ArtifactFormatError(f"{where}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ArtifactFormatError(f"{where}: manifest is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ArtifactFormatError(f"{where}: manifest is not a JSON object")
    media_type = doc.get("mediaType") or (content_type or "").split(";")[0].strip()
    if media_type == IMAGE_INDEX_MEDIA_TYPE or "manifests" in doc:
        raise ArtifactFormatError(
            f"{where} is an image index (a multi-platform image), not a Wasm artifact"
        )
    if media_type != MANIFEST_MEDIA_TYPE or doc.get("schemaVersion") != 2:
        raise ArtifactFormatError(
            f"{where}: not an OCI image manifest (mediaType {media_type!r}, schemaVersion "
            f"{doc.get('schemaVersion')!r}); a Wasm artifact uses {MANIFEST_MEDIA_TYPE}"
        )
    config = _descriptor(doc.get("config"), f"{where}: config")
    if config.media_type != CONFIG_MEDIA_TYPE:
        raise ArtifactFormatError(
            f"{where}: config media type is {config.media_type!r}, not {CONFIG_MEDIA_TYPE}: "
            "not a Wasm OCI artifact (is it a container image?)"
        )
    layers_doc = doc.get("layers")
    if not isinstance(layers_doc, list):
        raise ArtifactFormatError(f"{where}: layers is missing")
    layers = [_descriptor(d, f"{where}: layers[{i}]") for i, d in enumerate(layers_doc)]
    wasm = [d for d in layers if d.media_type == LAYER_MEDIA_TYPE]
    if len(wasm) != 1:
        raise ArtifactFormatError(
            f"{where}: has {len(wasm)} {LAYER_MEDIA_TYPE} layers; a plugin artifact has exactly one"
        )
    annotations_doc = doc.get("annotations") or {}
    annotations = (
        {str(k): str(v) for k, v in annotations_doc.items()}
        if isinstance(annotations_doc, dict)
        else {}
    )
    return WasmManifest(config, wasm[0], annotations)

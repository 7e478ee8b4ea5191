"""OCI references and the Wasm artifact manifest: parsing, and refusing everything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.oci_registry import plugin_bytes
from wasmplug import ArtifactFormatError, InvalidReferenceError
from wasmplug._distribution.artifact import (
    CONFIG_MEDIA_TYPE,
    build_artifact,
    digest_of,
    parse_manifest,
)
from wasmplug._distribution.reference import (
    Reference,
    is_loopback,
    looks_like_reference,
    parse_reference,
)

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ghcr.io/acme/tool:1.2.0", Reference("ghcr.io", "acme/tool", "1.2.0")),
        ("oci://127.0.0.1:5000/demo/csv", Reference("127.0.0.1:5000", "demo/csv")),
        (f"localhost/a@{D}", Reference("localhost", "a", None, D)),
        (f"r.io:443/a/b-c.d__e:v1@{D}", Reference("r.io:443", "a/b-c.d__e", "v1", D)),
        ("[::1]:5000/x:y", Reference("[::1]:5000", "x", "y")),
    ],
    ids=["tag", "scheme-no-tag", "digest", "tag-and-digest", "ipv6"],
)
def test_parse_reference(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected
    assert looks_like_reference(text)


@pytest.mark.parametrize(
    "text",
    [
        "acme/tool:1.0",  # no registry host: no implicit docker.io
        "oci://ghcr.io/Acme/tool",  # uppercase repository
        "oci://ghcr.io/acme/tool:-x",  # bad tag
        "oci://ghcr.io/acme/tool@sha256:1234",  # short digest
        "oci://ghcr.io/acme/tool@md5:" + "a" * 32,  # other algorithm
        "oci://ghcr.io/acme//tool",  # empty component
        "oci://ghcr.io/" + "a" * 300,  # too long
        "oci://",
    ],
)
def test_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse_reference(text)


@pytest.mark.parametrize(
    "text", ["plugins/x.wasm", "./a/b", "../x", "acme:tool@1.2", "ghcr.io/acme/x.wasm", "name"]
)
def test_paths_and_names_are_not_references(text: str) -> None:
    assert not looks_like_reference(text)


def test_oci_scheme_is_always_a_reference_so_typos_are_reported() -> None:
    assert looks_like_reference("oci://not a reference")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
     ("10.0.0.1", False), ("localhost.example.com", False), ("ghcr.io", False)],
)  # fmt: skip
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_build_artifact_is_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    data = plugin_bytes("acme:tool", "1.0.0")
    first, second = build_artifact(data, name="acme:tool"), build_artifact(data, name="acme:tool")
    assert first.manifest == second.manifest
    assert json.loads(first.config)["created"] == "1970-01-01T00:00:00Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert json.loads(build_artifact(data).config)["created"] == "2023-11-14T22:13:20Z"
    parsed = parse_manifest(first.manifest, "x")
    assert parsed.layer.digest == digest_of(data) == first.layer_digest
    assert parsed.config.digest == digest_of(first.config)


def _manifest(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": D, "size": 2},
        "layers": [{"mediaType": "application/wasm", "digest": D, "size": 10}],
    }
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\xff", "not JSON"),
        (b"[" * 50_000, "not JSON"),
        (b"[]", "not a JSON object"),
        (_manifest(manifests=[]), "image index"),
        (_manifest(mediaType="application/vnd.docker.distribution.manifest.v2+json"), "not an OCI"),
        (_manifest(schemaVersion=1), "not an OCI"),
        (
            _manifest(
                config={
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": D,
                    "size": 2,
                }
            ),
            "container image",
        ),
        (_manifest(layers=[]), "has 0 application/wasm layers"),
        (
            _manifest(layers=[{"mediaType": "application/wasm", "digest": D, "size": 1}] * 2),
            "has 2 application/wasm layers",
        ),
        (
            _manifest(layers=[{"mediaType": "application/wasm", "digest": "sha256:1", "size": 1}]),
            "not sha256",
        ),
        (
            _manifest(layers=[{"mediaType": "application/wasm", "digest": D, "size": -1}]),
            "not a byte count",
        ),
        (
            _manifest(layers=[{"mediaType": "application/wasm", "digest": D, "size": True}]),
            "not a byte count",
        ),
        (b" " * (4 * 1024 * 1024 + 1), "larger than"),
    ],
    ids=[
        "bytes",
        "deep",
        "array",
        "index",
        "docker",
        "schema1",
        "image-config",
        "no-layer",
        "two-layers",
        "bad-digest",
        "negative-size",
        "bool-size",
        "huge",
    ],
)
def test_parse_manifest_refuses(raw: bytes, problem: str) -> None:
    with pytest.raises(ArtifactFormatError, match=problem):
        parse_manifest(raw, "ref")


@given(st.binary(max_size=512) | st.text(max_size=512).map(str.encode))
def test_parse_manifest_never_raises_anything_else(raw: bytes) -> None:
    try:
        parse_manifest(raw, "ref")
    except ArtifactFormatError:
        pass


@given(st.text(max_size=300))
def test_parse_reference_never_raises_anything_else(text: str) -> None:
    try:
        parse_reference(text)
    except InvalidReferenceError:
        pass

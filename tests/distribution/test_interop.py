"""Interoperability with another OCI client: oras-py (the ``oras`` PyPI package).

What wasmplug pushes, ``oras pull`` fetches as a file; what ``oras push`` publishes with
the Wasm config and layer media types, wasmplug installs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.oci_registry import RunningRegistry, plugin_bytes
from wasmplug import TrustStore
from wasmplug._distribution.artifact import CONFIG_MEDIA_TYPE
from wasmplug._distribution.cache import BlobCache
from wasmplug._distribution.operations import Session
from wasmplug._trust import signing
from wasmplug._trust.registry import Registry

oras_client = pytest.importorskip("oras.client")


def test_oras_pulls_what_wasmplug_pushed(
    tmp_path: Path, oci_registry: RunningRegistry, repo: str, pair: signing.KeyPair
) -> None:
    data = plugin_bytes("acme:interop", "1.0.0", pair=pair)
    with Session(cache=BlobCache(tmp_path / "c")) as s:
        s.push(data, f"{oci_registry.host}/{repo}:1.0.0")
    client = oras_client.OrasClient(hostname=oci_registry.host, insecure=True)
    files = client.pull(target=f"{oci_registry.host}/{repo}:1.0.0", outdir=str(tmp_path / "out"))
    assert [Path(f).name for f in files] == ["acme_interop.wasm"]
    assert Path(files[0]).read_bytes() == data


def test_wasmplug_installs_what_oras_pushed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
) -> None:
    data = plugin_bytes("acme:foreign", "2.0.0", pair=pair)
    monkeypatch.chdir(tmp_path)  # oras-py pushes files relative to the working directory
    Path("plugin.wasm").write_bytes(data)
    Path("config.json").write_text(json.dumps({"architecture": "wasm", "os": "wasip2"}))
    client = oras_client.OrasClient(hostname=oci_registry.host, insecure=True)
    client.push(
        target=f"{oci_registry.host}/{repo}:2.0.0",
        files=["plugin.wasm:application/wasm"],
        manifest_config=f"config.json:{CONFIG_MEDIA_TYPE}",
    )
    with Session(cache=BlobCache(tmp_path / "c")) as s:
        info, pulled = s.install(
            f"{oci_registry.host}/{repo}:2.0.0",
            registry=Registry(tmp_path / "reg"),
            trust_store=TrustStore(trust_file),
        )
    assert (info.name, info.version) == ("acme:foreign", "2.0.0")
    assert pulled.data == data

"""The plugin registry: install, list, get, remove, version selection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from wasmtime.component import Component

from support.registry import packed, signed, snapshot, write
from wasmplug import (
    InvalidComponentError,
    PluginHost,
)
from wasmplug._errors import (
    PluginNotFoundError,
)
from wasmplug._semver import matches_spec, version_key
from wasmplug._trust import signing as _signing
from wasmplug._trust.registry import Registry


def test_install_list_get_remove(
    tmp_path: Path, reg: Registry, install: Any, pair: _signing.KeyPair
) -> None:
    data = signed(packed("acme:tool", "1.0.0"), pair)
    info = install(write(tmp_path, "tool.wasm", data))
    assert (info.name, info.version, info.source) == ("acme:tool", "1.0.0", "registry")
    assert info.signed
    assert info.key_id == pair.key_id.hex()
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.path == reg.root / "plugins" / "acme+tool" / "1.0.0" / "plugin.wasm"
    assert info.path.read_bytes() == data
    assert info.exports == ("one",)
    assert info.imports == ()
    assert info.manifest.description == "test acme:tool"
    assert reg.list() == [info]
    assert reg.get("acme:tool") == info
    assert (reg.root.stat().st_mode & 0o777) == 0o700
    entry = json.loads(reg.index_path.read_text())["plugins"]["acme:tool"]["versions"]["1.0.0"]
    assert entry["signed"] is True
    assert entry["key-id"] == pair.key_id.hex()

    assert reg.remove("acme:tool") == [info]
    assert reg.list() == []
    assert not (reg.root / "plugins" / "acme+tool").exists()
    with pytest.raises(PluginNotFoundError):
        reg.remove("acme:tool")
    with pytest.raises(PluginNotFoundError, match="installed versions: none"):
        reg.get("acme:tool")


def test_installed_plugin_loads_in_a_host(
    tmp_path: Path, reg: Registry, install: Any, pair: _signing.KeyPair
) -> None:
    install(signed(packed("acme:tool", n=7), pair))
    info = reg.get("acme:tool")
    assert info.path is not None
    with PluginHost(cache_dir=tmp_path / "cache", trusted_keys=[pair.public_key]) as host:
        assert host.load(info.path).call("one") == 7


def test_several_versions_and_get_selection(install: Any, reg: Registry, pair: Any) -> None:
    for v in ["0.1.0", "0.2.0", "0.2.5", "1.0.0", "1.2.0", "1.10.0", "2.0.0", "2.1.0-beta.1"]:
        install(signed(packed("tool", v), pair))
    assert [i.version for i in reg.list()] == [
        "0.1.0", "0.2.0", "0.2.5", "1.0.0", "1.2.0", "1.10.0", "2.0.0", "2.1.0-beta.1",
    ]  # fmt: skip
    assert reg.get("tool").version == "2.0.0"  # the highest release
    assert reg.get("tool", "1").version == "1.10.0"
    assert reg.get("tool", "1.2").version == "1.10.0"
    assert reg.get("tool", "^1.2.0").version == "1.10.0"
    assert reg.get("tool", "=1.2.0").version == "1.2.0"
    assert reg.get("tool", "0.2").version == "0.2.5"
    assert reg.get("tool", "0.1").version == "0.1.0"
    assert reg.get("tool", "2.1.0-beta.1").version == "2.1.0-beta.1"
    with pytest.raises(PluginNotFoundError, match="matching '3'"):
        reg.get("tool", "3")
    with pytest.raises(ValueError, match="version spec"):
        reg.get("tool", ">=1")
    reg.remove("tool", "2.0.0")
    assert reg.get("tool").version == "1.10.0"


@pytest.mark.parametrize(
    ("version", "spec", "ok"),
    [
        ("1.2.3", "1", True),
        ("1.2.3", "1.3", False),
        ("2.0.0", "1", False),
        ("0.3.9", "0.3", True),
        ("0.4.0", "0.3", False),
        ("0.0.3", "0.0.3", True),
        ("0.0.4", "0.0.3", False),
        ("0.9.0", "0", True),
        ("1.0.0-rc.1", "1", False),
        ("1.0.0-rc.2", "1.0.0-rc.1", True),
        ("1.0.0+build.5", "=1.0.0", True),
    ],
)
def test_version_specs(version: str, spec: str, ok: bool) -> None:
    assert matches_spec(version, spec) is ok


def test_version_precedence() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11"]
    ordered += ["1.0.0-rc.1", "1.0.0", "1.2.0", "1.10.0"]
    shuffled = ordered[3:] + ordered[:3]
    assert sorted(shuffled, key=version_key) == ordered


def test_compile_runs_before_anything_is_written(install: Any, reg: Registry, pair: Any) -> None:
    install(signed(packed("existing"), pair))
    before = snapshot(reg.root)
    engine = wasmtime.Engine()
    seen: list[int] = []

    def compile_ok(data: bytes) -> None:
        assert snapshot(reg.root) == before
        seen.append(len(Component(engine, data).type.exports(engine)))

    def compile_fails(data: bytes) -> None:
        raise InvalidComponentError("refused by the compiler")

    with pytest.raises(InvalidComponentError, match="compiler"):
        install(signed(packed("tool"), pair), compile=compile_fails)
    assert snapshot(reg.root) == before
    install(signed(packed("tool"), pair), compile=compile_ok)
    assert seen == [1]

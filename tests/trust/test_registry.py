"""The plugin registry: install, list, get, remove, version selection."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from wasmtime.component import Component

from support.registry import component, packed, signed, snapshot, write
from wasmplug import (
    InvalidComponentError,
    LinkError,
    ManifestError,
    PluginHost,
    TrustStore,
    UnsignedPluginError,
)
from wasmplug._errors import (
    PluginNotFoundError,
)
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._semver import matches_spec, version_key
from wasmplug._trust import signing as _signing
from wasmplug._trust import wasm_sections as ws
from wasmplug._trust.index import OciOrigin
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


def test_the_default_registry_is_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))  # platformdirs' data dir on Linux
    reg = Registry()
    assert reg.root == tmp_path / "wasmplug" / "registry"
    assert repr(reg) == f"<wasmplug.Registry {str(reg.root)!r}>"


def test_discovery_describes_each_file_and_skips_what_it_cannot_read(
    tmp_path: Path, reg: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    good = write(plugins, "a.wasm", packed("acme:a", "1.2.0"))
    write(plugins, "garbage.wasm", b"nope")
    missing = tmp_path / "absent"
    with caplog.at_level(logging.WARNING, logger="wasmplug"):
        (info,) = reg.discover([missing, plugins], entry_points=False)  # a bad dir first
    assert (info.path, info.origin, info.source) == (good, str(good), "dir")
    assert (info.description, info.exports, info.signed) == ("test acme:a", ("one",), False)
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warnings[0] == f"skipping {missing}: {missing} is not a directory"
    assert warnings[1].startswith(f"skipping {plugins / 'garbage.wasm'}: ")
    assert len(warnings) == 2


def test_a_malformed_signature_is_discovered_as_unsigned(tmp_path: Path, reg: Registry) -> None:
    """Discovery reports what a file claims; a broken signature section claims nothing."""
    broken = ws.with_custom_section(packed("acme:a"), "signature", b"\x01\x01", first=True)
    write(tmp_path, "a.wasm", broken)
    (info,) = reg.discover([tmp_path], entry_points=False)
    assert (info.name, info.signed, info.key_id) == ("acme:a", False, None)


def test_get_names_what_is_installed(reg: Registry, install: Any, pair: _signing.KeyPair) -> None:
    with pytest.raises(PluginNotFoundError) as info:
        reg.get("acme:tool")
    assert str(info.value) == "no installed plugin 'acme:tool' (installed versions: none)"
    install(signed(packed("acme:tool", "1.0.0"), pair))
    install(signed(packed("acme:tool", "1.1.0"), pair))
    with pytest.raises(PluginNotFoundError) as info:
        reg.get("acme:tool", "2")
    assert str(info.value) == (
        "no installed plugin 'acme:tool' matching '2' (installed versions: 1.0.0, 1.1.0)"
    )


def test_refusals_name_the_file(tmp_path: Path, install: Any, pair: _signing.KeyPair) -> None:
    path = write(tmp_path, "tool.wasm", packed("acme:tool"))
    with pytest.raises(UnsignedPluginError, match=f"^{re.escape(str(path))} is not signed"):
        install(path)
    with pytest.raises(UnsignedPluginError, match=f"^{re.escape(str(path))} is not signed"):
        install("acme:tool", search_dirs=[tmp_path])  # found by NAME: named by where it was
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PluginNotFoundError) as info:
        install("acme:other", search_dirs=[tmp_path, empty])
    assert str(info.value) == (
        f"no plugin 'acme:other' found in {tmp_path}, {empty}, entry points (wasmplug.plugins);"
        " give a path to install a file"
    )
    undeclared = signed(packed("acme:tool", imports=("demo:plugin/host@0.1.0",)), pair)
    with pytest.raises(LinkError, match=r"^cannot link plugin 'acme:tool'"):
        install(undeclared)


ORIGIN = OciOrigin("registry.example/acme/tool:1.0.0", "sha256:" + "ab" * 32)


def test_an_oci_install_records_its_origin(
    tmp_path: Path, reg: Registry, install: Any, pair: _signing.KeyPair
) -> None:
    with pytest.raises(UnsignedPluginError, match=f"^{re.escape(ORIGIN.reference)} is not"):
        install(packed("acme:tool"), oci=ORIGIN)  # messages name the reference
    data = signed(packed("acme:tool"), pair)
    info = install(data, oci=ORIGIN)
    assert (info.reference, info.manifest_digest) == (ORIGIN.reference, ORIGIN.manifest_digest)
    # the same bytes again from another reference: the new origin is recorded
    moved = OciOrigin("mirror.example/acme/tool:1.0.0", ORIGIN.manifest_digest)
    assert install(data, oci=moved).reference == moved.reference
    assert install(data, oci=moved).path == info.path  # same file, nothing copied
    # and from a path (no OCI origin): the recorded origin is kept
    assert install(write(tmp_path, "tool.wasm", data)).reference == moved.reference
    assert reg.get("acme:tool").reference == moved.reference


def test_reinstalling_the_same_bytes_under_a_trusted_key_records_the_signer(
    tmp_path: Path, reg: Registry, pair: _signing.KeyPair
) -> None:
    """Installed unsigned (the signer was not trusted then): trusting the key later and
    installing the same file again records who signed it."""
    data = signed(packed("acme:tool"), pair)
    nobody = TrustStore(tmp_path / "empty.json")
    first = reg.install(data, trust_store=nobody, allow_unsigned=True)
    assert (first.key_id, first.signed) == (None, False)
    assert (first.description, first.origin) == ("test acme:tool", str(first.path))
    entry = json.loads(reg.index_path.read_text())["plugins"]["acme:tool"]["versions"]["1.0.0"]
    installed = datetime.datetime.fromisoformat(entry["installed"])
    assert installed.utcoffset() == datetime.timedelta(0)  # an aware UTC time
    assert ((reg.root / ".staging").stat().st_mode & 0o777) == 0o700
    again = reg.install(data, trust_store=nobody, trusted_keys=[pair.public_key])
    assert (again.key_id, again.signed, again.path) == (pair.key_id.hex(), True, first.path)
    assert again.path is not None
    assert again.path.read_bytes() == data
    assert reg.install(data, trust_store=nobody, trusted_keys=[pair.public_key]) == again


def test_a_source_is_a_path_unless_it_can_only_be_a_name(
    tmp_path: Path, install: Any, pair: _signing.KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``install(x)``: bytes, a Path, an existing file, or a string with a ``/`` or ending
    in ``.wasm`` is a file; any other string is a plugin NAME found by discovery."""
    monkeypatch.chdir(tmp_path)
    for missing in ("nope.wasm", "sub/nope", Path("nope")):
        with pytest.raises(InvalidComponentError, match=f"^cannot read {missing}: "):
            install(missing)
    with pytest.raises(PluginNotFoundError, match=r"^no plugin 'nope' found"):
        install("nope")
    write(tmp_path, "toolfile", signed(packed("acme:tool"), pair))  # no slash, no .wasm
    assert install("toolfile").name == "acme:tool"
    with pytest.raises(UnsignedPluginError, match=r"^<bytes> is not signed"):
        install(packed("acme:other"))


def test_manifest_problems_name_the_file(tmp_path: Path, install: Any) -> None:
    bare = write(tmp_path, "bare.wasm", component())
    with pytest.raises(ManifestError, match=f"^invalid manifest {re.escape(str(bare))}: 1 "):
        install(bare)
    binary = ws.with_custom_section(component(), MANIFEST_SECTION, b"\xff\xfe")
    with pytest.raises(ManifestError, match=r"^invalid manifest <bytes> \(embedded\): 1 "):
        install(binary)
    broken = ws.with_custom_section(component(), MANIFEST_SECTION, b"[plugin]\nname = 3\n")
    with pytest.raises(ManifestError, match=r"^invalid manifest <bytes> \(embedded\): "):
        install(broken)


def test_remove_names_what_is_installed(
    reg: Registry, install: Any, pair: _signing.KeyPair
) -> None:
    install(signed(packed("acme:tool", "1.0.0"), pair))
    with pytest.raises(PluginNotFoundError) as info:
        reg.remove("acme:tool", "9.9.9")
    assert str(info.value) == "plugin 'acme:tool' 9.9.9 is not installed (versions: 1.0.0)"
    with pytest.raises(PluginNotFoundError) as info:
        reg.remove("acme:other")
    assert str(info.value) == "plugin 'acme:other' is not installed (versions: none)"
    with pytest.raises(ValueError, match=r"^forget=True drops the whole record"):
        reg.remove("acme:tool", "1.0.0", forget=True)

"""Install refusals (trust, rollback, conflicts, undeclared imports, damaged index)
change nothing on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from support.registry import HOST_IFACE, component, manifest_toml, packed, signed, snapshot
from wasmplug import (
    InvalidComponentError,
    LinkError,
    ManifestError,
    RevokedError,
    SignatureInvalidError,
    TrustedKey,
    TrustStore,
    UnsignedPluginError,
    UntrustedKeyError,
)
from wasmplug._errors import (
    NameConflictError,
    RegistryError,
    RollbackError,
    VersionConflictError,
)
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._trust import signing as _signing
from wasmplug._trust import wasm_sections as ws
from wasmplug._trust.registry import Registry


def test_rollback_refused_then_forced(install: Any, reg: Registry, pair: Any) -> None:
    install(signed(packed("tool", "2.0.0"), pair))
    before = snapshot(reg.root)
    with pytest.raises(RollbackError, match=r"1\.0\.0 is lower than 2\.0\.0"):
        install(signed(packed("tool", "1.0.0"), pair))
    assert snapshot(reg.root) == before
    info = install(signed(packed("tool", "1.0.0"), pair), force=True)
    assert [i.version for i in reg.list()] == ["1.0.0", "2.0.0"]
    assert reg.get("tool").version == "2.0.0"
    assert json.loads(reg.index_path.read_text())["plugins"]["tool"]["versions"]["1.0.0"]["forced"]
    # The highest version is remembered after removal...
    reg.remove("tool")
    with pytest.raises(RollbackError):
        install(signed(packed("tool", "1.5.0"), pair))
    # ...until forgotten.
    reg.remove("tool", forget=True)
    assert install(signed(packed("tool", "1.5.0"), pair)).version == "1.5.0"
    assert info.version == "1.0.0"


def test_same_version_different_bytes(install: Any, reg: Registry, pair: Any) -> None:
    first = install(signed(packed("tool", "1.0.0", n=1), pair))
    before = snapshot(reg.root)
    assert install(signed(packed("tool", "1.0.0", n=1), pair)) == first  # identical: a no-op
    assert snapshot(reg.root) == before
    with pytest.raises(VersionConflictError, match="different content"):
        install(signed(packed("tool", "1.0.0", n=2), pair))
    assert snapshot(reg.root) == before
    second = install(signed(packed("tool", "1.0.0", n=2), pair), force=True)
    assert [i.sha256 for i in reg.list()] == [second.sha256] != [first.sha256]
    assert second.path is not None
    assert second.path.exists()
    files = list((reg.root / "plugins").rglob("*.wasm"))
    assert files == [second.path]  # the replaced file is gone


def test_unsigned_refused_unless_allowed(install: Any, reg: Registry, pair: Any) -> None:
    install(signed(packed("other"), pair))
    before = snapshot(reg.root)
    with pytest.raises(UnsignedPluginError):
        install(packed("tool"))
    assert snapshot(reg.root) == before
    info = install(packed("tool"), allow_unsigned=True)
    assert (info.signed, info.key_id) == (False, None)
    entry = json.loads(reg.index_path.read_text())["plugins"]["tool"]["versions"]["1.0.0"]
    assert entry["signed"] is False
    assert entry["key-id"] is None


def _tampered(pair: _signing.KeyPair) -> bytes:
    data = signed(packed("tool"), pair)
    text = manifest_toml("tool", "1.0.0", ("demo:evil/x@1.0.0",)).encode()
    return ws.with_custom_section(data, MANIFEST_SECTION, text)


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("untrusted", UntrustedKeyError, "none of which is trusted"),
        ("out-of-scope", UntrustedKeyError, "trusted only for acme:"),
        ("tampered", SignatureInvalidError, None),
        ("revoked-digest", RevokedError, "revoked"),
        ("revoked-key", RevokedError, "revoked"),
    ],
)
def test_trust_refusals_change_nothing(
    tmp_path: Path, reg: Registry, pair: _signing.KeyPair, case: str, error: type, message: Any
) -> None:
    store = TrustStore(tmp_path / "t.json")
    store.add(TrustedKey(pair.public_key, ("*",)))
    reg.install(signed(packed("existing"), pair), trust_store=store)
    data = signed(packed("tool"), pair)
    if case == "untrusted":
        data = signed(packed("tool"), _signing.generate_keypair())
    elif case == "out-of-scope":
        store.add(TrustedKey(pair.public_key, ("acme:*",)))
    elif case == "tampered":
        data = _tampered(pair)
    elif case == "revoked-digest":
        store.revoke_digest(hashlib.sha256(data).hexdigest())
    else:
        store.revoke_key(pair.key_id.hex())
    before = snapshot(reg.root)
    with pytest.raises(error, match=message):
        reg.install(data, trust_store=store)
    assert snapshot(reg.root) == before
    if case.startswith("revoked"):  # revoked stays refused even for unsigned installs
        with pytest.raises(RevokedError):
            reg.install(data, trust_store=store, allow_unsigned=True)
        assert snapshot(reg.root) == before


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("truncated", InvalidComponentError, None),
        ("garbage", InvalidComponentError, "magic"),
        ("empty", InvalidComponentError, "header"),
        ("core-module", InvalidComponentError, "core WebAssembly module"),
        ("no-manifest", ManifestError, "wasmplug pack"),
        ("bad-manifest", ManifestError, "plugin.name"),
        ("not-utf8-manifest", ManifestError, "UTF-8"),
        ("not-toml-manifest", ManifestError, "not valid TOML"),
        ("missing-file", InvalidComponentError, "cannot read"),
    ],
)
def test_malformed_files_change_nothing(
    tmp_path: Path, reg: Registry, install: Any, pair: Any, case: str, error: type, message: Any
) -> None:
    install(signed(packed("existing"), pair))
    good = signed(packed("tool"), pair)
    data = {
        "truncated": good[: len(good) // 2],
        "garbage": b"this is not wasm at all",
        "empty": b"",
        "core-module": bytes(wasmtime.wat2wasm("(module)")),
        "no-manifest": signed(component(), pair),
        "bad-manifest": ws.with_custom_section(
            component(), MANIFEST_SECTION, b'[plugin]\nname = "Bad Name"\nversion = "1"\n'
        ),
        "not-utf8-manifest": ws.with_custom_section(component(), MANIFEST_SECTION, b"\xff\xfe"),
        "not-toml-manifest": ws.with_custom_section(component(), MANIFEST_SECTION, b"[[[ nope"),
        "missing-file": b"",
    }[case]
    source: Path = tmp_path / ("absent.wasm" if case == "missing-file" else "bad.wasm")
    if case != "missing-file":
        source.write_bytes(data)
    before = snapshot(reg.root)
    for allow_unsigned in (False, True):
        with pytest.raises(error, match=message):
            install(source, allow_unsigned=allow_unsigned)
        assert snapshot(reg.root) == before


def test_static_check_needs_declared_semver_compatible_imports(
    install: Any, reg: Registry, pair: Any
) -> None:
    imports = ("demo:plugin/host@0.1.2", "wasi:random/random@0.2.0")
    install(signed(packed("existing"), pair))
    before = snapshot(reg.root)
    with pytest.raises(LinkError) as info:
        install(signed(packed("tool", imports=imports), pair))
    assert "demo:plugin/host@0.1.2: imported but not declared" in str(info.value)
    assert "wasi:" not in str(info.value)
    newer = packed("tool", imports=imports, host_interfaces=("demo:plugin/host@0.2.0",))
    with pytest.raises(LinkError):  # 0.2 is not compatible with 0.1
        install(signed(newer, pair))
    assert snapshot(reg.root) == before
    ok = install(signed(packed("tool", imports=imports, host_interfaces=(HOST_IFACE,)), pair))
    assert ok.imports == imports


def test_name_conflict_between_publishers(
    tmp_path: Path, reg: Registry, store: TrustStore, pair: Any
) -> None:
    other = _signing.generate_keypair()
    store.add(TrustedKey(other.public_key, ("*",), "Other"))
    reg.install(signed(packed("tool", "1.0.0"), pair), trust_store=store)
    before = snapshot(reg.root)
    refused = f"publisher key {pair.key_id.hex()}; refusing key {other.key_id.hex()} under"
    with pytest.raises(NameConflictError, match=refused):
        reg.install(signed(packed("tool", "2.0.0"), other), trust_store=store)
    with pytest.raises(NameConflictError, match="unsigned build"):
        reg.install(packed("tool", "2.0.0"), trust_store=store, allow_unsigned=True)
    assert snapshot(reg.root) == before
    info = reg.install(signed(packed("tool", "2.0.0"), other), trust_store=store, force=True)
    assert info.key_id == other.key_id.hex()
    # The name is now pinned to the new publisher.
    with pytest.raises(NameConflictError):
        reg.install(signed(packed("tool", "3.0.0"), pair), trust_store=store)


@pytest.mark.parametrize(
    "damage",
    [
        "{ not json",
        '{"format": 99, "plugins": {}}',
        '{"format": 1, "plugins": {"tool": {"versions": {"not-semver": {}}}}}',
        '{"format": 1, "plugins": {"tool": {"versions": {"1.0.0": {"file": "/etc/x"}}}}}',
    ],
)
def test_damaged_index_is_never_overwritten(
    install: Any, reg: Registry, pair: Any, damage: str
) -> None:
    install(signed(packed("tool"), pair))
    reg.index_path.write_text(damage)
    before = snapshot(reg.root)
    with pytest.raises(RegistryError, match="damaged"):
        install(signed(packed("other"), pair))
    with pytest.raises(RegistryError):
        reg.list()
    with pytest.raises(RegistryError):
        reg.remove("tool")
    assert snapshot(reg.root) == before

"""Trust: signed plugins load only from trusted, in-scope, unrevoked keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import wasmtime

from wasmplug import (
    PluginHost,
    RevokedError,
    SignatureInvalidError,
    TrustedKey,
    TrustStore,
    TrustStoreError,
    UnsignedPluginError,
    UntrustedKeyError,
)
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._trust import signing as _signing
from wasmplug._trust import wasm_sections as ws

WAT = """
(component
  (core module $m (func (export "one") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)
"""


def packed(name: str) -> bytes:
    manifest = f'[plugin]\nname = "{name}"\nversion = "1.0.0"\n'.encode()
    return ws.with_custom_section(wasmtime.wat2wasm(WAT), MANIFEST_SECTION, manifest)


@pytest.fixture
def pair() -> _signing.KeyPair:
    return _signing.generate_keypair()


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    return TrustStore(tmp_path / "trust.json")


def signed(name: str, pair: _signing.KeyPair) -> bytes:
    return _signing.sign(packed(name), pair.secret_key, key_id=pair.key_id)


def host_for(tmp_path: Path, store: TrustStore, *keys: object) -> PluginHost:
    return PluginHost(cache_dir=tmp_path / "cache", trust_store=store, trusted_keys=keys)  # type: ignore[arg-type]


def test_trusted_in_code_loads(tmp_path: Path, store: TrustStore, pair: _signing.KeyPair) -> None:
    with host_for(tmp_path, store, pair.public_key) as host:
        plugin = host.load(signed("acme:tool", pair))
        assert plugin.name == "acme:tool"
        assert plugin.call("one") == 1


def test_trusted_in_store_loads(tmp_path: Path, store: TrustStore, pair: _signing.KeyPair) -> None:
    store.add(TrustedKey(pair.public_key, ("acme:*",), "Acme"))
    store.save()
    reloaded = TrustStore(store.path)
    assert reloaded.keys == store.keys
    with host_for(tmp_path, reloaded) as host:
        assert host.load(signed("acme:tool", pair)).call("one") == 1


def test_scope_must_cover_the_name(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    key = TrustedKey(pair.public_key, ("acme:*",), "Acme")
    with host_for(tmp_path, store, key) as host, pytest.raises(UntrustedKeyError) as info:
        host.load(signed("evil:tool", pair))
    message = str(info.value)
    assert pair.key_id.hex() in message
    assert "acme:*" in message
    assert "evil:tool" in message


def test_unknown_signer_is_untrusted(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    other = _signing.generate_keypair()
    with host_for(tmp_path, store, other.public_key) as host:
        with pytest.raises(UntrustedKeyError, match=pair.key_id.hex()):
            host.load(signed("acme:tool", pair))


def test_unsigned_is_refused(tmp_path: Path, store: TrustStore, pair: _signing.KeyPair) -> None:
    with host_for(tmp_path, store, pair.public_key) as host:
        with pytest.raises(UnsignedPluginError):
            host.load(packed("acme:tool"))
        assert host.load(packed("acme:tool"), allow_unsigned=True).call("one") == 1


def test_tampered_manifest_fails_verification(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    data = signed("acme:tool", pair)
    tampered = data.replace(b'name = "acme:tool"', b'name = "acme:toox"')
    assert tampered != data
    with host_for(tmp_path, store, pair.public_key) as host:
        with pytest.raises(SignatureInvalidError, match=pair.key_id.hex()):
            host.load(tampered)


def test_revoked_key_and_digest(tmp_path: Path, store: TrustStore, pair: _signing.KeyPair) -> None:
    data = signed("acme:tool", pair)
    store.revoke_key(pair.key_id.hex())
    with host_for(tmp_path, store, pair.public_key) as host:
        with pytest.raises(RevokedError, match="revoked key"):
            host.load(data)
    fresh = TrustStore(tmp_path / "other.json")

    fresh.revoke_digest(hashlib.sha256(data).hexdigest())
    with host_for(tmp_path, fresh, pair.public_key) as host:
        with pytest.raises(RevokedError, match="is revoked"):
            host.load(data)


def test_store_remove_and_malformed_file(tmp_path: Path, pair: _signing.KeyPair) -> None:
    store = TrustStore(tmp_path / "t.json")
    store.add(TrustedKey(pair.public_key))
    assert store.remove(pair.key_id.hex())
    assert not store.remove(pair.key_id.hex())
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TrustStoreError, match="malformed"):
        TrustStore(bad)


def test_scopes_cannot_be_empty(pair: _signing.KeyPair) -> None:
    with pytest.raises(ValueError, match="scope"):
        TrustedKey(pair.public_key, ())


def test_install_then_load_installed(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    from wasmplug import PluginNotFoundError, Registry

    registry = Registry(tmp_path / "registry")
    with host_for(tmp_path, store, pair.public_key) as host:
        info = host.install(signed("acme:tool", pair), registry=registry)
        assert (info.name, info.version, info.key_id) == ("acme:tool", "1.0.0", pair.key_id.hex())
        assert host.load_installed("acme:tool", registry=registry).call("one") == 1
        assert host.load_installed("acme:tool", "1", registry=registry).name == "acme:tool"
        with pytest.raises(PluginNotFoundError):
            host.load_installed("acme:other", registry=registry)
        # Revoking the key after install: loading verifies again and refuses.
        store.revoke_key(pair.key_id.hex())
        with pytest.raises(RevokedError):
            host.load_installed("acme:tool", registry=registry)


def test_revoking_the_content_digest_covers_re_signed_copies(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    from wasmplug._trust.store import content_sha256

    other = _signing.generate_keypair()
    data = signed("acme:tool", pair)
    resigned = _signing.sign(_signing.strip_signature(data), other.secret_key, key_id=other.key_id)
    assert content_sha256(data) == content_sha256(resigned)
    store.revoke_digest(content_sha256(data))
    with host_for(tmp_path, store, pair.public_key, other.public_key) as host:
        for blob in (data, resigned):
            with pytest.raises(RevokedError, match="content sha256"):
                host.load(blob)
        with pytest.raises(RevokedError):
            host.load(data, allow_unsigned=True)  # revoked beats allow_unsigned


def test_a_running_host_sees_revocations_made_later(tmp_path: Path, pair: _signing.KeyPair) -> None:
    path = tmp_path / "trust.json"
    with TrustStore(path).modify() as s:
        s.add(TrustedKey(pair.public_key))
    with host_for(tmp_path, TrustStore(path)) as host:
        assert host.load(signed("acme:tool", pair)).call("one") == 1
        with TrustStore(path).modify() as other_process:  # e.g. `wasmplug trust revoke`
            other_process.revoke_key(pair.key_id.hex())
        with pytest.raises(RevokedError):
            host.load(signed("acme:tool", pair))


def test_public_key_from_pem_bytes(pair: _signing.KeyPair) -> None:
    from cryptography.hazmat.primitives import serialization

    from wasmplug import PublicKey

    pem = pair.public_key._key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert PublicKey.from_bytes(pem) == pair.public_key
